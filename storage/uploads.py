"""Uploaded files: written to blobs in pieces and read back the same way.

A form upload reaches here as a spooled file whose sha256 and size are known.
Its content goes into `blob_chunks` a piece at a time, so a 20 MB upload never
sits whole in the gateway's memory (nor in the driver's buffers). The blob row
is inserted first with ON CONFLICT DO NOTHING: content already stored (by an
email or an earlier upload) is not written again, and two concurrent uploads of
the same file write it once (the second waits on the first's row).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import BinaryIO

from sqlalchemy import insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.errors import StorageUnavailable
from storage.models import blob_chunks, blobs

CHUNK_BYTES = 512 * 1024


async def store_upload(engine: AsyncEngine, source: BinaryIO, *, sha256: str, size: int,
                       chunk_bytes: int = CHUNK_BYTES) -> bool:
    """Commit the content of `source` (read from its start) as blob `sha256`.

    Returns False when the blob was already stored. Raises StorageUnavailable on
    any database fault: the caller answers "try later" and nothing half-written
    is visible (the blob row and its pieces commit together).
    """
    try:
        async with engine.begin() as conn:
            dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            added = (await conn.execute(
                dialect_insert(blobs).on_conflict_do_nothing().returning(blobs.c.sha256),
                {"sha256": sha256, "size": size, "content": None})).first()
            if added is None:
                return False
            source.seek(0)
            seq = 0
            while True:
                # The spool may be on disk: read it off the event loop.
                piece = await asyncio.to_thread(source.read, chunk_bytes)
                if not piece:
                    break
                await conn.execute(insert(blob_chunks),
                                   {"sha256": sha256, "seq": seq, "data": piece})
                seq += 1
            return True
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        raise StorageUnavailable(f"{type(exc).__name__}: {exc}".splitlines()[0]) from None


async def read_blob(engine: AsyncEngine, sha256: str) -> AsyncIterator[bytes]:
    """The blob's content in order: whole when stored whole, else piece by piece."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(blobs.c.content).where(blobs.c.sha256 == sha256))
               ).first()
    if row is None:
        return
    if row[0] is not None:
        yield row[0]
        return
    seq = 0
    while True:
        # One short read per piece: no connection is held while the client reads.
        async with engine.connect() as conn:
            piece = (await conn.execute(
                select(blob_chunks.c.data).where(blob_chunks.c.sha256 == sha256,
                                                 blob_chunks.c.seq == seq))).scalar()
        if piece is None:
            return
        yield piece
        seq += 1
