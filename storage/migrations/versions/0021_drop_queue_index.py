"""drop ix_requests_queue: ix_requests_queue_status_priority leads with queue

Revision ID: 0021
Revises: 0020

ix_requests_queue (queue) came with the first schema; 0002 added
ix_requests_queue_status_priority (queue, status, priority), whose leading
column answers every look-up by queue alone on both backends, and 0011 the
partial index that claims and listings walk. The single-column index was one
more entry to write for every new request and every change of queue, and
read by nothing the other two do not serve.
"""

from __future__ import annotations

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_requests_queue", table_name="requests")


def downgrade() -> None:
    op.create_index("ix_requests_queue", "requests", ["queue"], unique=False)
