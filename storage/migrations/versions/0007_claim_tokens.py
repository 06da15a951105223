"""claim tokens: an inbox item changes state only under its claimant's own claim

Revision ID: 0007
Revises: 0006

Each claim of inbox items writes a fresh token on them. Marking an item done,
failed, dead or deferred, and renewing its lease, compare it first: a worker
whose lease ran out (another worker has taken the item over since) can no
longer change the item. Items claimed before the upgrade have none; their
leases run out as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbox_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claim_token", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inbox_items", schema=None) as batch_op:
        batch_op.drop_column("claim_token")
