"""Work on committed inbox items: claim, fail, replay (storing results: store.py).

Claims are single statements (UPDATE ... WHERE id IN (SELECT ... FOR UPDATE
SKIP LOCKED) RETURNING) so two processes never take the same item; SQLite has
one writer at a time, so the same statement is serialised there. A claim is a
lease: if the process dies, the item becomes claimable again when it expires.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.lifecycle import ItemState
from storage.engine import as_utc, connection, transaction, utcnow
from storage.models import inbox_items
from storage.reference import reference_for
from storage.storable import storable_text

# Kept of an error's text (it may quote the input that caused it).
MAX_ERROR_CHARS = 4000


@dataclass(frozen=True, slots=True)
class ClaimedItem:
    id: int
    channel: str
    raw: bytes
    meta: dict[str, Any]
    attempts: int
    received_at: datetime

    @property
    def reference(self) -> str:
        return reference_for(self.id)


async def claim_items(engine: AsyncEngine, *, limit: int, lease_seconds: float,
                      now: datetime | None = None) -> list[ClaimedItem]:
    now = now or utcnow()
    ready = or_(
        and_(inbox_items.c.state == ItemState.PENDING, inbox_items.c.next_attempt_at <= now),
        # A lease that ran out means its process died mid-item: take it over.
        and_(inbox_items.c.state == ItemState.PROCESSING, inbox_items.c.lease_until < now),
    )
    candidates = (
        select(inbox_items.c.id).where(ready).order_by(inbox_items.c.id).limit(limit)
        .with_for_update(skip_locked=True)
    )
    statement = (
        update(inbox_items)
        .where(inbox_items.c.id.in_(candidates.scalar_subquery()))
        .values(state=ItemState.PROCESSING, attempts=inbox_items.c.attempts + 1,
                lease_until=now + timedelta(seconds=lease_seconds))
        .returning(inbox_items.c.id, inbox_items.c.channel, inbox_items.c.raw,
                   inbox_items.c.meta, inbox_items.c.attempts, inbox_items.c.received_at)
    )
    async with transaction(engine) as conn:
        rows = (await conn.execute(statement)).all()
    return sorted(
        (ClaimedItem(r.id, r.channel, r.raw, r.meta, r.attempts, as_utc(r.received_at))  # type: ignore[arg-type]
         for r in rows),
        key=lambda c: c.id,
    )


async def fail_item(engine: AsyncEngine, item_id: int, error: str, *, dead: bool,
                    retry_at: datetime | None = None) -> None:
    """Record a failed attempt: back to pending for later, or dead-lettered."""
    values: dict[str, Any] = {"last_error": storable_text(error[:MAX_ERROR_CHARS]),
                              "lease_until": None}
    if dead:
        values["state"] = ItemState.DEAD
    else:
        values |= {"state": ItemState.PENDING, "next_attempt_at": retry_at or utcnow()}
    async with transaction(engine) as conn:
        await conn.execute(update(inbox_items).where(inbox_items.c.id == item_id).values(values))


async def defer_items(engine: AsyncEngine, item_ids: list[int], error: str, *,
                      retry_at: datetime) -> None:
    """Hand items back after a storage fault, for `retry_at`: their claim is not
    counted as an attempt, since the fault was not theirs."""
    if not item_ids:
        return
    async with transaction(engine) as conn:
        await conn.execute(update(inbox_items).where(inbox_items.c.id.in_(item_ids)).values(
            state=ItemState.PENDING, next_attempt_at=retry_at, lease_until=None,
            last_error=storable_text(error[:MAX_ERROR_CHARS]),
            attempts=case((inbox_items.c.attempts > 0, inbox_items.c.attempts - 1), else_=0)))


async def requeue_dead(engine: AsyncEngine, item_ids: list[int] | None = None) -> int:
    """Put dead-lettered items (all, or the given ones) back for processing."""
    condition = inbox_items.c.state == ItemState.DEAD
    if item_ids is not None:
        condition = and_(condition, inbox_items.c.id.in_(item_ids))
    async with transaction(engine) as conn:
        result = await conn.execute(update(inbox_items).where(condition).values(
            state=ItemState.PENDING, attempts=0, next_attempt_at=utcnow(), lease_until=None))
    return result.rowcount


async def dead_items(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with connection(engine) as conn:
        rows = (await conn.execute(
            select(inbox_items.c.id, inbox_items.c.channel, inbox_items.c.received_at,
                   inbox_items.c.attempts, inbox_items.c.last_error)
            .where(inbox_items.c.state == ItemState.DEAD).order_by(inbox_items.c.id))).all()
    return [{"id": r.id, "reference": reference_for(r.id), "channel": r.channel,
             "received_at": as_utc(r.received_at), "attempts": r.attempts,
             "last_error": r.last_error} for r in rows]


async def release_claims(engine: AsyncEngine) -> int:
    """Hand back every claimed item at once (SQLite: one process, so all are ours).

    On PostgreSQL other live processes may hold claims; there leases expire.
    """
    async with transaction(engine) as conn:
        result = await conn.execute(
            update(inbox_items).where(inbox_items.c.state == ItemState.PROCESSING)
            .values(state=ItemState.PENDING, lease_until=None))
    return result.rowcount
