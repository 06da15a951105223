"""report times: business-hours durations stored once, for reports to aggregate

Revision ID: 0012
Revises: 0011

Reports (storage/reports.py) aggregate first-response and resolution times in
SQL; the business-hours ones depend on the request's calendar and pauses,
which SQL cannot evaluate, so they are measured in Python (gateway/reports.py)
once the moment has happened and stored here. `resolution_measured_for` is the
`resolved_at` the resolution time was measured for: a reopened and resolved
again request is measured again. Existing rows are measured by the same sweep
(the partial index finds the rows it has yet to measure, however many).
`first_responder` is who answered first (the actor of the first `replied`
event), recorded by the same sweep: reports group by it without reading the
timeline.

Timeline counts (reopenings, breaches, escalations in a period) read a partial
index that holds only those kinds of event.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

UNMEASURED = sa.text(
    "(first_response_at IS NOT NULL AND first_response_business_seconds IS NULL)"
    " OR (resolved_at IS NOT NULL AND (resolution_measured_for IS NULL"
    " OR resolution_measured_for <> resolved_at))")
COUNTED = sa.text("kind IN ('reopened', 'sla_breached', 'escalated')")


def upgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_response_business_seconds", sa.Float(),
                                      nullable=True))
        batch_op.add_column(sa.Column("resolution_business_seconds", sa.Float(),
                                      nullable=True))
        batch_op.add_column(sa.Column("resolution_measured_for", sa.DateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column("first_responder", sa.String(length=100),
                                      nullable=True))
    op.create_index("ix_requests_unmeasured", "requests", ["id"], unique=False,
                    postgresql_where=UNMEASURED, sqlite_where=UNMEASURED)
    op.create_index("ix_events_counted", "events", ["kind", "at"], unique=False,
                    postgresql_where=COUNTED, sqlite_where=COUNTED)


def downgrade() -> None:
    op.drop_index("ix_events_counted", table_name="events")
    op.drop_index("ix_requests_unmeasured", table_name="requests")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_column("first_responder")
        batch_op.drop_column("resolution_measured_for")
        batch_op.drop_column("resolution_business_seconds")
        batch_op.drop_column("first_response_business_seconds")
