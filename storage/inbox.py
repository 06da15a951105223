"""Accepting inbound items: commit the raw input before anyone is told "accepted".

Concurrent submissions share a commit (group commit): a writer task takes
whatever is waiting, inserts it in one statement and one transaction, and only
then resolves each submitter's future. Every submitter still gets its answer
after its own row is durable; under load one fsync serves many.

One sender must never fail the others. Every row is made storable when it is
built (`exact_meta`: the metadata's odd strings kept as their exact bytes), and
a batch the database refuses for its values (not for being unwell) is split in
halves, each committed on its own, down to the item at fault: every other item
commits and gets its answer; that one alone is refused (`Unstorable`).
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
from storage.errors import (
    DRIVER_FAULTS,
    IdempotencyConflict,
    StorageUnavailable,
    Unstorable,
    is_data_fault,
    refuses_value,
)
from storage.models import inbox_items
from storage.reference import reference_for
from storage.storable import exact_meta
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
        # Headers and envelopes carry what senders like: storable, nothing lost.
        "meta": exact_meta(item.meta),
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": now,
    }


log = logging.getLogger("intake.inbox")

_Waiter = tuple[NewItem, "asyncio.Future[Accepted]"]


class _NotCommitted(Exception):
    """The batch failed before COMMIT was sent: nothing of it is stored."""


class _Refused(Exception):
    """The database refused the batch's values before COMMIT: nothing of it is
    stored, the transaction is rolled back, the connection is fine."""


def _fail(batch: list[_Waiter], exc: BaseException) -> None:
    error = StorageUnavailable(f"{type(exc).__name__}: {exc}".splitlines()[0])
    for _, future in batch:
        if not future.done():
            future.set_exception(error)


def _refuse(waiter: _Waiter, exc: BaseException) -> None:
    """Answer the one item the database refused, found by splitting its batch."""
    item, future = waiter
    detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    if refuses_value(exc):
        log.warning("inbox writer: %s item refused by the database: %s", item.channel, detail)
        error: Exception = Unstorable(f"the input cannot be stored as sent ({detail})")
    else:
        log.error("inbox writer: %s item failed alone: %s", item.channel, detail)
        error = StorageUnavailable(detail)
    if not future.done():
        future.set_exception(error)


async def _discard(conn: AsyncConnection) -> None:
    """Drop a connection that failed: it may be dead, never reuse it."""
    try:
        await conn.invalidate()
        await conn.close()
    except Exception:  # noqa: BLE001, S110 - it is being thrown away
        pass


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
        """Return once the item is committed; raise StorageUnavailable otherwise,
        or Unstorable when the database refuses the item's own values."""
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
                conn = await self._commit(conn, batch)
        finally:
            if conn is not None:
                await _discard(conn)

    async def _commit(self, conn: AsyncConnection | None,
                      batch: list[_Waiter]) -> AsyncConnection | None:
        """Commit `batch` and answer every submitter; the connection to keep."""
        # Waiters answered (committed or refused) as the batch is split, so a
        # retry never writes one twice.
        settled: set[asyncio.Future[Accepted]] = set()
        rows = self._rows(batch, settled)
        # A kept connection may have died while idle (database restarted): if
        # the batch failed before COMMIT was sent, one fresh try is safe.
        for fresh in (conn is None, True):
            remaining = [w for w in batch if w[1] not in settled]
            try:
                if conn is None:
                    conn = await self._connect()
                await self._write_isolating(conn, remaining, rows, settled)
            except _NotCommitted as exc:
                if conn is not None:
                    await _discard(conn)
                conn = None
                if fresh:
                    _fail([w for w in batch if w[1] not in settled], exc.__cause__ or exc)
                    return None
            except (SQLAlchemyError, OSError, TimeoutError) as exc:
                # Failed at or during COMMIT: the outcome is unknown, so the
                # sender is told to retry rather than risk a silent loss.
                _fail([w for w in batch if w[1] not in settled], exc)
                if conn is not None:
                    await _discard(conn)
                return None
            except asyncio.CancelledError:
                _fail(batch, StorageUnavailable("shutting down"))
                raise
            except Exception as exc:  # noqa: BLE001 - the writer must live on
                # Anything else must not kill the writer: every later
                # submitter would wait for nothing.
                log.exception("inbox writer: unexpected failure")
                _fail(batch, exc)
                if conn is not None:
                    await _discard(conn)
                return None
            else:
                return conn
        return conn  # not reached: the fresh try returns

    @staticmethod
    def _rows(batch: list[_Waiter], settled: set[asyncio.Future[Accepted]]
              ) -> dict[asyncio.Future[Accepted], dict[str, Any]]:
        """Each waiter's row, built once; an item whose row cannot be built (a
        bug of ours) is answered alone with "try later", the batch goes on."""
        now = utcnow()
        rows = {}
        for item, future in batch:
            try:
                rows[future] = _row(item, now)
            except Exception as exc:  # noqa: BLE001 - isolated, logged, answered
                log.exception("inbox writer: cannot build the row of a %s item", item.channel)
                _fail([(item, future)], exc)
                settled.add(future)
        return rows

    async def _write_isolating(self, conn: AsyncConnection, batch: list[_Waiter],
                               rows: dict[asyncio.Future[Accepted], dict[str, Any]],
                               settled: set[asyncio.Future[Accepted]]) -> None:
        """Commit `batch`; if the database refuses its values, commit it in
        halves (in order), down to the one item at fault, which alone is refused.

        k bad items in n cost about 2k*log2(n/k) extra transactions, and only
        when an edge let an unstorable value through.
        """
        if not batch:
            return
        try:
            ids = await self._write(conn, batch, [rows[future] for _, future in batch])
        except _Refused as exc:
            if len(batch) == 1:
                _refuse(batch[0], exc.__cause__ or exc)
                settled.add(batch[0][1])
                return
            middle = len(batch) // 2
            await self._write_isolating(conn, batch[:middle], rows, settled)
            await self._write_isolating(conn, batch[middle:], rows, settled)
            return
        self._succeed(batch, ids)
        settled.update(future for _, future in batch)

    async def _connect(self) -> AsyncConnection:
        try:
            async with asyncio.timeout(self._timeout):
                return await self._engine.connect()
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            raise _NotCommitted() from exc

    async def _write(self, conn: AsyncConnection, batch: list[_Waiter],
                     rows: list[dict[str, Any]]) -> list[int]:
        async with asyncio.timeout(self._timeout):
            transaction = await _begin(conn)
            try:
                await insert_blobs(conn, {sha: content for item, _ in batch
                                          for sha, content in item.blobs})
                result = await conn.execute(_INSERT, rows)
                ids = [row[0] for row in result]
            except DRIVER_FAULTS as exc:
                raise _NotCommitted() from exc
            except Exception as exc:
                if not is_data_fault(exc):
                    raise _NotCommitted() from exc
                try:
                    await transaction.rollback()
                except Exception:  # noqa: BLE001 - the connection is suspect now
                    raise _NotCommitted() from exc
                raise _Refused() from exc
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
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}".splitlines()[0]
            if refuses_value(exc):  # its own transaction: no one else is affected
                raise Unstorable(f"the input cannot be stored as sent ({detail[:300]})") from None
            if isinstance(exc, SQLAlchemyError | OSError | TimeoutError):
                raise StorageUnavailable(detail) from None
            raise
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


async def _begin(conn: AsyncConnection) -> Any:
    try:
        return await conn.begin()
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        raise _NotCommitted() from exc


async def accept_many(engine: AsyncEngine, items: Sequence[NewItem]) -> list[int]:
    """Commit several items in one transaction (tools and tests)."""
    now = utcnow()
    async with transaction(engine) as conn:
        result = await conn.execute(_INSERT, [_row(i, now) for i in items])
        return [row[0] for row in result]
