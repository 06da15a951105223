"""What the team leads' dashboard reads beyond the reports (storage/reports.py).

The breaches open now, the first-response times as a histogram, service-level
compliance per queue and priority together, and the key that signs the
dashboard's session cookies. Each is one aggregate statement on either
backend; only the rows shown come back to Python.
"""

from __future__ import annotations

import secrets
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, insert, literal, or_, select, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from domain.lifecycle import DONE
from storage.engine import as_utc, connection, transaction, utcnow
from storage.models import install_keys, requests

SESSION_KEY = "dashboard"
# First-response times are counted in these bins (upper bounds, seconds): a
# quarter hour, an hour, four hours, a working day, a day, three days, longer.
RESPONSE_BINS = (900, 3600, 4 * 3600, 8 * 3600, 86400, 3 * 86400)
_keys: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()


async def session_key(engine: AsyncEngine) -> bytes:
    """This install's key for signing dashboard sessions: made once, kept in
    install_keys, so every worker process and every restart accepts the same
    cookies (deleting the row, then restarting, logs everyone out)."""
    found = _keys.get(engine.sync_engine)
    if found is not None:
        return found
    statement = select(install_keys.c.secret).where(install_keys.c.name == SESSION_KEY)
    async with connection(engine) as conn:
        secret = (await conn.execute(statement)).scalar()
    if secret is None:
        try:
            async with transaction(engine) as conn:
                await conn.execute(insert(install_keys), {
                    "name": SESSION_KEY, "secret": secrets.token_hex(32), "keyed_from": 0,
                    "created_at": utcnow()})
        except IntegrityError:
            pass  # another process made it first: use theirs
        async with connection(engine) as conn:
            secret = (await conn.execute(statement)).scalar_one()
    key = bytes.fromhex(secret)
    _keys[engine.sync_engine] = key
    return key


def _scoped(where: list[Any], queues: Sequence[str] | None) -> list[Any]:
    return where if queues is None else [*where, requests.c.queue.in_(list(queues))]


@dataclass(frozen=True, slots=True, kw_only=True)
class Breach:
    reference: str
    subject: str
    queue: str
    priority: str | None
    status: str
    target: str  # first_response or resolution
    due_at: datetime


async def current_breaches(engine: AsyncEngine, *, now: datetime,
                           queues: Sequence[str] | None, limit: int) -> tuple[list[Breach], int]:
    """Open requests past a service-level target not met, longest overdue first
    (at most `limit`), and how many there are. A paused clock stopped when it
    was paused: such a request is in breach only if it was overdue by then."""
    c = requests.c
    clock = func.coalesce(c.sla_paused_at, literal(now, c.created_at.type))
    fr_over = and_(c.first_response_at.is_(None), c.first_response_due_at < clock)
    res_over = and_(c.resolved_at.is_(None), c.resolution_due_at < clock)
    # One scan of the requests (a CTE), then a row per target overdue; the
    # window counts them all before the limit.
    overdue = (select(c.reference, c.subject, c.queue, c.priority, c.status,
                      case((fr_over, c.first_response_due_at)).label("fr"),
                      case((res_over, c.resolution_due_at)).label("res"))
               .where(*_scoped([c.status.not_in([str(s) for s in DONE]), or_(fr_over, res_over)],
                               queues)).cte("overdue"))
    o = overdue.c
    targets = union_all(*(
        select(o.reference, o.subject, o.queue, o.priority, o.status,
               literal(target).label("target"), due.label("due_at")).where(due.is_not(None))
        for target, due in (("first_response", o.fr), ("resolution", o.res)))
    ).subquery("targets")
    statement = (select(targets, func.count().over().label("total"))
                 .order_by(targets.c.due_at, targets.c.reference, targets.c.target)
                 .limit(limit))
    async with connection(engine) as conn:
        rows = (await conn.execute(statement)).all()
    total = rows[0].total if rows else 0
    return [Breach(reference=r.reference, subject=r.subject, queue=r.queue,
                   priority=r.priority, status=r.status, target=r.target,
                   due_at=as_utc(r.due_at) or r.due_at) for r in rows], int(total)


def _seconds(dialect: str, end: Any, start: Any) -> ColumnElement[float]:
    if dialect == "postgresql":
        return func.date_part("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


async def first_response_histogram(engine: AsyncEngine, *, start: datetime, end: datetime,
                                   queues: Sequence[str] | None) -> list[int]:
    """Requests first answered in [start, end), per bin of wall-clock time
    from creation (RESPONSE_BINS, then one for longer): len(RESPONSE_BINS) + 1."""
    c = requests.c
    # Whole seconds: SQLite's julianday arithmetic makes an hour 3599.9999...
    seconds = func.round(_seconds(engine.dialect.name, c.first_response_at, c.created_at))
    bin_of = case(*((seconds <= bound, i) for i, bound in enumerate(RESPONSE_BINS)),
                  else_=len(RESPONSE_BINS)).label("bin")
    statement = (select(bin_of, func.count()).where(*_scoped(
        [c.first_response_at >= start, c.first_response_at < end], queues)).group_by(bin_of))
    counts = [0] * (len(RESPONSE_BINS) + 1)
    async with connection(engine) as conn:
        for index, count in (await conn.execute(statement)).all():
            counts[int(index)] = int(count)
    return counts


@dataclass(frozen=True, slots=True, kw_only=True)
class Compliance:
    queue: str
    priority: str | None
    first_response_decided: int
    first_response_met: int
    resolution_decided: int
    resolution_met: int


async def compliance_by_queue_and_priority(
        engine: AsyncEngine, *, start: datetime, end: datetime, now: datetime,
        queues: Sequence[str] | None) -> list[Compliance]:
    """Targets decided in [start, end) per queue and priority, and how many
    were met, as storage/reports.py counts them: met by the due time (decided
    then), or missed (decided at the due time, once it passed by min(end, now))."""
    c = requests.c
    as_of = min(end, now)
    sums: list[Any] = []
    for met, due in ((c.first_response_at, c.first_response_due_at),
                     (c.resolved_at, c.resolution_due_at)):
        on_time = and_(met.is_not(None), due.is_not(None), met <= due)
        decided = case((on_time, met), (due < as_of, due))
        in_period = and_(decided >= start, decided < end)
        sums += [func.sum(case((in_period, 1), else_=0)),
                 func.sum(case((and_(in_period, on_time), 1), else_=0))]
    touched = or_(and_(c.first_response_due_at >= start, c.first_response_due_at < end),
                  and_(c.first_response_at >= start, c.first_response_at < end),
                  and_(c.resolution_due_at >= start, c.resolution_due_at < end),
                  and_(c.resolved_at >= start, c.resolved_at < end))
    statement = (select(c.queue, c.priority, *sums)
                 .where(*_scoped([c.created_at < end, touched], queues))
                 .group_by(c.queue, c.priority))
    async with connection(engine) as conn:
        rows = (await conn.execute(statement)).all()
    found = [Compliance(queue=q, priority=p, first_response_decided=int(a or 0),
                        first_response_met=int(b or 0), resolution_decided=int(x or 0),
                        resolution_met=int(y or 0)) for q, p, a, b, x, y in rows]
    # Sorted here: the backends place a NULL priority at opposite ends.
    found.sort(key=lambda f: (f.queue, f.priority is None, f.priority or ""))
    return [f for f in found if f.first_response_decided or f.resolution_decided]
