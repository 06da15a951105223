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

A refusal means "not stored". A submitter that gives up (its timeout ran out
while its item waited behind a held batch, or its client went away) withdraws
the item: the writer skips it, or deletes its row in the same transaction
before COMMIT. Once COMMIT is sent with an item's row, its submitter waits for
the outcome (bounded by the writer's own timeout); and when COMMIT's answer is
lost (the connection died under it), the writer looks whether the rows are
there before it answers, so a client is not told "try later" for an input that
was stored, or "stored" for one that was not.

Batches are bounded by bytes as well as by count: a batch's rows sit whole in
the driver's buffers while they are sent. A large item (a big mail or post)
is not batched at all: it takes its own transaction beside the group commit,
`LARGE_COMMITS` at a time, so a sender of large mail never holds up everyone
else's small ones behind a slow commit, and past that many it is the large
items that wait (and are refused when their time runs out).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage.engine import connection, insert_ids, transaction, utcnow, write_gate
from storage.errors import (
    DRIVER_FAULTS,
    IdempotencyConflict,
    StorageUnavailable,
    Unstorable,
    described,
    is_data_fault,
    refuses_value,
)
from storage.install_key import references
from storage.models import blobs, inbox_items
from storage.reference import References
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


def item_row(item: NewItem, now: datetime, *, meta_storable: bool = False) -> dict[str, Any]:
    """The row of a new item. `meta_storable`: the caller has checked that
    `exact_meta` would keep the metadata as it is (a batch sharing most of it)."""
    return {
        "channel": item.channel,
        "received_at": now,
        "raw": item.raw,
        # Headers and envelopes carry what senders like: storable, nothing lost.
        "meta": item.meta if meta_storable else exact_meta(item.meta),
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": now,
    }


log = logging.getLogger("intake.inbox")

# Raw bytes per group commit: the batch's rows are held whole by the driver
# while they are sent.
MAX_BATCH_BYTES = 32 * 1024 * 1024
# An item this large commits alone, beside the group commit (a 25 MB mail takes
# about 0.4 s to commit on PostgreSQL; a batch of small ones, a few ms), and at
# most this many such commits run at once.
LARGE_ITEM_BYTES = 1024 * 1024
LARGE_COMMITS = 2
# While a commit's outcome is looked up after its answer was lost.
RECHECK_INTERVAL_SECONDS = 0.25


@dataclass(eq=False, slots=True)
class _Waiter:
    """One submission: its item, its answer, and whether COMMIT was sent with it.

    A submitter that gives up cancels the future (`withdrawn`): the writer then
    never commits its row. Once `sealed` (COMMIT sent), the submitter waits."""

    item: NewItem
    future: asyncio.Future[Accepted]
    size: int
    sealed: bool = False

    @property
    def withdrawn(self) -> bool:
        return self.future.cancelled()


class _NotCommitted(Exception):
    """The batch failed before COMMIT was sent: nothing of it is stored."""


class _Refused(Exception):
    """The database refused the batch's values before COMMIT: nothing of it is
    stored, the transaction is rolled back, the connection is fine."""


class _CommitUnknown(Exception):
    """COMMIT was sent and its answer never came: the rows may be stored."""

    def __init__(self, written: list[tuple[_Waiter, int]]) -> None:
        super().__init__("the outcome of COMMIT is unknown")
        self.written = written


def _fail(batch: list[_Waiter], exc: BaseException) -> None:
    error = StorageUnavailable(f"{type(exc).__name__}: {exc}".splitlines()[0])
    for waiter in batch:
        if not waiter.future.done():
            waiter.future.set_exception(error)


def _refuse(waiter: _Waiter, exc: BaseException) -> None:
    """Answer the one item the database refused, found by splitting its batch."""
    detail = described(exc)  # never the statement's values (errors.described)
    if refuses_value(exc):
        log.warning("inbox writer: %s item refused by the database: %s", waiter.item.channel,
                    detail)
        error: Exception = Unstorable(f"the input cannot be stored as sent ({detail})")
    else:
        log.error("inbox writer: %s item failed alone: %s", waiter.item.channel, detail)
        error = StorageUnavailable(detail)
    if not waiter.future.done():
        waiter.future.set_exception(error)


async def _discard(conn: AsyncConnection) -> None:
    """Drop a connection that failed: it may be dead, never reuse it."""
    try:
        await conn.invalidate()
        await conn.close()
    except Exception:  # noqa: BLE001, S110 - it is being thrown away
        pass


class InboxWriter:
    """Group-committing writer of inbox items; start with `run()` as tasks."""

    def __init__(self, *, engine: AsyncEngine, max_batch: int = 256, timeout: float = 10.0,
                 on_commit: Callable[[], None] | None = None,
                 max_batch_bytes: int = MAX_BATCH_BYTES,
                 large_item_bytes: int = LARGE_ITEM_BYTES) -> None:
        """`on_commit` is told after each commit, so a waiting pipeline starts at once."""
        self._engine = engine
        self._max_batch = max_batch
        self._max_batch_bytes = max_batch_bytes
        self._large_item_bytes = large_item_bytes
        self._timeout = timeout
        self._queue: asyncio.Queue[_Waiter] = asyncio.Queue()
        self._on_commit = on_commit
        self._large_lane = asyncio.Semaphore(LARGE_COMMITS)
        self._alone: set[asyncio.Task[None]] = set()
        # This install's references: read before the first batch is written (a
        # database that cannot say is a storage fault like any other).
        self._references: References | None = None

    async def _refs(self) -> References:
        if self._references is None:
            self._references = await references(self._engine)
        return self._references

    async def submit(self, item: NewItem) -> Accepted:
        """Return once the item is committed; raise StorageUnavailable otherwise
        (and then it is not stored), or Unstorable when the database refuses the
        item's own values."""
        size = len(item.raw) + sum(len(content) for _, content in item.blobs)
        waiter = _Waiter(item, asyncio.get_running_loop().create_future(), size)
        if size >= self._large_item_bytes:
            task = asyncio.create_task(self._commit_alone(waiter))
            self._alone.add(task)  # held until done: the loop keeps only weak references
            task.add_done_callback(self._alone.discard)
        else:
            self._queue.put_nowait(waiter)
        try:
            async with asyncio.timeout(self._timeout):
                return await asyncio.shield(waiter.future)
        except TimeoutError:
            if not waiter.sealed:
                waiter.future.cancel()  # withdrawn: the writer will not commit it
                raise StorageUnavailable("timed out waiting for the database") from None
        except asyncio.CancelledError:  # the client went away
            if not waiter.sealed:
                waiter.future.cancel()
            raise
        # COMMIT was sent with the item: its outcome is the answer. The writer
        # settles it within its own timeout, and as long again to look up an
        # outcome whose answer was lost.
        return await asyncio.shield(waiter.future)

    async def run(self) -> None:
        # Each writer task keeps one connection across batches: checking one out
        # (and pinging it) per batch costs more CPU than the insert itself.
        conn: AsyncConnection | None = None
        carry: _Waiter | None = None
        try:
            while True:
                first = carry or await self._queue.get()
                carry = None
                if first.withdrawn:
                    continue
                # On SQLite the batch is gathered once this process's write turn
                # is the writer's (storage.engine.write_gate; nothing to wait for
                # on PostgreSQL): what arrived while another writer held the turn
                # shares this commit, where it took a turn and an fsync of its own.
                turn = contextlib.AsyncExitStack()
                try:
                    await turn.enter_async_context(write_gate(self._engine))
                except StorageUnavailable as exc:  # the turn did not come in time
                    _fail([first], exc)
                    continue
                except asyncio.CancelledError:
                    _fail([first], StorageUnavailable("shutting down"))
                    raise
                async with turn:
                    batch, carry = self._gather(first)
                    conn = await self._commit(conn, batch)
        finally:
            if carry is not None:
                _fail([carry], StorageUnavailable("shutting down"))
            if conn is not None:
                await _discard(conn)

    def _gather(self, first: _Waiter) -> tuple[list[_Waiter], _Waiter | None]:
        """`first` and what waits behind it, within the batch's bounds; and the
        waiter that would pass the byte bound, which starts the next batch."""
        batch, size = [first], first.size
        while len(batch) < self._max_batch and not self._queue.empty():
            waiter = self._queue.get_nowait()
            if waiter.withdrawn:
                continue
            if size + waiter.size > self._max_batch_bytes:
                return batch, waiter
            batch.append(waiter)
            size += waiter.size
        return batch, None

    async def _commit_alone(self, waiter: _Waiter) -> None:
        """A large item in its own transaction, on a connection of the pool."""
        async with self._large_lane:
            if waiter.withdrawn:
                return  # its time ran out while others were committed
            conn = await self._commit(None, [waiter])
            if conn is not None:
                await conn.close()

    async def _commit(self, conn: AsyncConnection | None,
                      batch: list[_Waiter]) -> AsyncConnection | None:
        """Commit `batch` and answer every submitter; the connection to keep."""
        if self._references is None:
            # Read once, before the first batch: answers are made in _succeed.
            try:
                await self._refs()
            except Exception as exc:  # noqa: BLE001 - StorageUnavailable: try later
                _fail(batch, exc)
                return conn
        # Waiters answered (committed or refused) as the batch is split, so a
        # retry never writes one twice.
        settled: set[_Waiter] = set()
        rows = self._rows(batch, settled)
        # A kept connection may have died while idle (database restarted): if
        # the batch failed before COMMIT was sent, one fresh try is safe.
        for fresh in (conn is None, True):
            remaining = [w for w in batch if w not in settled]
            try:
                if conn is None:
                    conn = await self._connect()
                await self._write_isolating(conn, remaining, rows, settled)
            except _NotCommitted as exc:
                if conn is not None:
                    await _discard(conn)
                conn = None
                cause = exc.__cause__ or exc
                if fresh or isinstance(cause, TimeoutError):  # a held lock: no retry
                    _fail([w for w in batch if w not in settled], cause)
                    return None
            except _CommitUnknown as exc:
                if conn is not None:
                    await _discard(conn)
                await self._settle_unknown(exc.written, exc.__cause__ or exc)
                _fail(batch, exc)  # anything else of the batch was not sent
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
    def _rows(batch: list[_Waiter], settled: set[_Waiter]) -> dict[_Waiter, dict[str, Any]]:
        """Each waiter's row, built once; an item whose row cannot be built (a
        bug of ours) is answered alone with "try later", the batch goes on."""
        now = utcnow()
        rows = {}
        for waiter in batch:
            try:
                rows[waiter] = item_row(waiter.item, now)
            except Exception as exc:  # noqa: BLE001 - isolated, logged, answered
                log.exception("inbox writer: cannot build the row of a %s item",
                              waiter.item.channel)
                _fail([waiter], exc)
                settled.add(waiter)
        return rows

    async def _write_isolating(self, conn: AsyncConnection, batch: list[_Waiter],
                               rows: dict[_Waiter, dict[str, Any]],
                               settled: set[_Waiter]) -> None:
        """Commit `batch`; if the database refuses its values, commit it in
        halves (in order), down to the one item at fault, which alone is refused.

        k bad items in n cost about 2k*log2(n/k) extra transactions, and only
        when an edge let an unstorable value through.
        """
        settled.update(w for w in batch if w.withdrawn)
        batch = [w for w in batch if not w.withdrawn]
        if not batch:
            return
        try:
            ids = await self._write(conn, batch, [rows[w] for w in batch])
        except _Refused as exc:
            if len(batch) == 1:
                _refuse(batch[0], exc.__cause__ or exc)
                settled.add(batch[0])
                return
            middle = len(batch) // 2
            await self._write_isolating(conn, batch[:middle], rows, settled)
            await self._write_isolating(conn, batch[middle:], rows, settled)
            return
        self._succeed(list(zip(batch, ids, strict=True)))
        settled.update(batch)

    async def _connect(self) -> AsyncConnection:
        try:
            async with asyncio.timeout(self._timeout):
                return await self._engine.connect()
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            raise _NotCommitted() from exc

    async def _write(self, conn: AsyncConnection, batch: list[_Waiter],
                     rows: list[dict[str, Any]]) -> list[int]:
        """Insert and commit the batch's rows, less those withdrawn meanwhile,
        in this process's SQLite write turn (storage.engine.write_gate)."""
        deadline = asyncio.get_running_loop().time() + self._timeout
        async with contextlib.AsyncExitStack() as turn:
            try:
                async with asyncio.timeout_at(deadline):
                    await turn.enter_async_context(write_gate(self._engine))
            except (TimeoutError, StorageUnavailable) as exc:
                raise _NotCommitted() from exc
            return await self._write_in_turn(conn, batch, rows, deadline)

    async def _write_in_turn(self, conn: AsyncConnection, batch: list[_Waiter],
                             rows: list[dict[str, Any]], deadline: float) -> list[int]:
        try:
            async with asyncio.timeout_at(deadline):
                transaction = await _begin(conn)
        except TimeoutError as exc:
            raise _NotCommitted() from exc
        try:
            async with asyncio.timeout_at(deadline):
                added = await insert_blobs(conn, {sha: content for w in batch
                                                  for sha, content in w.item.blobs})
                ids = await insert_ids(conn, inbox_items, rows)
        except Exception as exc:
            if isinstance(exc, DRIVER_FAULTS) or not is_data_fault(exc):
                raise _NotCommitted() from exc  # a timeout (a held lock) too
            try:
                await transaction.rollback()
            except Exception:  # noqa: BLE001 - the connection is suspect now
                raise _NotCommitted() from exc
            raise _Refused() from exc
        # Submitters that gave up while the rows were written take them back; the
        # others are sealed at the same moment (no await between), and wait.
        withdrawn = [item_id for w, item_id in zip(batch, ids, strict=True) if w.withdrawn]
        written = [(w, item_id) for w, item_id in zip(batch, ids, strict=True)
                   if not w.withdrawn]
        for w, _ in written:
            w.sealed = True
        try:
            async with asyncio.timeout_at(deadline):
                if withdrawn:
                    await conn.execute(delete(inbox_items).where(inbox_items.c.id.in_(withdrawn)))
                    # Their files too: what this transaction added for them alone.
                    kept = {sha for w, _ in written for sha, _ in w.item.blobs}
                    if orphaned := added - kept:
                        await conn.execute(delete(blobs).where(blobs.c.sha256.in_(orphaned)))
        except Exception as exc:
            raise _NotCommitted() from exc
        try:
            async with asyncio.timeout_at(deadline):
                await transaction.commit()
        except Exception as exc:
            raise _CommitUnknown(written) from exc
        if withdrawn:
            log.info("inbox writer: %d item(s) withdrawn by their submitters before COMMIT",
                     len(withdrawn))
        return ids

    async def _settle_unknown(self, written: list[tuple[_Waiter, int]],
                              cause: BaseException) -> None:
        """COMMIT was sent and its answer lost: answer each submitter with what
        the database holds, looked up (again and again, within the timeout) on
        a fresh connection; "try later" only if it cannot be known."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        wanted = [item_id for _, item_id in written]
        while True:
            try:
                async with asyncio.timeout_at(deadline), connection(self._engine) as conn:
                    found = set((await conn.execute(select(inbox_items.c.id).where(
                        inbox_items.c.id.in_(wanted)))).scalars())
                break
            except (StorageUnavailable, TimeoutError):
                if loop.time() + RECHECK_INTERVAL_SECONDS >= deadline:
                    log.error("inbox writer: a commit of %d item(s) has an unknown outcome "
                              "(%s); answered 'try later'", len(written), cause)
                    _fail([w for w, _ in written], cause)
                    return
                await asyncio.sleep(RECHECK_INTERVAL_SECONDS)
        stored = [(w, item_id) for w, item_id in written if item_id in found]
        log.warning("inbox writer: a commit's answer was lost (%s); %d of %d item(s) are "
                    "stored", cause, len(stored), len(written))
        if stored:
            self._succeed(stored)
        _fail([w for w, item_id in written if item_id not in found], cause)

    def _succeed(self, written: list[tuple[_Waiter, int]]) -> None:
        assert self._references is not None  # read by _commit() before writing
        for waiter, item_id in written:
            if not waiter.future.done():
                waiter.future.set_result(
                    Accepted(item_id, self._references.reference_for(item_id)))
        if self._on_commit is not None:
            self._on_commit()

    async def submit_idempotent(self, item: NewItem, key: str) -> Accepted:
        """Commit once per key: the same body again gets the first answer back.

        These are rare, so they take their own transaction instead of a batch
        (a unique-key clash must not fail other submitters' rows).
        """
        digest = hashlib.sha256(item.raw).hexdigest()
        refs = await self._refs()
        try:
            async with asyncio.timeout(self._timeout):
                existing = await self._find_key(key)
                if existing is None:
                    try:
                        async with transaction(self._engine) as conn:
                            row = item_row(item, utcnow()) | {
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
                        return Accepted(item_id, refs.reference_for(item_id))
        except Exception as exc:
            detail = described(exc)  # never the statement's values (errors.described)
            if refuses_value(exc):  # its own transaction: no one else is affected
                raise Unstorable(f"the input cannot be stored as sent ({detail[:300]})") from None
            if isinstance(exc, SQLAlchemyError | OSError | TimeoutError):
                raise StorageUnavailable(detail) from None
            raise
        item_id, first_digest = existing
        if first_digest != digest:
            raise IdempotencyConflict(key)
        return Accepted(item_id, refs.reference_for(item_id), replayed=True)

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
        return await insert_ids(conn, inbox_items, [item_row(i, now) for i in items])
