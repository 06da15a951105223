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
from collections.abc import AsyncIterator, Mapping
from typing import BinaryIO

from sqlalchemy import insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage.engine import connection, insert_new, transaction
from storage.errors import StorageUnavailable
from storage.models import blob_chunks, blobs

CHUNK_BYTES = 512 * 1024


async def insert_blobs(conn: AsyncConnection, contents: Mapping[str, bytes]) -> set[str]:
    """Store whole contents by sha256 in the caller's transaction; content already
    stored (by any message or upload) is kept once. Returns the sha256s this
    call added (a caller that takes its rows back removes only those)."""
    if not contents:
        return set()
    result = await conn.execute(insert_new(conn, blobs).returning(blobs.c.sha256), [
        {"sha256": sha, "size": len(content), "content": content}
        for sha, content in contents.items()])
    return set(result.scalars())


async def store_upload(engine: AsyncEngine, source: BinaryIO, *, sha256: str, size: int,
                       chunk_bytes: int = CHUNK_BYTES) -> bool:
    """Commit the content of `source` (read from its start) as blob `sha256`.

    Returns False when the blob was already stored. Raises StorageUnavailable on
    any database fault: the caller answers "try later" and nothing half-written
    is visible (the blob row and its pieces commit together).
    """
    try:
        async with transaction(engine) as conn:
            added = (await conn.execute(
                insert_new(conn, blobs).returning(blobs.c.sha256),
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
    async with connection(engine) as conn:
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
        async with connection(engine) as conn:
            piece = (await conn.execute(
                select(blob_chunks.c.data).where(blob_chunks.c.sha256 == sha256,
                                                 blob_chunks.c.seq == seq))).scalar()
        if piece is None:
            return
        yield piece
        seq += 1
