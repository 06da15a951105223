"""What a customer may do to their request from its status page: mark it
resolved, or reopen it within its queue's reopen window. Each is one
transaction: the change of status (with what follows for the service-level
clock), its timeline entries with the requester as actor, and the events
subscribers are told. Replies from the page go through the inbox and the
pipeline like any other input (gateway/http/status_page.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.lifecycle import (
    DEFAULT_REOPEN_DAYS,
    RESOLVING,
    Actor,
    EventKind,
    PublicEvent,
    Status,
    announces_work,
    reply_starts_new,
)
from storage.engine import as_utc, transaction, utcnow
from storage.models import events, requests
from storage.notify import notify
from storage.outbox import Requester, emit
from storage.sla_store import Clock, status_columns

# Open work the customer may call done. Not a request held in quarantine (it is
# being checked: the customer cannot wave that through), nor a merged one.
CUSTOMER_RESOLVABLE = (Status.NEW, Status.OPEN, Status.WAITING, Status.REOPENED)
BY_CUSTOMER = "customer on the status page"
# A change that meets a concurrent one is tried again on the fresh row this often.
ATTEMPTS = 3


class Done(StrEnum):
    OK = "ok"
    MISSING = "missing"  # no request with this status token
    NOT_NOW = "not now"  # its status does not allow it (already resolved, merged, ...)
    TOO_LATE = "too late"  # finished longer ago than its queue's reopen window


@dataclass(frozen=True, slots=True)
class CustomerAction:
    outcome: Done
    queue: str | None = None  # the request's queue (to wake its agents on a reopening)


def may_resolve(status: Status) -> bool:
    return status in CUSTOMER_RESOLVABLE


def may_reopen(status: Status, *, done_at: datetime | None, now: datetime,
               reopen_days: int) -> Done:
    """OK when a finished request may be reopened now (as a reply would reopen
    it: domain.lifecycle.reply_starts_new), else why not."""
    if status not in RESOLVING:
        return Done.NOT_NOW
    if reply_starts_new(status, automatic=False, done_at=done_at, now=now,
                        reopen_days=reopen_days):
        return Done.TOO_LATE
    return Done.OK


async def _read(conn: AsyncConnection, token: str) -> Any:
    return (await conn.execute(
        select(requests.c.id, requests.c.reference, requests.c.status, requests.c.queue,
               requests.c.version, requests.c.sla_paused_at, requests.c.sla_pauses,
               requests.c.resolved_at, requests.c.requester_email, requests.c.requester_name,
               func.coalesce(requests.c.resolved_at, requests.c.updated_at).label("done_at"))
        .where(requests.c.status_token == token))).first()


async def _change(conn: AsyncConnection, row: Any, to: Status, now: datetime) -> bool:
    """Set the status at the version read (False: it changed meanwhile)."""
    current = Clock(Status(row.status), as_utc(row.sla_paused_at), row.sla_pauses,
                    as_utc(row.resolved_at))
    values: dict[str, Any] = status_columns(current, to, now) | {
        "status": to, "updated_at": now, "version": row.version + 1}
    if to in RESOLVING:  # nobody's work in hand any more (as storage/actions.py)
        values |= {"claimed_by": None, "claim_until": None}
    done = (await conn.execute(
        update(requests).where(requests.c.id == row.id, requests.c.version == row.version)
        .values(values).returning(requests.c.id))).first()
    if done is None:
        return False
    entries = [{"request_id": row.id, "kind": EventKind.STATUS_CHANGED, "actor": Actor.REQUESTER,
                "at": now, "data": {"from": row.status, "to": to, "by": BY_CUSTOMER}}]
    requester = Requester(row.requester_email, row.requester_name)
    await emit(conn, PublicEvent.STATUS_CHANGED, row.id, row.reference,
               {"from": row.status, "status": to, "actor": Actor.REQUESTER},
               requester=requester)
    if to == Status.REOPENED:
        reopened = {"from": row.status, "by": BY_CUSTOMER}
        entries.append({"request_id": row.id, "kind": EventKind.REOPENED,
                        "actor": Actor.REQUESTER, "at": now, "data": reopened})
        await emit(conn, PublicEvent.REOPENED, row.id, row.reference,
                   reopened | {"actor": Actor.REQUESTER}, requester=requester)
    await conn.execute(insert(events), entries)
    if announces_work(to):
        await notify(conn, [row.queue])
    return True


async def resolve(engine: AsyncEngine, token: str) -> CustomerAction:
    """Mark the request resolved, from a status the customer may resolve."""
    return await _act(engine, token, Status.RESOLVED, lambda row, now: (
        Done.OK if may_resolve(Status(row.status)) else Done.NOT_NOW))


async def reopen(engine: AsyncEngine, token: str,
                 reopen_days: Mapping[str, int] | None = None) -> CustomerAction:
    """Reopen a resolved or closed request within its queue's reopen window
    (`reopen_days` by queue; DEFAULT_REOPEN_DAYS for a queue not named)."""
    return await _act(engine, token, Status.REOPENED, lambda row, now: may_reopen(
        Status(row.status), done_at=as_utc(row.done_at), now=now,
        reopen_days=(reopen_days or {}).get(row.queue, DEFAULT_REOPEN_DAYS)))


async def _act(engine: AsyncEngine, token: str, to: Status,
               allowed: Callable[[Any, datetime], Done]) -> CustomerAction:
    """Move the request of `token` to `to` if `allowed` says so of its row now;
    tried again (up to ATTEMPTS) when another change came between the read and
    the write."""
    for _ in range(ATTEMPTS):
        now = utcnow()
        async with transaction(engine) as conn:
            row = await _read(conn, token)
            if row is None:
                return CustomerAction(Done.MISSING)
            verdict = allowed(row, now)
            if verdict != Done.OK:
                return CustomerAction(verdict, row.queue)
            if await _change(conn, row, to, now):
                return CustomerAction(Done.OK, row.queue)
    return CustomerAction(Done.NOT_NOW)
