"""mailboxes: IMAP mailboxes fetched exactly once

Revision ID: 0017
Revises: 0016

`mailboxes` holds each configured IMAP mailbox's lease (one process fetches it
at a time), its health, and a rotated OAuth refresh token. `mailbox_folders`
says how far each folder is fetched under its UIDVALIDITY, and
`mailbox_messages` records every message seen, committed in the same
transaction as its inbox item: a crash between that commit and the change on
the server (move, flag, delete) never stores a message twice, and a changed
UIDVALIDITY is re-read against the raw bytes' hash (storage/mailboxes.py): a
partial unique index holds one stored message per mailbox and digest.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)
# One stored message per mailbox and digest of its bytes (storage/mailboxes.py).
STORED = sa.text("item_id IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "mailboxes",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=True),
        sa.Column("lease_until", TIME, nullable=True),
        sa.Column("connected", sa.Boolean(), nullable=False),
        sa.Column("last_fetch_at", TIME, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("failing_since", TIME, nullable=True),
        sa.Column("behind", sa.BigInteger(), nullable=False),
        sa.Column("fetched", sa.BigInteger(), nullable=False),
        sa.Column("refresh_token", sa.Text(), nullable=True),
        sa.Column("refresh_seed", sa.String(length=64), nullable=True),
        sa.Column("updated_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_mailboxes")),
    )
    op.create_table(
        "mailbox_folders",
        sa.Column("mailbox", sa.String(length=64), nullable=False),
        sa.Column("folder", sa.String(length=255), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("next_uid", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("mailbox", "folder", name=op.f("pk_mailbox_folders")),
    )
    op.create_table(
        "mailbox_messages",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("mailbox", sa.String(length=64), nullable=False),
        sa.Column("folder", sa.String(length=255), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("item_id", sa.BigInteger(), nullable=True),
        sa.Column("message_id", sa.String(length=998), nullable=True),
        sa.Column("raw_sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("stored_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mailbox_messages")),
        sa.UniqueConstraint("mailbox", "folder", "uidvalidity", "uid",
                            name=op.f("uq_mailbox_messages_mailbox_folder_uidvalidity_uid")),
    )
    op.create_index("ux_mailbox_messages_stored", "mailbox_messages", ["mailbox", "raw_sha256"],
                    unique=True, postgresql_where=STORED, sqlite_where=STORED)
    op.create_index(op.f("ix_mailbox_messages_mailbox_state"), "mailbox_messages",
                    ["mailbox", "state"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_mailbox_messages_mailbox_state"), table_name="mailbox_messages")
    op.drop_index("ux_mailbox_messages_stored", table_name="mailbox_messages")
    op.drop_table("mailbox_messages")
    op.drop_table("mailbox_folders")
    op.drop_table("mailboxes")
