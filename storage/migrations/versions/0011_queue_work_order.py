"""queue work order: an index that walks a queue's workable requests in claim order

Revision ID: 0011
Revises: 0010

Claims and queue listings sort a queue's workable requests by priority, then
due time, then id, and take the first few. Through (queue, status, priority)
they read and sorted all of them, so they slowed down with the backlog. This
partial index holds only the workable requests, in that order, so both stop at
their LIMIT. The expressions and the WHERE are the ones storage/models.py
declares (WORK_ORDER, IS_WORKABLE), written as each backend compiles them: the
statements must say exactly this for a planner to use it. The due time's
constant carries its offset on PostgreSQL, so no session time zone changes it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

NAME = "ix_requests_queue_work_order"
# domain.lifecycle.WORKABLE when this was written.
WORKABLE = sa.text("status IN ('new', 'open', 'reopened')")
FAR_FUTURE = {"postgresql": "'9999-01-01 00:00:00+00'",
              "sqlite": "'9999-01-01 00:00:00.000000'"}


def upgrade() -> None:
    far_future = FAR_FUTURE[op.get_bind().dialect.name]
    op.create_index(NAME, "requests", [
        "queue", sa.text("coalesce(priority, 'P9')"), sa.text(f"coalesce(due_at, {far_future})"),
        "id"], unique=False, postgresql_where=WORKABLE, sqlite_where=WORKABLE)


def downgrade() -> None:
    # On SQLite a later batch migration that rebuilt `requests` (0012 going
    # down) dropped it already: SQLAlchemy does not reflect expression indexes.
    op.drop_index(NAME, table_name="requests", if_exists=True)
