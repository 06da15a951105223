"""reopen links: a request that follows up a finished one names it

Revision ID: 0008
Revises: 0007

A customer's reply to a request resolved or closed longer ago than its
queue's reopen window (`[[queue]] reopen_days`) becomes a new request that
names the old one in `linked_from_id` (indexed: the old request lists the
requests that follow it up). Existing requests follow up none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("linked_from_id", ID, nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_requests_linked_from_id_requests"),
                                    "requests", ["linked_from_id"], ["id"])
        batch_op.create_index(batch_op.f("ix_requests_linked_from_id"), ["linked_from_id"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_requests_linked_from_id"))
        batch_op.drop_constraint(batch_op.f("fk_requests_linked_from_id_requests"),
                                 type_="foreignkey")
        batch_op.drop_column("linked_from_id")
