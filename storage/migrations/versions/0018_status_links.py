"""status links: one-time access links and replaced status tokens

Revision ID: 0018
Revises: 0017

A customer who lost the acknowledgement asks for a link by reference and
address; the link mailed is a one-time key to the request's status page,
kept here by its sha256 only (`kind` access, with `expires_at` and `used_at`).
A rotated status token leaves its sha256 here too (`kind` replaced), so the
old link can say it was replaced. Rows go with their request (ON DELETE
CASCADE: retention and erasure delete requests without naming this table).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "status_links",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("request_id", ID, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("expires_at", TIME, nullable=True),
        sa.Column("used_at", TIME, nullable=True),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"],
                                name=op.f("fk_status_links_request_id_requests"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_links")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_status_links_key_hash")),
    )
    op.create_index(op.f("ix_status_links_request_id"), "status_links", ["request_id"],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_status_links_request_id"), table_name="status_links")
    op.drop_table("status_links")
