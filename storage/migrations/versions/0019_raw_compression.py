"""raw bytes compressed with lz4 on PostgreSQL

Revision ID: 0019
Revises: 0018

Every message arrives as raw bytes (`inbox_items.raw`) and its attachments
as chunks (`blob_chunks.data`); values over about 2 KB are compressed by
PostgreSQL when written. Its default method, pglz, was a large share of the
server's CPU per stored message (5,000 mails of 4 KB: about half the time of
their INSERTs, benchmarks/mailbox_fetch.py); lz4 compresses several times
faster and decompresses faster when the pipeline reads them. Only values
written from now on use it; nothing is rewritten. A server built without lz4
keeps pglz. SQLite stores bytes as they are: nothing to do there.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

COLUMNS = (("inbox_items", "raw"), ("blob_chunks", "data"))


def _lz4_available() -> bool:
    return bool(op.get_bind().scalar(sa.text(
        "SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
        "WHERE name = 'default_toast_compression'")))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql" or not _lz4_available():
        return
    for table, column in COLUMNS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION lz4")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in COLUMNS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION DEFAULT")
