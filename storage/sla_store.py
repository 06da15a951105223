"""Service-level bookkeeping: checks due, steps taken once, pauses.

The scheduler in every process claims requests whose `next_check_at` has come
with `FOR UPDATE SKIP LOCKED` (and pushes it forward as a lease). A step
(warned, breached, escalated by a rule) is recorded in `sla_marks`, whose
primary key makes the first process to insert it the only one to act on it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage.engine import as_utc, insert_new, transaction, utcnow
from storage.models import events, requests, sla_marks
from storage.notify import notify
from storage.outbox import emit

DONE = ("resolved", "closed", "merged")
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
                    kind: str, changes: dict[str, Any], data: dict[str, Any],
                    notify_event: bool) -> bool:
    """Do one step once: False if some process took it already."""
    now = utcnow()
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
                                            "actor": "scheduler", "at": now,
                                            "data": data | {"mark": mark,
                                                            "changes": changes}})
        if notify_event:
            await emit(conn, "escalated", request_id, reference,
                       data | {"mark": mark, "changes": changes})
    return True


async def set_deadlines(engine: AsyncEngine, request_id: int, values: dict[str, Any]) -> None:
    async with transaction(engine) as conn:
        await conn.execute(update(requests).where(requests.c.id == request_id).values(values))


def status_changed(old: str, new: str, paused_at: datetime | None,
                   pauses: list[Any] | None, now: datetime) -> dict[str, Any]:
    """Columns that follow a status change: the clock pauses while waiting on the
    customer, resolution stops it, reopening counts. The scheduler looks again now."""
    values: dict[str, Any] = {"next_check_at": now}
    if new == "waiting" and paused_at is None:
        values["sla_paused_at"] = now
    elif new != "waiting" and paused_at is not None:
        values["sla_pauses"] = [*(pauses or []), [paused_at.isoformat(), now.isoformat()]]
        values["sla_paused_at"] = None
    if new in ("resolved", "closed"):
        values["resolved_at"] = now
    if new == "reopened" or (old in ("resolved", "closed") and new in ("open", "new")):
        values["resolved_at"] = None
        values["reopened_count"] = requests.c.reopened_count + 1
    return values


async def sla_columns(conn: AsyncConnection, request_id: int) -> tuple[str, datetime | None,
                                                                      list[Any] | None] | None:
    row = (await conn.execute(
        select(requests.c.status, requests.c.sla_paused_at, requests.c.sla_pauses)
        .where(requests.c.id == request_id))).first()
    return None if row is None else (row.status, as_utc(row.sla_paused_at), row.sla_pauses)
