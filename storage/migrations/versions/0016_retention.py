"""retention: what was anonymised or emptied, and the finished requests by age

Revision ID: 0016
Revises: 0015

Retention (storage/retention.py) anonymises finished requests and drops their
raw bytes after the days a policy gives: `anonymised_at` and `raw_dropped_at`
say it was done, so a pass does not take a request again. A partial index
holds the finished requests (domain.lifecycle.DONE) by when they finished,
`coalesce(resolved_at, updated_at)` as storage/models.py declares it: a pass
walks the expired ones in order and stops, however much history is younger.
Deleting a request makes PostgreSQL check that no request is merged into it:
`merged_into_id` gets a (partial) index, so that is a look-up, not a scan.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

NAME = "ix_requests_finished"
# domain.lifecycle.DONE when this was written.
FINISHED = sa.text("status IN ('resolved', 'closed', 'merged')")
# Deleting a request checks that none is merged into it: an index, not a scan.
MERGED_NAME = "ix_requests_merged_into_id"
MERGED = sa.text("merged_into_id IS NOT NULL")


def upgrade() -> None:
    # Plain ADD COLUMN on both backends: a batch rebuild of `requests` on
    # SQLite would drop its expression indexes (SQLAlchemy does not reflect them).
    op.add_column("requests", sa.Column("anonymised_at", sa.DateTime(timezone=True),
                                        nullable=True))
    op.add_column("requests", sa.Column("raw_dropped_at", sa.DateTime(timezone=True),
                                        nullable=True))
    op.create_index(NAME, "requests", [sa.text("coalesce(resolved_at, updated_at)"), "id"],
                    unique=False, postgresql_where=FINISHED, sqlite_where=FINISHED)
    op.create_index(MERGED_NAME, "requests", ["merged_into_id"], unique=False,
                    postgresql_where=MERGED, sqlite_where=MERGED)


def downgrade() -> None:
    op.drop_index(MERGED_NAME, table_name="requests", if_exists=True)
    op.drop_index(NAME, table_name="requests", if_exists=True)
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_column("raw_dropped_at")
        batch_op.drop_column("anonymised_at")
