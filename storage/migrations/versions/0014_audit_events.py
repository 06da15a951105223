"""audit events: an append-only record of agents' and admins' actions

Revision ID: 0014
Revises: 0012

`audit_events` (storage/audit.py) is append-only at the database, not only in
the code that writes it: a trigger refuses every UPDATE, and every DELETE but
the audit's own purge (its retention). On PostgreSQL the purge sets
`intake.audit_purge` for its transaction (set_config(..., true)); on SQLite,
whose triggers cannot read a session setting, it writes the one row of
`audit_purge` in its transaction and deletes it again before the commit, so
no other transaction ever sees it. TRUNCATE (PostgreSQL) is refused outright.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0012"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

PG_FUNCTION = """
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('intake.audit_purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""
PG_TRIGGERS = (
    "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events"
    " FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()",
    "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events"
    " FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()",
)
SQLITE_TRIGGERS = (
    "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events"
    " BEGIN SELECT RAISE(ABORT, 'audit events are append-only (UPDATE refused)'); END",
    "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events"
    " WHEN NOT EXISTS (SELECT 1 FROM audit_purge)"
    " BEGIN SELECT RAISE(ABORT, 'audit events are append-only (DELETE refused)'); END",
)


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=300), nullable=True),
        sa.Column("client", sa.String(length=100), nullable=True),
        sa.Column("data", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_at_id"), "audit_events", ["at", "id"], unique=False)
    op.create_index(op.f("ix_audit_events_actor_at"), "audit_events", ["actor", "at"],
                    unique=False)
    op.create_index(op.f("ix_audit_events_action_at"), "audit_events", ["action", "at"],
                    unique=False)
    op.create_index(op.f("ix_audit_events_target_at"), "audit_events", ["target", "at"],
                    unique=False)
    op.create_table(
        "audit_purge",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_purge")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        for statement in PG_TRIGGERS:
            op.execute(statement)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    # Dropping the table drops its triggers with it (DROP fires no DELETE trigger).
    op.drop_index(op.f("ix_audit_events_target_at"), table_name="audit_events")
    op.drop_index(op.f("ix_audit_events_action_at"), table_name="audit_events")
    op.drop_index(op.f("ix_audit_events_actor_at"), table_name="audit_events")
    op.drop_index(op.f("ix_audit_events_at_id"), table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_table("audit_purge")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_events_append_only()")
