"""claims, due times, status tokens, merges

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("claim_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("status_token", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("merged_into_id",
                                      sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                                      nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_requests_status_token"),
                                          ["status_token"])
        batch_op.create_foreign_key(batch_op.f("fk_requests_merged_into_id_requests"),
                                    "requests", ["merged_into_id"], ["id"])
        batch_op.create_index(batch_op.f("ix_requests_queue_status_priority"),
                              ["queue", "status", "priority"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_requests_queue_status_priority"))
        batch_op.drop_constraint(batch_op.f("fk_requests_merged_into_id_requests"),
                                 type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("uq_requests_status_token"), type_="unique")
        batch_op.drop_column("merged_into_id")
        batch_op.drop_column("status_token")
        batch_op.drop_column("due_at")
        batch_op.drop_column("claim_until")
        batch_op.drop_column("claimed_by")
