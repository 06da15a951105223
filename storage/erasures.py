"""Erasure tasks: asked for, claimed under a lease, worked in steps, finished.

A task is a row of `erasures` (migration 0015). Asking twice for one person
while the first is unfinished returns the first. Any process may work a task
whose lease has run out (claimed with FOR UPDATE SKIP LOCKED, as other claims
are), so a task whose process died is resumed by the next one; each step
(storage/erasing.py) commits its work with the task's new position, under the
claim's token. Once done, `terms` (the address and names looked for) is
cleared: what stays is the proof (keyed hash, who, when, counts, references).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.redaction import Terms
from storage.audit import Audit
from storage.engine import as_utc, connection, transaction, utcnow
from storage.install_key import REFERENCES, references
from storage.models import erasures, inbox_items, install_keys

PENDING, RUNNING, DONE = "pending", "running", "done"
FIRST_PHASE = "names"
# Domain separation: the reference key is not used as is for another purpose.
_HASH_LABEL = b"intake erasure: requester address"


@dataclass(frozen=True, slots=True)
class Task:
    """A claimed task, as a step needs it."""

    id: int
    token: str
    terms: Terms
    phase: str
    cursor: int
    inbox_upto: int
    counts: dict[str, int] = field(default_factory=dict)
    references: tuple[str, ...] = ()


async def address_hash(engine: AsyncEngine, address: str) -> str:
    """The keyed hash (HMAC-SHA256) of the lower-cased address: the same person
    gives the same hash on this install, and nothing outside it can test a guess."""
    await references(engine)  # makes the install key should it be missing
    async with connection(engine) as conn:
        secret = (await conn.execute(select(install_keys.c.secret)
                                     .where(install_keys.c.name == REFERENCES))).scalar_one()
    key = hmac.new(bytes.fromhex(secret), _HASH_LABEL, hashlib.sha256).digest()
    return hmac.new(key, address.strip().lower().encode(), hashlib.sha256).hexdigest()


def public(row: Any) -> dict[str, Any]:
    """What an erasure shows: never the address or names."""
    return {"id": row.id, "state": row.state, "phase": row.phase,
            "address_hash": row.address_hash, "requested_by": row.requested_by,
            "requested_at": as_utc(row.requested_at), "finished_at": as_utc(row.finished_at),
            "counts": dict(row.counts or {}), "references": list(row.references or [])}


_PUBLIC = (erasures.c.id, erasures.c.state, erasures.c.phase, erasures.c.address_hash,
           erasures.c.requested_by, erasures.c.requested_at, erasures.c.finished_at,
           erasures.c.counts, erasures.c.references)


async def start(engine: AsyncEngine, address: str, *, audit: Audit
                ) -> tuple[dict[str, Any], bool]:
    """The erasure of `address`: the unfinished one for it, or a new one (True)."""
    digest = await address_hash(engine, address)
    async with transaction(engine) as conn:
        found = (await conn.execute(select(*_PUBLIC).where(
            erasures.c.address_hash == digest, erasures.c.state != DONE)
            .order_by(erasures.c.id).limit(1))).first()
        if found is not None:
            return public(found), False
        upto = (await conn.execute(select(func.max(inbox_items.c.id)))).scalar() or 0
        row = (await conn.execute(insert(erasures).returning(*_PUBLIC), {
            "address_hash": digest, "terms": Terms.of(address).to_json(), "state": PENDING,
            "phase": FIRST_PHASE, "cursor": 0, "inbox_upto": upto,
            "requested_by": audit.actor, "requested_at": utcnow(), "counts": {},
            "references": []})).one()
        await audit.action(conn, "erasure.start", f"erasure:{row.id}",
                           {"address_hash": digest})
    return public(row), True


async def view(engine: AsyncEngine, erasure_id: int) -> dict[str, Any] | None:
    async with connection(engine) as conn:
        row = (await conn.execute(select(*_PUBLIC).where(erasures.c.id == erasure_id))).first()
    return None if row is None else public(row)


async def any_open(engine: AsyncEngine) -> bool:
    """Whether any erasure is unfinished: a read, so that a scheduler pass with
    nothing to do takes no write turn."""
    async with connection(engine) as conn:
        return (await conn.execute(select(erasures.c.id).where(erasures.c.state != DONE)
                                   .limit(1))).first() is not None


async def claim(engine: AsyncEngine, *, lease_seconds: float, only: int | None = None,
                now: datetime | None = None) -> Task | None:
    """An unfinished task no live lease holds (`only`: that one), held for
    `lease_seconds` under a fresh token; None when there is none free."""
    now = now or utcnow()
    free = select(erasures.c.id).where(
        erasures.c.state != DONE,
        or_(erasures.c.lease_until.is_(None), erasures.c.lease_until < now))
    if only is not None:
        free = free.where(erasures.c.id == only)
    free = free.order_by(erasures.c.id).limit(1).with_for_update(skip_locked=True)
    token = secrets.token_hex(16)
    async with transaction(engine) as conn:
        row = (await conn.execute(
            update(erasures).where(erasures.c.id == free.scalar_subquery())
            .values(state=RUNNING, claim_token=token,
                    lease_until=now + timedelta(seconds=lease_seconds))
            .returning(erasures.c.id, erasures.c.terms, erasures.c.phase, erasures.c.cursor,
                       erasures.c.inbox_upto, erasures.c.counts, erasures.c.references))
               ).first()
    if row is None:
        return None
    return Task(id=row.id, token=token, terms=Terms.from_json(row.terms), phase=row.phase,
                cursor=row.cursor, inbox_upto=row.inbox_upto, counts=dict(row.counts or {}),
                references=tuple(row.references or ()))


async def held(conn: AsyncConnection, task: Task) -> bool:
    """Whether `task`'s claim still holds it (its row locked for the step on
    PostgreSQL: a process taking it over waits for the step to commit)."""
    row = (await conn.execute(
        select(erasures.c.id).where(erasures.c.id == task.id,
                                    erasures.c.claim_token == task.token)
        .with_for_update())).first()
    return row is not None


async def advance(conn: AsyncConnection, task: Task, *, lease_seconds: float,
                  finished: bool, audit: Audit | None) -> None:
    """Record the step's outcome (`task` as it is now) in the step's transaction;
    when `finished`, the terms go and the proof stays."""
    now = utcnow()
    values: dict[str, Any] = {"phase": task.phase, "cursor": task.cursor,
                              "counts": task.counts, "references": list(task.references)}
    if finished:
        values |= {"state": DONE, "terms": None, "finished_at": now, "lease_until": None,
                   "claim_token": None}
    else:
        values |= {"terms": task.terms.to_json(),
                   "lease_until": now + timedelta(seconds=lease_seconds)}
    await conn.execute(update(erasures).where(erasures.c.id == task.id,
                                              erasures.c.claim_token == task.token)
                       .values(**values))
    if finished and audit is not None:
        await audit.action(conn, "erasure.finish", f"erasure:{task.id}",
                           {"counts": task.counts, "requests": len(task.references)})


async def release(engine: AsyncEngine, task: Task) -> None:
    """Give a claimed task back at once (its worker stops before it is done)."""
    async with transaction(engine) as conn:
        await conn.execute(update(erasures).where(erasures.c.id == task.id,
                                                  erasures.c.claim_token == task.token)
                           .values(lease_until=None, claim_token=None))
