"""install key: each install keys the shuffle that makes its references

Revision ID: 0010
Revises: 0009

A random 32-byte key, made here once. Inbox ids already stored keep the
unkeyed shuffle (their references were handed out): the key applies from
the next inbox id on (`keyed_from`). See storage/reference.py.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "install_keys",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("keyed_from", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_install_keys")),
    )
    last = op.get_bind().execute(sa.text("SELECT max(id) FROM inbox_items")).scalar()
    op.bulk_insert(table, [{"name": "references", "secret": secrets.token_hex(32),
                            "keyed_from": (last or 0) + 1, "created_at": datetime.now(UTC)}])


def downgrade() -> None:
    op.drop_table("install_keys")
