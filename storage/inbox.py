"""Accepting inbound items: commit the raw input before anyone is told "accepted".

Concurrent submissions share a commit (group commit): a writer task takes
whatever is waiting, inserts it in one statement and one transaction, and only
then resolves each submitter's future. Every submitter still gets its answer
after its own row is durable; under load one fsync serves many.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.engine import utcnow
from storage.errors import IdempotencyConflict, StorageUnavailable
from storage.models import inbox_items
from storage.reference import reference_for


@dataclass(frozen=True, slots=True)
class NewItem:
    channel: str
    raw: bytes
    meta: dict[str, Any] = field(default_factory=dict)


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


_INSERT = insert(inbox_items).returning(inbox_items.c.id, sort_by_parameter_order=True)


class InboxWriter:
    """Group-committing writer of inbox items; start with `run()` as tasks."""

    def __init__(self, engine: AsyncEngine, *, max_batch: int = 256, timeout: float = 10.0,
                 on_commit: Any = None) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._timeout = timeout
        self._queue: asyncio.Queue[tuple[NewItem, asyncio.Future[Accepted]]] = asyncio.Queue()
        self._on_commit = on_commit

    async def submit(self, item: NewItem) -> Accepted:
        """Return once the item is committed; raise StorageUnavailable otherwise."""
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        try:
            return await asyncio.wait_for(asyncio.shield(future), self._timeout)
        except TimeoutError:
            raise StorageUnavailable("timed out waiting for the database") from None

    async def run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write(batch)

    async def _write(self, batch: list[tuple[NewItem, asyncio.Future[Accepted]]]) -> None:
        now = utcnow()
        try:
            async with asyncio.timeout(self._timeout):
                async with self._engine.begin() as conn:
                    result = await conn.execute(_INSERT, [_row(item, now) for item, _ in batch])
                    ids = [row[0] for row in result]
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            error = StorageUnavailable(f"{type(exc).__name__}: {exc}".splitlines()[0])
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
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
                        async with self._engine.begin() as conn:
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
        async with self._engine.connect() as conn:
            row = (await conn.execute(
                select(inbox_items.c.id, inbox_items.c.body_sha256)
                .where(inbox_items.c.idempotency_key == key))).first()
        return None if row is None else (row[0], row[1])


async def accept_many(engine: AsyncEngine, items: Sequence[NewItem]) -> list[int]:
    """Commit several items in one transaction (tools and tests)."""
    now = utcnow()
    async with engine.begin() as conn:
        result = await conn.execute(_INSERT, [_row(i, now) for i in items])
        return [row[0] for row in result]
