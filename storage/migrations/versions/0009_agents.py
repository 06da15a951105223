"""agents as people, hand-off permission, canned responses

Revision ID: 0009
Revises: 0008

An `agents` table (name, email, the queues they work, active); a token may
belong to one (`api_tokens.agent_id`), and then acts as `agent:<id>`. Tokens
get `may_hand_off` (move a request to any queue), true for the tokens that
exist, as it is for new ones. `canned_responses` holds reply templates per
queue and language.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("queues", JSON, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("quiet_hours", sa.String(length=11), nullable=True),
        sa.Column("digest_minutes", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
        sa.UniqueConstraint("email", name=op.f("uq_agents_email")),
    )
    op.create_table(
        "canned_responses",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_canned_responses")),
    )
    with op.batch_alter_table("canned_responses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_canned_responses_queue_language_name"),
                              ["queue", "language", "name"], unique=True)
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("agent_id", ID, nullable=True))
        # Existing tokens keep what agents could do: move requests between queues.
        batch_op.add_column(sa.Column("may_hand_off", sa.Boolean(), nullable=False,
                                      server_default=sa.true()))
        batch_op.create_index(batch_op.f("ix_api_tokens_agent_id"), ["agent_id"], unique=False)
        batch_op.create_foreign_key(batch_op.f("fk_api_tokens_agent_id_agents"), "agents",
                                    ["agent_id"], ["id"])
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.alter_column("may_hand_off", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_api_tokens_agent_id_agents"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_api_tokens_agent_id"))
        batch_op.drop_column("may_hand_off")
        batch_op.drop_column("agent_id")
    with op.batch_alter_table("canned_responses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_canned_responses_queue_language_name"))
    op.drop_table("canned_responses")
    op.drop_table("agents")
