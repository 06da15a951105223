"""acknowledgement recipients: the limits count what was sent to whom

Revision ID: 0006
Revises: 0005

The outbox row of an acknowledgement records the mailbox it goes to and that
mailbox's domain, so the limits per recipient, per domain and per minute count
the address mail was actually sent to (an email's Reply-To), not the requester.
Rows from before have none and are not counted: the limits start afresh.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recipient", sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column("recipient_domain", sa.String(length=255), nullable=True))
        batch_op.create_index(batch_op.f("ix_outbox_recipient_created_at"),
                              ["recipient", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_recipient_domain_created_at"),
                              ["recipient_domain", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_created_at"))
        batch_op.drop_index(batch_op.f("ix_outbox_recipient_domain_created_at"))
        batch_op.drop_index(batch_op.f("ix_outbox_recipient_created_at"))
        batch_op.drop_column("recipient_domain")
        batch_op.drop_column("recipient")
