"""service levels: deadlines, pauses, scheduler marks

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sla_policy", sa.String(length=100), nullable=True))
        for name in ("first_response_due_at", "resolution_due_at", "first_response_at",
                     "resolved_at", "sla_paused_at", "next_check_at"):
            batch_op.add_column(sa.Column(name, TS, nullable=True))
        batch_op.add_column(sa.Column("sla_pauses", JSON, nullable=True))
        batch_op.add_column(sa.Column("reopened_count", sa.Integer(), nullable=False,
                                      server_default="0"))
        batch_op.create_index(batch_op.f("ix_requests_next_check_at"), ["next_check_at"],
                              unique=False)
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.alter_column("reopened_count", server_default=None)
    op.create_table(
        "sla_marks",
        sa.Column("request_id", ID, nullable=False),
        sa.Column("mark", sa.String(length=100), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"],
                                name=op.f("fk_sla_marks_request_id_requests")),
        sa.PrimaryKeyConstraint("request_id", "mark", name=op.f("pk_sla_marks")),
    )


def downgrade() -> None:
    op.drop_table("sla_marks")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_requests_next_check_at"))
        for name in ("reopened_count", "sla_pauses", "next_check_at", "sla_paused_at",
                     "resolved_at", "first_response_at", "resolution_due_at",
                     "first_response_due_at", "sla_policy"):
            batch_op.drop_column(name)
