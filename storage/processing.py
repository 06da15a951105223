"""Work on committed inbox items: claim, fail, replay (storing results: store.py).

Claims are single statements (UPDATE ... WHERE id IN (SELECT ... FOR UPDATE
SKIP LOCKED) RETURNING) so two processes never take the same item; SQLite has
one writer at a time, so the same statement is serialised there. A claim is a
lease: if the process dies, the item becomes claimable again when it expires.

Each claim writes a fresh token on its items, and every later change of an
item (renewed, failed, dead, deferred, done: store.py) is made only where the
token is still the claimant's: a worker whose lease ran out, whose items
another worker has taken over since, changes nothing.

A claim is bounded by bytes as well as by count, so a batch of large mails
never sits whole in a worker's memory: items are taken in order while the
bytes so far fit the budget (an item larger than the budget is claimed alone).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, false, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.lifecycle import ItemState
from storage.audit import Audit, audit_dead_letters
from storage.engine import among, as_utc, connection, transaction, utcnow
from storage.install_key import references
from storage.models import inbox_items
from storage.reference import UNKEYED, References
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
    # The claim's token; None for an item not taken by `claim_items` (tools,
    # tests), whose changes are then not checked against a claim.
    claim: str | None = None
    # The install's references (`claim_items` gives them; tools and tests that
    # make an item by hand get the unkeyed ones).
    references: References = UNKEYED

    @property
    def reference(self) -> str:
        return self.references.reference_for(self.id)


def new_claim() -> str:
    return secrets.token_hex(16)  # 32 characters: the column's width


async def claim_items(engine: AsyncEngine, *, limit: int, lease_seconds: float,
                      max_bytes: int | None = None, now: datetime | None = None,
                      claim: str | None = None) -> list[ClaimedItem]:
    """Claim up to `limit` ready items, in order, and at most `max_bytes` of raw
    input between them (the first is taken whatever its size, and alone if it
    is larger than that). `claim`: the token to claim them with (the caller's,
    so that a claim whose answer was lost can be handed back: `release_claim`)."""
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
    if max_bytes is None:
        chosen = candidates.scalar_subquery()
    else:
        # The rows are locked first; the running total is taken over them in a
        # second step, since FOR UPDATE cannot sit beside a window function.
        # length() of a bytea or BLOB reads its header, not its content.
        locked = (select(inbox_items.c.id, func.length(inbox_items.c.raw).label("size"))
                  .where(ready).order_by(inbox_items.c.id).limit(limit)
                  .with_for_update(skip_locked=True).cte("locked"))
        total = func.sum(locked.c.size).over(order_by=locked.c.id)
        sized = select(locked.c.id, total.label("total"),
                       func.row_number().over(order_by=locked.c.id).label("n")).cte("sized")
        chosen = (select(sized.c.id).where(or_(sized.c.n == 1, sized.c.total <= max_bytes))
                  .scalar_subquery())
    statement = (
        update(inbox_items)
        .where(inbox_items.c.id.in_(chosen))
        .values(state=ItemState.PROCESSING, attempts=inbox_items.c.attempts + 1,
                lease_until=now + timedelta(seconds=lease_seconds),
                claim_token=claim or new_claim())
        .returning(inbox_items.c.id, inbox_items.c.channel, inbox_items.c.raw,
                   inbox_items.c.meta, inbox_items.c.attempts, inbox_items.c.received_at,
                   inbox_items.c.claim_token)
    )
    refs = await references(engine)
    async with transaction(engine) as conn:
        rows = (await conn.execute(statement)).all()
    return sorted(
        (ClaimedItem(r.id, r.channel, r.raw, r.meta, r.attempts, as_utc(r.received_at),  # type: ignore[arg-type]
                     r.claim_token, refs)
         for r in rows),
        key=lambda c: c.id,
    )


async def release_lost_claims(engine: AsyncEngine, claims: Sequence[str], *,
                              retry_at: datetime) -> int:
    """Hand back what claims took whose own answer was lost (a commit can go
    through unseen): not counted as an attempt, as `defer_items`. Without this
    their items would wait out their lease. How many there were."""
    if not claims:
        return 0
    async with transaction(engine) as conn:
        result = await conn.execute(update(inbox_items).where(
            inbox_items.c.state == ItemState.PROCESSING,  # the index's prefix: few rows
            inbox_items.c.claim_token.in_(claims),
        ).values(state=ItemState.PENDING, next_attempt_at=retry_at, lease_until=None,
                 claim_token=None,
                 attempts=case((inbox_items.c.attempts > 0, inbox_items.c.attempts - 1),
                               else_=0)))
    return result.rowcount


def _held(items: Sequence[ClaimedItem]) -> Any:
    """The items still under the claims they were taken with (an item without
    a claim: still not done)."""
    by_claim: dict[str | None, list[int]] = {}
    for item in items:
        by_claim.setdefault(item.claim, []).append(item.id)
    return or_(*(and_(inbox_items.c.id.in_(ids), inbox_items.c.claim_token == claim)
                 if claim is not None else
                 and_(inbox_items.c.id.in_(ids), inbox_items.c.state != ItemState.DONE)
                 for claim, ids in by_claim.items()))


async def renew_claims(engine: AsyncEngine, items: Sequence[ClaimedItem], *,
                       lease_seconds: float) -> int:
    """Extend the lease of the items still held under their claims; how many."""
    held = [item for item in items if item.claim is not None]
    if not held:
        return 0
    async with transaction(engine) as conn:
        result = await conn.execute(update(inbox_items).where(
            _held(held), inbox_items.c.state == ItemState.PROCESSING).values(
            lease_until=utcnow() + timedelta(seconds=lease_seconds)))
    return result.rowcount


async def fail_item(engine: AsyncEngine, item_id: int, error: str, *, dead: bool,
                    retry_at: datetime | None = None, claim: str | None = None) -> bool:
    """Record a failed attempt: back to pending for later, or dead-lettered.

    With `claim`, only while the item is still held under it (never over an
    item done since, or taken over by another worker); False if it was not."""
    values: dict[str, Any] = {"last_error": storable_text(error[:MAX_ERROR_CHARS]),
                              "lease_until": None, "claim_token": None}
    if dead:
        values["state"] = ItemState.DEAD
    else:
        values |= {"state": ItemState.PENDING, "next_attempt_at": retry_at or utcnow()}
    condition = (inbox_items.c.id == item_id if claim is None
                 else and_(inbox_items.c.id == item_id, inbox_items.c.claim_token == claim))
    async with transaction(engine) as conn:
        result = await conn.execute(update(inbox_items).where(condition).values(values))
    return bool(result.rowcount)


async def defer_items(engine: AsyncEngine, items: Sequence[ClaimedItem], error: str, *,
                      retry_at: datetime) -> int:
    """Hand items back after a storage fault, for `retry_at`: their claim is not
    counted as an attempt, since the fault was not theirs. Only items still held
    under their claims change (a commit whose answer was lost may have stored
    them: done stays done); how many did."""
    if not items:
        return 0
    async with transaction(engine) as conn:
        result = await conn.execute(update(inbox_items).where(_held(items)).values(
            state=ItemState.PENDING, next_attempt_at=retry_at, lease_until=None,
            claim_token=None, last_error=storable_text(error[:MAX_ERROR_CHARS]),
            attempts=case((inbox_items.c.attempts > 0, inbox_items.c.attempts - 1), else_=0)))
    return result.rowcount


@dataclass(frozen=True, slots=True)
class Holding:
    """What a store found of its items once it had locked them."""

    done: frozenset[int]  # stored before (by an earlier attempt or another worker)
    lost: frozenset[int]  # held by another claim now: not ours to store or mark


async def hold_items(conn: AsyncConnection, items: Sequence[ClaimedItem]) -> Holding:
    """Lock the items' rows in the caller's transaction (in id order, so two
    stores never deadlock) and read whose they are now.

    Two stores of one item (a lease ran out under a slow worker; a retry after a
    commit whose answer was lost) are serialised here: the later one finds the
    item done and adds nothing, instead of meeting the unique constraint on
    `requests.inbox_item_id`. SQLite ignores FOR UPDATE: there an UPDATE that
    changes nothing takes the database's one write lock first."""
    ids = sorted({item.id for item in items})
    if not ids:
        return Holding(frozenset(), frozenset())
    if conn.dialect.name == "sqlite":
        # Any UPDATE takes the write lock, even one that matches nothing; one
        # that matched would rewrite each row whole, raw mail included.
        await conn.execute(update(inbox_items).where(false())
                           .values(lease_until=inbox_items.c.lease_until))
    rows = (await conn.execute(
        select(inbox_items.c.id, inbox_items.c.state, inbox_items.c.claim_token)
        .where(among(conn, inbox_items.c.id, ids)).order_by(inbox_items.c.id)
        .with_for_update())).all()
    found = {row.id: (row.state, row.claim_token) for row in rows}
    done = {item_id for item_id, (state, _) in found.items() if state == ItemState.DONE}
    lost = {item.id for item in items if item.id not in done and item.claim is not None
            and found.get(item.id, (None, None))[1] != item.claim}
    return Holding(frozenset(done), frozenset(lost))


async def requeue_dead(engine: AsyncEngine, item_ids: list[int] | None = None, *,
                       audit: Audit | None = None) -> int:
    """Put dead-lettered items (all, or the given ones) back for processing."""
    condition = inbox_items.c.state == ItemState.DEAD
    if item_ids is not None:
        condition = and_(condition, inbox_items.c.id.in_(item_ids))
    async with transaction(engine) as conn:
        ids = (await conn.execute(update(inbox_items).where(condition).values(
            state=ItemState.PENDING, attempts=0, next_attempt_at=utcnow(), lease_until=None,
            claim_token=None).returning(inbox_items.c.id))).scalars().all()
        if audit is not None and ids:
            await audit_dead_letters(conn, audit, "dead_letter.retry", "inbox", ids)
    return len(ids)


async def dead_items(engine: AsyncEngine) -> list[dict[str, Any]]:
    refs = await references(engine)
    async with connection(engine) as conn:
        rows = (await conn.execute(
            select(inbox_items.c.id, inbox_items.c.channel, inbox_items.c.received_at,
                   inbox_items.c.attempts, inbox_items.c.last_error)
            .where(inbox_items.c.state == ItemState.DEAD).order_by(inbox_items.c.id))).all()
    return [{"id": r.id, "reference": refs.reference_for(r.id), "channel": r.channel,
             "received_at": as_utc(r.received_at), "attempts": r.attempts,
             "last_error": r.last_error} for r in rows]


async def release_claims(engine: AsyncEngine) -> int:
    """Hand back every claimed item at once (SQLite: one process, so all are ours).

    On PostgreSQL other live processes may hold claims; there leases expire.
    """
    async with transaction(engine) as conn:
        result = await conn.execute(
            update(inbox_items).where(inbox_items.c.state == ItemState.PROCESSING)
            .values(state=ItemState.PENDING, lease_until=None, claim_token=None))
    return result.rowcount
