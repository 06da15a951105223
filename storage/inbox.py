"""Accepting inbound items: commit the raw input before anyone is told "accepted".

Concurrent submissions share a commit (group commit): a writer task takes
whatever is waiting, inserts it in one statement and one transaction, and only
then resolves each submitter's future. Every submitter still gets its answer
after its own row is durable; under load one fsync serves many.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage.engine import connection, transaction, utcnow
from storage.errors import IdempotencyConflict, StorageUnavailable
from storage.models import inbox_items
from storage.reference import reference_for
from storage.uploads import insert_blobs


@dataclass(frozen=True, slots=True)
class NewItem:
    channel: str
    raw: bytes
    meta: dict[str, Any] = field(default_factory=dict)
    # Small files the item refers to by sha256 (form uploads), committed in the
    # same transaction: one commit for the post and its files.
    blobs: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Accepted:
    item_id: int
    reference: str
    # True when an Idempotency-Key matched an earlier, identical submission.
    replayed: bool = False


def _row(item: NewItem, now: datetime) -> dict[str, Any]:
    return {
        "channel": item.channel,
        "received_at": now,
        "raw": item.raw,
        "meta": item.meta,
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": now,
    }


_Waiter = tuple[NewItem, "asyncio.Future[Accepted]"]


class _NotCommitted(Exception):
    """The batch failed before COMMIT was sent: nothing of it is stored."""


def _fail(batch: list[_Waiter], exc: BaseException) -> None:
    error = StorageUnavailable(f"{type(exc).__name__}: {exc}".splitlines()[0])
    for _, future in batch:
        if not future.done():
            future.set_exception(error)


async def _discard(conn: AsyncConnection) -> None:
    """Drop a connection that failed: it may be dead, never reuse it."""
    try:
        await conn.invalidate()
        await conn.close()
    except Exception:  # noqa: BLE001, S110 - it is being thrown away
        pass


log = logging.getLogger("intake.inbox")

_INSERT = insert(inbox_items).returning(inbox_items.c.id, sort_by_parameter_order=True)


class InboxWriter:
    """Group-committing writer of inbox items; start with `run()` as tasks."""

    def __init__(self, *, engine: AsyncEngine, max_batch: int = 256, timeout: float = 10.0,
                 on_commit: Callable[[], None] | None = None) -> None:
        """`on_commit` is told after each commit, so a waiting pipeline starts at once."""
        self._engine = engine
        self._max_batch = max_batch
        self._timeout = timeout
        self._queue: asyncio.Queue[_Waiter] = asyncio.Queue()
        self._on_commit = on_commit

    async def submit(self, item: NewItem) -> Accepted:
        """Return once the item is committed; raise StorageUnavailable otherwise."""
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        try:
            async with asyncio.timeout(self._timeout):
                # If this waiter gives up (timeout, client gone), the writer sees the
                # future cancelled and skips it; a row it committed stays stored.
                return await future
        except TimeoutError:
            raise StorageUnavailable("timed out waiting for the database") from None

    async def run(self) -> None:
        # Each writer task keeps one connection across batches: checking one out
        # (and pinging it) per batch costs more CPU than the insert itself.
        conn: AsyncConnection | None = None
        try:
            while True:
                batch = [await self._queue.get()]
                while len(batch) < self._max_batch and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                # A kept connection may have died while idle (database restarted):
                # if the batch failed before COMMIT was sent, one fresh try is safe.
                for fresh in (conn is None, True):
                    try:
                        if conn is None:
                            conn = await self._connect()
                        ids = await self._write(conn, batch)
                    except _NotCommitted as exc:
                        if conn is not None:
                            await _discard(conn)
                        conn = None
                        if fresh:
                            _fail(batch, exc.__cause__ or exc)
                            break
                    except (SQLAlchemyError, OSError, TimeoutError) as exc:
                        # Failed at or during COMMIT: the outcome is unknown, so the
                        # sender is told to retry rather than risk a silent loss.
                        _fail(batch, exc)
                        if conn is not None:
                            await _discard(conn)
                        conn = None
                        break
                    except asyncio.CancelledError:
                        _fail(batch, StorageUnavailable("shutting down"))
                        raise
                    except Exception as exc:  # noqa: BLE001 - the writer must live on
                        # Anything else must not kill the writer: every later
                        # submitter would wait for nothing.
                        log.exception("inbox writer: unexpected failure")
                        _fail(batch, exc)
                        conn = None
                        break
                    else:
                        self._succeed(batch, ids)
                        break
        finally:
            if conn is not None:
                await _discard(conn)

    async def _connect(self) -> AsyncConnection:
        try:
            async with asyncio.timeout(self._timeout):
                return await self._engine.connect()
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            raise _NotCommitted() from exc

    async def _write(self, conn: AsyncConnection, batch: list[_Waiter]) -> list[int]:
        now = utcnow()
        async with asyncio.timeout(self._timeout):
            try:
                transaction = await conn.begin()
                await insert_blobs(conn, {sha: content for item, _ in batch
                                          for sha, content in item.blobs})
                result = await conn.execute(_INSERT, [_row(item, now) for item, _ in batch])
                ids = [row[0] for row in result]
            except (SQLAlchemyError, OSError, TimeoutError) as exc:
                raise _NotCommitted() from exc
            await transaction.commit()
        return ids

    def _succeed(self, batch: list[_Waiter], ids: list[int]) -> None:
        for (_, future), item_id in zip(batch, ids, strict=True):
            if not future.done():
                future.set_result(Accepted(item_id, reference_for(item_id)))
        if self._on_commit is not None:
            self._on_commit()

    async def submit_idempotent(self, item: NewItem, key: str) -> Accepted:
        """Commit once per key: the same body again gets the first answer back.

        These are rare, so they take their own transaction instead of a batch
        (a unique-key clash must not fail other submitters' rows).
        """
        digest = hashlib.sha256(item.raw).hexdigest()
        try:
            async with asyncio.timeout(self._timeout):
                existing = await self._find_key(key)
                if existing is None:
                    try:
                        async with transaction(self._engine) as conn:
                            row = _row(item, utcnow()) | {
                                "idempotency_key": key, "body_sha256": digest}
                            result = await conn.execute(insert(inbox_items).returning(
                                inbox_items.c.id), row)
                            item_id = result.scalar_one()
                    except IntegrityError:
                        existing = await self._find_key(key)  # lost a race to a twin
                        if existing is None:
                            raise
                    else:
                        if self._on_commit is not None:
                            self._on_commit()
                        return Accepted(item_id, reference_for(item_id))
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            raise StorageUnavailable(f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
        item_id, first_digest = existing
        if first_digest != digest:
            raise IdempotencyConflict(key)
        return Accepted(item_id, reference_for(item_id), replayed=True)

    async def _find_key(self, key: str) -> tuple[int, str] | None:
        async with connection(self._engine) as conn:
            row = (await conn.execute(
                select(inbox_items.c.id, inbox_items.c.body_sha256)
                .where(inbox_items.c.idempotency_key == key))).first()
        return None if row is None else (row[0], row[1])


async def accept_many(engine: AsyncEngine, items: Sequence[NewItem]) -> list[int]:
    """Commit several items in one transaction (tools and tests)."""
    now = utcnow()
    async with transaction(engine) as conn:
        result = await conn.execute(_INSERT, [_row(i, now) for i in items])
        return [row[0] for row in result]
