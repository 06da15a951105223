"""Agents taking work: claims with leases, queue overviews and listings.

A claim is one statement: UPDATE ... WHERE id IN (SELECT ... ORDER BY
priority, due time FOR UPDATE SKIP LOCKED LIMIT n) RETURNING. Two agents never
get the same request; on SQLite the single writer serialises the same
statement. A lease that runs out makes the request claimable again.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Integer,
    and_,
    bindparam,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.lifecycle import EventKind
from storage.engine import as_utc, connection, transaction, utcnow
from storage.models import (
    FAR_FUTURE,
    IS_WORKABLE,
    WORK_ORDER,
    events,
    messages,
    requests,
    sla_marks,
)

# Sorting and filtering by exactly these expressions lets ix_requests_queue_work_order
# hand a queue's workable requests over in order (see storage/models.py).
_PRIORITY, _DUE, _ = WORK_ORDER


@dataclass(frozen=True, slots=True)
class Claimed:
    reference: str
    queue: str
    subject: str
    priority: str | None
    claim_until: datetime


def _free(now: datetime) -> Any:
    return or_(requests.c.claimed_by.is_(None), requests.c.claim_until < now)


def _claim_statement() -> Any:
    """Built once: claims run often, and building the expression costs more than SQL."""
    candidates = (
        select(requests.c.id)
        .where(requests.c.queue == bindparam("b_queue"), IS_WORKABLE,
               or_(requests.c.claimed_by.is_(None),
                   requests.c.claim_until < bindparam("b_now", type_=requests.c.claim_until.type)))
        .order_by(*WORK_ORDER).limit(bindparam("b_limit", type_=Integer))
        .with_for_update(skip_locked=True)
    )
    return (
        update(requests).where(requests.c.id.in_(candidates.scalar_subquery()))
        .values(claimed_by=bindparam("b_agent"),
                claim_until=bindparam("b_until", type_=requests.c.claim_until.type),
                version=requests.c.version + 1)
        .returning(requests.c.id, requests.c.reference, requests.c.queue, requests.c.subject,
                   requests.c.priority, requests.c.claim_until, requests.c.due_at)
    )


_CLAIM = _claim_statement()
# PostgreSQL: the claim and its timeline event in one statement (one round trip).
_CLAIMED = _CLAIM.cte("claimed")
_CLAIM_AND_LOG = select(_CLAIMED).add_cte(
    insert(events).from_select(
        ["request_id", "kind", "actor", "at", "data"],
        select(_CLAIMED.c.id, literal(EventKind.CLAIMED, events.c.kind.type),
               bindparam("b_agent"),
               bindparam("b_now", type_=events.c.at.type),
               bindparam("event_data", type_=events.c.data.type)),
    ).cte("logged"))


async def claim(engine: AsyncEngine, queue: str, agent: str, *, limit: int,
                lease_seconds: float) -> list[Claimed]:
    now = utcnow()
    until = now + timedelta(seconds=lease_seconds)
    params = {"b_queue": queue, "b_now": now, "b_limit": limit, "b_agent": agent,
              "b_until": until,
              "event_data": {"until": until.isoformat(), "lease_seconds": lease_seconds}}
    async with transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            rows = (await conn.execute(_CLAIM_AND_LOG, params)).all()
        else:
            rows = (await conn.execute(_CLAIM, params)).all()
            if rows:
                await conn.execute(events.insert(), [
                    {"request_id": r.id, "kind": EventKind.CLAIMED, "actor": agent, "at": now,
                     "data": params["event_data"]} for r in rows])
    # RETURNING has no order: give them back in the order they are to be worked.
    rows = sorted(rows, key=lambda r: (r.priority or "P9",
                                       (as_utc(r.due_at) or as_utc(FAR_FUTURE)), r.id))
    return [Claimed(r.reference, r.queue, r.subject, r.priority,
                    as_utc(r.claim_until) or until) for r in rows]


async def renew(engine: AsyncEngine, reference: str, agent: str,
                lease_seconds: float) -> datetime | None:
    """Extend a lease the agent still holds; None if it is not (or no longer) theirs."""
    now = utcnow()
    until = now + timedelta(seconds=lease_seconds)
    async with transaction(engine) as conn:
        row = (await conn.execute(
            update(requests)
            .where(requests.c.reference == reference, requests.c.claimed_by == agent,
                   requests.c.claim_until >= now)
            .values(claim_until=until).returning(requests.c.id))).first()
    return until if row is not None else None


async def release(engine: AsyncEngine, reference: str, agent: str) -> bool:
    now = utcnow()
    async with transaction(engine) as conn:
        row = (await conn.execute(
            update(requests)
            .where(requests.c.reference == reference, requests.c.claimed_by == agent,
                   requests.c.claim_until >= now)
            .values(claimed_by=None, claim_until=None, version=requests.c.version + 1)
            .returning(requests.c.id))).first()
        if row is not None:
            await conn.execute(events.insert(), {"request_id": row.id,
                                                 "kind": EventKind.RELEASED_CLAIM,
                                                 "actor": agent, "at": now, "data": {}})
    return row is not None


async def queue_overview(engine: AsyncEngine, queues: list[str]) -> list[dict[str, Any]]:
    """Per queue: open requests, unclaimed ones, oldest waiting, past due."""
    now = utcnow()
    query = (
        select(requests.c.queue, func.count().label("depth"),
               func.count().filter(_free(now)).label("unclaimed"),
               func.min(requests.c.created_at).filter(_free(now)).label("oldest"),
               func.count().filter(requests.c.due_at < now).label("past_due"))
        .where(IS_WORKABLE, requests.c.queue.in_(queues))
        .group_by(requests.c.queue))
    async with connection(engine) as conn:
        found = {r.queue: r for r in (await conn.execute(query)).all()}
    result = []
    for name in queues:
        row = found.get(name)
        oldest = as_utc(row.oldest) if row is not None and row.oldest else None
        result.append({
            "name": name, "depth": row.depth if row else 0,
            "unclaimed": row.unclaimed if row else 0,
            "oldest_waiting_seconds": round((now - oldest).total_seconds(), 1) if oldest else None,
            "past_due": row.past_due if row else 0,
        })
    return result


# A cursor is ours (encode_cursor) or refused: each part is checked for what the
# query binds it to, so no crafted one reaches the database (an id past 64 bits
# overflowed asyncpg's int8 and answered 500).
MAX_CURSOR_CHARS = 200
_CURSOR_PRIORITY = 8        # requests.priority is String(8); "P9" sorts the unset ones
_CURSOR_DUE = 32            # an ISO 8601 timestamp with microseconds and offset
_MAX_ID = 2**63 - 1         # BIGINT


def encode_cursor(values: tuple[str, str, int]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, datetime, int] | None:
    """The position a cursor names, or None for any string encode_cursor did not make."""
    if not cursor.isascii() or len(cursor) > MAX_CURSOR_CHARS:
        return None
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)),
                         parse_constant=_no_constant)
    except (ValueError, RecursionError):  # binascii.Error and JSON errors are ValueErrors
        return None
    if not (isinstance(raw, list) and len(raw) == 3):
        return None
    priority, due, last_id = raw
    if not (isinstance(priority, str) and 0 < len(priority) <= _CURSOR_PRIORITY
            and priority.isascii() and priority.isprintable()):
        return None
    if not (isinstance(due, str) and len(due) <= _CURSOR_DUE and due.isascii()):
        return None
    if not (type(last_id) is int and 0 <= last_id <= _MAX_ID):
        return None
    try:
        return priority, datetime.fromisoformat(due).replace(tzinfo=None), last_id
    except ValueError:
        return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@dataclass(frozen=True, slots=True)
class ListFilters:
    """What a listing asks for (checked by the gateway); None: no condition."""

    status: str | None = None  # None: the workable ones in a queue, any in a search
    priority: str | None = None
    type: str | None = None
    component: str | None = None
    tag: str | None = None
    requester: str | None = None
    text: str | None = None  # in the subject or any message's text, replies too
    breached: bool | None = None
    due_before: datetime | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    claimed_by: str | None = None  # an actor, or "none" for unclaimed


def _breached(now: datetime) -> Any:
    """A target missed: the scheduler marked a breach, or a deadline passed unmet
    (while the clock runs; a pause pushes the deadlines out when it ends)."""
    marked = select(sla_marks.c.request_id).where(
        sla_marks.c.request_id == requests.c.id, sla_marks.c.mark.like("%:breached")).exists()
    running = requests.c.sla_paused_at.is_(None)
    missed = []
    # Every operand is tested for NULL first: the whole is true or false, never
    # NULL, so `breached=false` (its negation) lists the others.
    for due, met in ((requests.c.first_response_due_at, requests.c.first_response_at),
                     (requests.c.resolution_due_at, requests.c.resolved_at)):
        missed += [and_(due.is_not(None), met.is_(None), running, due < now),
                   and_(due.is_not(None), met.is_not(None), met > due)]
    return or_(marked, *missed)


def _conditions(engine: AsyncEngine, filters: ListFilters, now: datetime, *,
                workable_by_default: bool) -> list[Any]:
    f = filters
    conditions: list[Any] = []
    if f.status:
        conditions.append(requests.c.status == f.status)
    elif workable_by_default:
        conditions.append(IS_WORKABLE)
    for name in ("priority", "type", "component"):
        if getattr(f, name):
            conditions.append(requests.c[name] == getattr(f, name))
    if f.requester:
        conditions.append(requests.c.requester_email == f.requester.lower())
    if f.text:
        # Case-insensitive substring; % and _ in the text are literal.
        needle = f.text.lower()
        in_messages = select(messages.c.id).where(
            messages.c.request_id == requests.c.id,
            or_(func.lower(messages.c.text).contains(needle, autoescape=True),
                func.lower(messages.c.new_text).contains(needle, autoescape=True))).exists()
        conditions.append(or_(func.lower(requests.c.subject).contains(needle, autoescape=True),
                              in_messages))
    if f.tag:
        conditions.append(_has_tag(engine, f.tag))
    if f.breached is not None:
        conditions.append(_breached(now) if f.breached else ~_breached(now))
    if f.due_before is not None:
        conditions.append(requests.c.due_at < f.due_before)
    if f.created_after is not None:
        conditions.append(requests.c.created_at > f.created_after)
    if f.created_before is not None:
        conditions.append(requests.c.created_at < f.created_before)
    if f.claimed_by == "none":
        conditions.append(_free(now))
    elif f.claimed_by:
        conditions.append(and_(requests.c.claimed_by == f.claimed_by,
                               requests.c.claim_until >= now))
    return conditions


async def list_queue(engine: AsyncEngine, queue: str, *, filters: ListFilters,
                     limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a queue (its workable requests unless a status is asked for),
    in priority then due order; the cursor gives the next."""
    return await list_requests(engine, [queue], filters=filters, limit=limit, cursor=cursor,
                               workable_by_default=True)


async def list_requests(engine: AsyncEngine, queues: list[str], *, filters: ListFilters,
                        limit: int, cursor: str | None, workable_by_default: bool = False
                        ) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the requests in `queues` that match, in priority then due order."""
    now = utcnow()
    conditions = [requests.c.queue.in_(queues),
                  *_conditions(engine, filters, now, workable_by_default=workable_by_default)]
    if cursor is not None:
        position = decode_cursor(cursor)
        if position is None:
            raise ValueError("cursor is not one this server gave out")
        # The cursor's due time is UTC (as FAR_FUTURE is), whatever the host's zone.
        conditions.append(tuple_(*WORK_ORDER) > tuple_(
            literal(position[0]), literal(position[1].replace(tzinfo=UTC),
                                          requests.c.due_at.type),
            literal(position[2])))
    query = (select(requests.c.id, requests.c.reference, requests.c.status,
                    requests.c.queue, requests.c.priority, requests.c.type,
                    requests.c.component, requests.c.subject, requests.c.requester_email,
                    requests.c.tags, requests.c.due_at, requests.c.claimed_by,
                    requests.c.claim_until, requests.c.created_at, requests.c.version,
                    _PRIORITY.label("sort_priority"), _DUE.label("sort_due"))
             .where(and_(*conditions)).order_by(*WORK_ORDER)
             .limit(limit + 1))
    async with connection(engine) as conn:
        rows = (await conn.execute(query)).all()
    items = [{
        "reference": r.reference, "status": r.status, "queue": r.queue,
        "priority": r.priority, "type": r.type, "component": r.component,
        "subject": r.subject, "requester": r.requester_email, "tags": r.tags,
        "due_at": as_utc(r.due_at), "created_at": as_utc(r.created_at), "version": r.version,
        "claimed_by": r.claimed_by if r.claim_until and as_utc(r.claim_until) > now else None,
    } for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        due = last.sort_due if isinstance(last.sort_due, datetime) else datetime.fromisoformat(
            str(last.sort_due))
        next_cursor = encode_cursor((last.sort_priority, due.replace(tzinfo=None).isoformat(),
                                     last.id))
    return items, next_cursor


def _has_tag(engine: AsyncEngine, tag: str) -> Any:
    if engine.dialect.name == "postgresql":
        return type_coerce(requests.c.tags, JSONB).contains([tag])
    each = func.json_each(requests.c.tags).table_valued("value")
    return select(each.c.value).where(each.c.value == tag).exists()
