"""Service-level bookkeeping: checks due, steps taken once, pauses.

The scheduler in every process claims requests whose `next_check_at` has come
with `FOR UPDATE SKIP LOCKED` (and pushes it forward as a lease). A step
(warned, breached, escalated by a rule) is recorded in `sla_marks`, whose
primary key makes the first process to insert it the only one to act on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.lifecycle import (
    DONE,
    Actor,
    EventKind,
    PublicEvent,
    Status,
    Transition,
    transition,
)
from storage.engine import as_utc, insert_new, transaction, utcnow
from storage.models import events, requests, sla_marks
from storage.notify import notify
from storage.outbox import emit

_COLUMNS = (requests.c.id, requests.c.reference, requests.c.queue, requests.c.priority,
            requests.c.type, requests.c.status, requests.c.created_at, requests.c.claimed_by,
            requests.c.sla_policy, requests.c.first_response_at, requests.c.resolved_at,
            requests.c.sla_pauses, requests.c.sla_paused_at, requests.c.reopened_count,
            requests.c.escalation_level)
_TIMES = ("created_at", "first_response_at", "resolved_at", "sla_paused_at")


async def claim_checks(engine: AsyncEngine, *, limit: int, hold_seconds: float,
                       now: datetime | None = None) -> list[dict[str, Any]]:
    """Requests due for a look; each is held from other schedulers for `hold_seconds`."""
    now = now or utcnow()
    candidates = (select(requests.c.id)
                  .where(requests.c.next_check_at <= now, requests.c.status.not_in(DONE))
                  .order_by(requests.c.next_check_at).limit(limit)
                  .with_for_update(skip_locked=True))
    async with transaction(engine) as conn:
        rows = (await conn.execute(
            update(requests).where(requests.c.id.in_(candidates.scalar_subquery()))
            .values(next_check_at=now + timedelta(seconds=hold_seconds))
            .returning(*_COLUMNS))).all()
    found = []
    for row in rows:
        item = dict(row._mapping)
        for key in _TIMES:
            item[key] = as_utc(item[key])
        found.append(item)
    return found


async def take_step(engine: AsyncEngine, request_id: int, reference: str, mark: str, *,
                    kind: EventKind, changes: dict[str, Any], data: dict[str, Any],
                    notify_event: bool, now: datetime | None = None) -> bool:
    """Do one step once: False if some process took it already."""
    now = now or utcnow()
    async with transaction(engine) as conn:
        inserted = (await conn.execute(
            insert_new(conn, sla_marks).values(request_id=request_id, mark=mark, at=now)
            .returning(sla_marks.c.mark))).first()
        if inserted is None:
            return False
        if changes:
            row = (await conn.execute(
                update(requests).where(requests.c.id == request_id)
                .values({**changes, "updated_at": now, "version": requests.c.version + 1})
                .returning(requests.c.queue))).first()
            if row is not None and "queue" in changes:
                await notify(conn, [row.queue])
        await conn.execute(insert(events), {"request_id": request_id, "kind": kind,
                                            "actor": Actor.SCHEDULER, "at": now,
                                            "data": data | {"mark": mark,
                                                            "changes": changes}})
        if notify_event:
            await emit(conn, PublicEvent.ESCALATED, request_id, reference,
                       data | {"mark": mark, "changes": changes})
        reached = _target_reached(mark, data)
        if reached is not None:  # whether or not a rule escalated it
            await emit(conn, reached, request_id, reference,
                       {key: data.get(key) for key in ("target", "due_at", "policy")})
    return True


def _target_reached(mark: str, data: dict[str, Any]) -> PublicEvent | None:
    """The event of a target reaching its warning time or deadline (marks
    `<target>:warning`, `<target>:breached`), or None for another step."""
    target = data.get("target")
    for suffix, event in (("warning", PublicEvent.SLA_WARNING),
                          ("breached", PublicEvent.SLA_BREACHED)):
        if target is not None and mark == f"{target}:{suffix}":
            return event
    return None


async def set_deadlines(engine: AsyncEngine, request_id: int, values: dict[str, Any]) -> None:
    async with transaction(engine) as conn:
        await conn.execute(update(requests).where(requests.c.id == request_id).values(values))


@dataclass(frozen=True, slots=True)
class Clock:
    """A request's status and the state of its service-level clock, as stored."""

    status: Status
    paused_at: datetime | None
    pauses: list[Any] | None
    resolved_at: datetime | None = None


def status_columns(clock: Clock, new: Status, now: datetime) -> dict[str, Any]:
    """The columns that follow from a change of status, besides `status` itself
    ({} when it is no change): see domain.lifecycle.transition."""
    change = transition(clock.status, new, paused=clock.paused_at is not None)
    return {} if change is None else _columns(change, clock, now)


def _columns(change: Transition, clock: Clock, now: datetime) -> dict[str, Any]:
    # The scheduler looks again now: a deadline may have moved.
    values: dict[str, Any] = {"next_check_at": now}
    if change.pause_starts:
        values["sla_paused_at"] = now
    elif change.pause_ends and clock.paused_at is not None:
        values["sla_pauses"] = [*(clock.pauses or []),
                                [clock.paused_at.isoformat(), now.isoformat()]]
        values["sla_paused_at"] = None
    if change.resolves:
        values["resolved_at"] = now
    if change.reopens:
        values["resolved_at"] = None
        values["reopened_count"] = requests.c.reopened_count + 1
        if clock.resolved_at is not None:
            # The time it stood resolved is no time worked on it: its clocks
            # resume where they stopped (a pause from resolution to reopening).
            values["sla_pauses"] = [*values.get("sla_pauses", clock.pauses or []),
                                    [clock.resolved_at.isoformat(), now.isoformat()]]
    return values


async def clocks(conn: AsyncConnection, request_ids: Iterable[int]) -> dict[int, Clock]:
    """The clocks of the given requests, in one query (unknown ids are left out)."""
    wanted = set(request_ids)
    if not wanted:
        return {}
    rows = await conn.execute(
        select(requests.c.id, requests.c.status, requests.c.sla_paused_at,
               requests.c.sla_pauses, requests.c.resolved_at)
        .where(requests.c.id.in_(wanted)))
    return {row.id: Clock(Status(row.status), as_utc(row.sla_paused_at), row.sla_pauses,
                          as_utc(row.resolved_at))
            for row in rows}


async def clock(conn: AsyncConnection, request_id: int) -> Clock | None:
    return (await clocks(conn, [request_id])).get(request_id)
