"""Reports from the stored timeline, aggregated in SQL on either backend.

One statement reads the requests a period touches once (a CTE of the columns a
report needs) and aggregates it per group: counts, first-response and
resolution times (median, 90th percentile, mean; wall-clock and business
hours), service-level compliance and the backlog. A second one counts the
timeline's reopenings, breaches and escalations. Only the aggregates come back
to Python, one row per group and measure.

Percentiles are `percentile_cont` (linear interpolation between the two
nearest ranks): PostgreSQL has it; on SQLite the same arithmetic is spelt with
window functions (row_number and count over the group).

Business-hours times are measured per request by the gateway after the moment
(they need the request's calendar and pauses) and stored in columns
(migration 0012); `unmeasured` and `store_measures` are that sweep's reads and
writes.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Float,
    Integer,
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from domain.lifecycle import DONE, EventKind
from storage.engine import as_utc, connection, transaction
from storage.models import COUNTED_EVENTS, UNMEASURED, Timestamp, events, requests

# A request field, or the first responder's token (`agent`), or a time bucket.
FIELD_GROUPINGS = ("queue", "priority", "type", "channel", "component")
TIME_GROUPINGS = ("day", "week")
GROUPINGS = (*FIELD_GROUPINGS, "agent", *TIME_GROUPINGS)

REPORT_WORK_MEM = "128MB"
# Statements of one report run at once on PostgreSQL (per-day/week measures).
REPORT_STATEMENTS = 2
EPOCH = date(1970, 1, 1)
_TIMES = ("count", "median_seconds", "p90_seconds", "mean_seconds")
FIELDS = (
    "created", "resolved", "reopened", "backlog",
    *(f"{target}_{clock}{stat}" for target in ("first_response", "resolution")
      for clock in ("", "business_") for stat in _TIMES),
    "first_response_met", "first_response_missed", "first_response_sla_percent",
    "resolution_met", "resolution_missed", "resolution_sla_percent",
    "breaches", "escalations",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportQuery:
    """A checked report: from `start` (inclusive) to `end` (exclusive), in UTC."""

    start: datetime
    end: datetime
    grouping: str
    # The report's clock: a target not met whose due time has not passed by
    # min(end, now) is still undecided, neither met nor missed.
    now: datetime
    queues: Sequence[str] | None = None  # None: every queue


def _wall_seconds(dialect: str, end: Any, start: Any) -> ColumnElement[float]:
    if dialect == "postgresql":
        # date_part is a double; extract a numeric (slower to compute and sort).
        return func.date_part("epoch", end - start)
    # SQLite keeps timestamps as text; julianday reads them (days, as a double).
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def _bucket(dialect: str, grouping: str, value: Any) -> ColumnElement[Any]:
    """The day or ISO week (from Monday), in UTC, that `value` falls in: on
    PostgreSQL its number since 1970-01-01 (a Thursday, hence the 3 days), an
    integer quicker to work out and to sort than a date; on SQLite its date."""
    if dialect == "postgresql":
        days = func.date_part("epoch", value) / 86400
        return cast(func.floor(days if grouping == "day" else (days + 3) / 7), Integer)
    if grouping == "day":
        return func.date(value)
    return func.date(value, "-6 days", "weekday 1")  # the Monday on or before


def _done_at() -> ColumnElement[datetime]:
    """When a request stopped being open work: resolved, or else (closed at
    once, merged) its last change."""
    finished = requests.c.status.in_([str(s) for s in DONE])
    return func.coalesce(requests.c.resolved_at, case((finished, requests.c.updated_at)))


def _field(grouping: str) -> ColumnElement[Any]:
    """The column a field grouping names; `agent`: who answered first."""
    return requests.c["first_responder" if grouping == "agent" else grouping]


def _columns(query: ReportQuery, dialect: str) -> dict[str, ColumnElement[Any]]:
    """What the measures read of a request, by name: its moments, its times in
    seconds, and when each target was decided (met by its due time: then;
    missed: at the due time, once that passed by min(end, now); else NULL)."""
    c = requests.c
    as_of = min(query.end, query.now)
    columns: dict[str, ColumnElement[Any]] = {
        "created": c.created_at, "fr": c.first_response_at, "res": c.resolved_at,
        "done": _done_at(),
        "fr_wall": _wall_seconds(dialect, c.first_response_at, c.created_at),
        "res_wall": _wall_seconds(dialect, c.resolved_at, c.created_at),
        "fr_business": c.first_response_business_seconds,
        # Measured for an earlier resolution (reopened since): not this one's.
        "res_business": case((c.resolution_measured_for == c.resolved_at,
                              c.resolution_business_seconds)),
    }
    for target, met, due in (("fr", c.first_response_at, c.first_response_due_at),
                             ("res", c.resolved_at, c.resolution_due_at)):
        on_time = and_(met.is_not(None), due.is_not(None), met <= due)
        columns[f"{target}_on_time"] = case((on_time, 1), else_=0)
        columns[f"{target}_decided"] = case((on_time, met), (due < as_of, due))
    if query.grouping in TIME_GROUPINGS:
        for name in ("created", "fr", "res", "done", "fr_decided", "res_decided"):
            columns[f"b_{name}"] = _bucket(dialect, query.grouping, columns[name])
    else:
        key = _field(query.grouping)
        # PostgreSQL: groups compared byte by byte, much quicker to sort.
        columns["k"] = key.collate("C") if dialect == "postgresql" else key
    return columns


def _relevant(query: ReportQuery, columns: dict[str, ColumnElement[Any]]) -> list[Any]:
    """The requests a period touches: created by its end, and not finished
    before it began unless something was answered, resolved or due in it."""
    c, start = requests.c, query.start
    where = [c.created_at < query.end,
             or_(c.created_at >= start, columns["done"].is_(None), columns["done"] >= start,
                 c.first_response_at >= start, c.resolved_at >= start,
                 c.first_response_due_at >= start, c.resolution_due_at >= start)]
    if query.queues is not None:
        where.append(c.queue.in_(list(query.queues)))
    return where


def _in(column: Any, query: ReportQuery) -> ColumnElement[bool]:
    return and_(column >= query.start, column < query.end)


# Every part of the union has these columns: measure, group, count, 8 numbers.
_NUMBERS = 8


def _part(name: str, key: Any, count: Any, *numbers: Any) -> list[Any]:
    padded = [*numbers, *[cast(null(), Float)] * (_NUMBERS - len(numbers))]
    return [literal(name, String).label("m"), key.label("k"), count.label("n"),
            *(cast(v, Float).label(f"v{i}") for i, v in enumerate(padded))]


class _Rows:
    """The requests a period touches, read once (a CTE), and the group of a
    measure placed at one of its moments: the field's value, or the moment's
    day or week."""

    def __init__(self, query: ReportQuery, dialect: str, *, materialized: bool = True) -> None:
        columns = _columns(query, dialect)
        rows = (select(*(value.label(name) for name, value in columns.items()))
                .where(*_relevant(query, columns)).cte("report_rows"))
        if dialect == "postgresql" and materialized:
            # Read once, then aggregated by every measure (not planned into each).
            rows = rows.prefix_with("MATERIALIZED")
        self.c = rows.c
        self.table = rows
        self.timed = query.grouping in TIME_GROUPINGS

    def key(self, at: str) -> Any:
        return self.c[f"b_{at}"] if self.timed else self.c.k


def _times_part(name: str, rows: _Rows, at: str, values: tuple[str, str],
                query: ReportQuery) -> Any:
    """Count, mean, median and 90th percentile of two values (wall-clock and
    business seconds) of the rows whose `at` falls in the period, per group,
    with window functions (SQLite has no percentile_cont)."""
    key = rows.key(at)
    ranked = select(
        key.label("k"),
        *(rows.c[v].label(f"x{i}") for i, v in enumerate(values)),
        *(func.row_number().over(partition_by=key,
                                 order_by=(rows.c[v].is_(None), rows.c[v])).label(f"rank{i}")
          for i, v in enumerate(values)),
        *(func.count(rows.c[v]).over(partition_by=key).label(f"n{i}")
          for i, v in enumerate(values)),
    ).where(_in(rows.c[at], query)).subquery(f"{name}_ranked")
    stats = []
    for i in range(len(values)):
        x, rank, n = ranked.c[f"x{i}"], ranked.c[f"rank{i}"], ranked.c[f"n{i}"]
        stats += [func.count(x), func.avg(x), _percentile(0.5, x, rank, n),
                  _percentile(0.9, x, rank, n)]
    return select(*_part(name, ranked.c.k, stats[0], *stats)).group_by(ranked.c.k)


def _pg_times_part(name: str, rows: _Rows, at: str, values: tuple[str, str],
                   query: ReportQuery) -> Any:
    key = rows.key(at)
    stats: list[Any] = []
    for value in values:
        column = rows.c[value]
        stats += [func.count(column), func.avg(column),
                  func.percentile_cont(0.5).within_group(column),
                  func.percentile_cont(0.9).within_group(column)]
    return select(*_part(name, key, stats[0], *stats)).where(_in(rows.c[at], query)
                                                             ).group_by(key)


def _percentile(p: float, x: Any, rank: Any, n: Any) -> ColumnElement[float]:
    """percentile_cont(p): at position (n - 1) * p of the sorted values (from 0),
    between the values either side in proportion."""
    position = (n - 1) * p
    below = cast(position, Integer)  # floor: the position is never negative
    fraction = position - below
    weighted = func.sum(case((rank == below + 1, x * (1 - fraction)),
                             (rank == below + 2, x * fraction), else_=0.0))
    return case((func.max(n) > 0, weighted))


def _sla_part(name: str, rows: _Rows, target: str, query: ReportQuery) -> Any:
    """Targets decided in the period, and how many of them were met."""
    at = f"{target}_decided"
    key = rows.key(at)
    return (select(*_part(name, key, func.count(), func.sum(rows.c[f"{target}_on_time"])))
            .where(_in(rows.c[at], query)).group_by(key))


def _count_part(name: str, rows: _Rows, at: str, query: ReportQuery) -> Any:
    key = rows.key(at)
    return select(*_part(name, key, func.count())).where(_in(rows.c[at], query)).group_by(key)


def _backlog_part(rows: _Rows, query: ReportQuery, dialect: str) -> Any:
    """Open requests at the end of each bucket: per field group at the end of the
    period; per day or week, those open at the start plus each bucket's created
    less its finished, summed over the buckets (generate_series, or a recursive
    CTE on SQLite, names every bucket, empty ones too)."""
    c = rows.c
    if not rows.timed:
        open_at_end = or_(c.done.is_(None), c.done >= query.end)
        return (select(*_part("backlog", c.k, func.count()))
                .where(c.created < query.end, open_at_end).group_by(c.k))
    unit = query.grouping
    series: Any
    if dialect == "postgresql":
        first = _bucket(dialect, unit, cast(literal(query.start, Timestamp), Timestamp))
        last = _bucket(dialect, unit, cast(literal(query.end - timedelta(microseconds=1),
                                                   Timestamp), Timestamp))
        series = select(func.generate_series(first, last).label("b")).subquery("buckets")
    else:
        step_text = "+1 day" if unit == "day" else "+7 days"
        seed = select(_bucket(dialect, unit, literal(query.start, Timestamp)).label("b")
                      ).cte("buckets", recursive=True)
        after = func.date(seed.c.b, step_text)
        series = seed.union_all(select(after).where(
            func.datetime(after) < func.datetime(literal(query.end, Timestamp))))
    opened = _count_part("opened", rows, "created", query).subquery("opened")
    finished = _count_part("finished", rows, "done", query).subquery("finished")
    at_start = (select(func.count()).select_from(rows.table)
                .where(c.created < query.start, or_(c.done.is_(None), c.done >= query.start))
                ).scalar_subquery()
    change = func.coalesce(opened.c.n, 0) - func.coalesce(finished.c.n, 0)
    backlog = at_start + func.sum(change).over(order_by=series.c.b)
    return (select(*_part("backlog", series.c.b, backlog))
            .select_from(series.outerjoin(opened, opened.c.k == series.c.b)
                         .outerjoin(finished, finished.c.k == series.c.b)))


def _measures(query: ReportQuery, dialect: str) -> Any:
    """Every measure per group, as rows (measure, group, count, numbers...)."""
    if dialect == "postgresql" and query.grouping not in TIME_GROUPINGS:
        return _one_pass(query)
    return union_all(*_time_parts(query, dialect, _Rows(query, dialect)))


def _time_parts(query: ReportQuery, dialect: str, rows: _Rows) -> list[Any]:
    """The measures of a time grouping, one statement each: every measure
    groups by the bucket of its own moment (created, answered, resolved...)."""
    return [*_time_measures(query, dialect, rows), _backlog_part(rows, query, dialect)]


def _time_measures(query: ReportQuery, dialect: str, rows: _Rows) -> list[Any]:
    times = _pg_times_part if dialect == "postgresql" else _times_part
    return [
        _count_part("created", rows, "created", query),
        _count_part("resolved", rows, "res", query),
        times("first_response", rows, "fr", ("fr_wall", "fr_business"), query),
        times("resolution", rows, "res", ("res_wall", "res_business"), query),
        _sla_part("first_response_sla", rows, "fr", query),
        _sla_part("resolution_sla", rows, "res", query),
    ]


def _pg_backlog_parts(query: ReportQuery, rows: _Rows) -> list[Any]:
    """PostgreSQL, per day or week: what the backlog is summed from (see
    `_pg_backlog`): requests finished per bucket, and those open at the start."""
    c = rows.c
    at_start = (select(*_part("open_at_start", literal(0, Integer), func.count()))
                .where(c.created < query.start,
                       or_(c.done.is_(None), c.done >= query.start)))
    return [_count_part("finished", rows, "done", query), at_start]


def _pg_bucket_number(grouping: str, moment: datetime) -> int:
    """`_bucket` on PostgreSQL, worked out here: days (or weeks from Monday) since 1970."""
    days = math.floor(moment.timestamp() / 86400)
    return days if grouping == "day" else math.floor((days + 3) / 7)


def _pg_backlog(query: ReportQuery, rows: list[Any]) -> list[Any]:
    """The backlog at the end of each bucket, every bucket of the period (empty
    ones too): those open at its start, plus each bucket's created less its
    finished, summed in order. The same figures as `_backlog_part` computes in
    SQL, from counts the report reads anyway (created) or cheaply (finished)."""
    change: dict[int, int] = {}
    open_at_start = 0
    for m, k, n, *_ in rows:
        if m == "created":
            change[k] = change.get(k, 0) + int(n)
        elif m == "finished":
            change[k] = change.get(k, 0) - int(n)
        elif m == "open_at_start":
            open_at_start = int(n)
    first = _pg_bucket_number(query.grouping, query.start)
    last = _pg_bucket_number(query.grouping, query.end - timedelta(microseconds=1))
    backlog, running = [], open_at_start
    for bucket in range(first, last + 1):
        running += change.get(bucket, 0)
        backlog.append(("backlog", bucket, running))
    return [row for row in rows if row[0] not in ("finished", "open_at_start")] + backlog


# The columns of the one pass, in the order `_unpack` reads them.
_ONE_PASS = ("created", "resolved", "backlog", "first_response", "resolution",
             "first_response_sla", "resolution_sla")


def _one_pass(query: ReportQuery) -> Any:
    """PostgreSQL, grouped by a field: every measure shares the group, so one
    scan and one sort compute them all. Each request's values are worked out
    once in a subquery (OFFSET 0 keeps the planner from folding it back into
    every aggregate, a third more CPU), each NULL outside its measure's period
    (percentile_cont, count and avg pass over NULLs)."""
    columns = _columns(query, "postgresql")
    c = requests.c
    done = columns["done"]
    as_of = min(query.end, query.now)

    def within(at: Any) -> ColumnElement[bool]:
        return _in(at, query)

    values: dict[str, Any] = {
        "k": columns["k"],
        "created": within(c.created_at), "resolved": within(c.resolved_at),
        "open_at_end": or_(done.is_(None), done >= query.end),
        "fr_wall": case((within(c.first_response_at), columns["fr_wall"])),
        "fr_business": case((within(c.first_response_at), columns["fr_business"])),
        "res_wall": case((within(c.resolved_at), columns["res_wall"])),
        "res_business": case((within(c.resolved_at), columns["res_business"])),
    }
    for target, met, due in (("fr", c.first_response_at, c.first_response_due_at),
                             ("res", c.resolved_at, c.resolution_due_at)):
        # 1: met in the period; 0: missed in it (due then, and passed); else NULL.
        values[f"{target}_met"] = case((met <= due, case((within(met), 1))),
                                       (and_(due < as_of, within(due)), 0))
    per_request = (select(*(v.label(name) for name, v in values.items()))
                   .where(*_relevant(query, columns)).offset(0).subquery("per_request"))
    r = per_request.c
    aggregates: list[Any] = [func.count().filter(r.created), func.count().filter(r.resolved),
                             func.count().filter(r.open_at_end)]
    for value in ("fr_wall", "fr_business", "res_wall", "res_business"):
        aggregates += [func.count(r[value]), func.avg(r[value]),
                       func.percentile_cont(0.5).within_group(r[value]),
                       func.percentile_cont(0.9).within_group(r[value])]
    for target in ("fr", "res"):
        aggregates += [func.count(r[f"{target}_met"]), func.sum(r[f"{target}_met"])]
    return select(r.k, *aggregates).group_by(r.k)


def _unpack(row: Any) -> list[tuple[Any, ...]]:
    """A row of the one pass as the union's rows (measure, group, count, numbers)."""
    k, created, resolved, backlog, *rest = row
    fr, res, (fr_n, fr_met, res_n, res_met) = rest[0:8], rest[8:16], rest[16:20]
    return [("created", k, created), ("resolved", k, resolved), ("backlog", k, backlog),
            ("first_response", k, fr[0], *fr), ("resolution", k, res[0], *res),
            ("first_response_sla", k, fr_n, fr_met), ("resolution_sla", k, res_n, res_met)]


def _events(query: ReportQuery, dialect: str) -> Any:
    """Reopenings, breaches and escalations on the timeline in the period."""
    kind = events.c.kind
    source = events.join(requests, requests.c.id == events.c.request_id)
    key: Any
    if query.grouping in TIME_GROUPINGS:
        key = _bucket(dialect, query.grouping, events.c.at)
    else:
        key = _field(query.grouping)
    # Literal, as the partial index ix_events_counted says it: SQLite uses a
    # partial index only for a statement whose own terms imply its WHERE.
    counted = kind.in_(bindparam("counted", list(COUNTED_EVENTS), expanding=True,
                                 literal_execute=True))
    statement = (select(key.label("k"),
                        *(func.sum(case((kind == name, 1), else_=0)).label(name)
                          for name in COUNTED_EVENTS))
                 .select_from(source).where(counted, _in(events.c.at, query)).group_by(key))
    if query.queues is not None:
        statement = statement.where(requests.c.queue.in_(list(query.queues)))
    return statement


def _group(value: Any, grouping: str) -> str | None:
    """A group as reported: a bucket as the date it starts."""
    if value is None:
        return None
    if isinstance(value, int) and grouping in TIME_GROUPINGS:  # PostgreSQL's number
        days = value if grouping == "day" else value * 7 - 3
        return (EPOCH + timedelta(days=days)).isoformat()
    return str(value)


def _seconds(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


def _percent(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


async def _pg_rows(engine: AsyncEngine, statement: Any) -> list[Any]:
    async with transaction(engine) as conn:
        # The percentiles sort each group's times: in memory, not in files
        # (the default 4 MB spilled at 100k requests; 1M take about 60 MB).
        await conn.execute(text(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'"))
        return list((await conn.execute(statement)).all())


async def _measured(engine: AsyncEngine, query: ReportQuery) -> list[Any]:
    dialect = engine.dialect.name
    if dialect != "postgresql":
        async with transaction(engine) as conn:
            return list((await conn.execute(_measures(query, dialect))).all())
    if query.grouping not in TIME_GROUPINGS:
        return [part for row in await _pg_rows(engine, _one_pass(query))
                for part in _unpack(row)]
    # Per day or week each measure has buckets of its own: its own statement
    # reading the requests (planned as one, not a materialised CTE read seven
    # times), REPORT_STATEMENTS at once on connections of their own.
    rows = _Rows(query, dialect, materialized=False)
    turns = asyncio.Semaphore(REPORT_STATEMENTS)

    async def part(statement: Any) -> list[Any]:
        async with turns:
            return await _pg_rows(engine, statement)

    statements = [*_time_measures(query, dialect, rows), *_pg_backlog_parts(query, rows)]
    parts = await asyncio.gather(*(part(s) for s in statements))
    return _pg_backlog(query, [row for found in parts for row in found])


async def _counted(engine: AsyncEngine, query: ReportQuery) -> list[Any]:
    async with connection(engine) as conn:
        return list((await conn.execute(_events(query, engine.dialect.name))).all())


async def report(engine: AsyncEngine, query: ReportQuery) -> list[dict[str, Any]]:
    """One row per group (or per bucket, each one in the period) with FIELDS."""
    dialect = engine.dialect.name
    if dialect == "postgresql":
        # Two statements on two connections at once: the timeline's counts
        # take no longer than the requests' measures, so they come for free.
        measured, counted = await asyncio.gather(_measured(engine, query),
                                                 _counted(engine, query))
    else:
        measured = await _measured(engine, query)
        counted = await _counted(engine, query)
    groups: dict[str | None, dict[str, Any]] = {}

    def row_of(value: Any) -> dict[str, Any]:
        key = _group(value, query.grouping)
        if key not in groups:
            groups[key] = dict.fromkeys(FIELDS, 0) | {
                f: None for f in FIELDS if f.endswith(("seconds", "percent"))}
        return groups[key]

    for m, k, n, *v in measured:
        row = row_of(k)
        if m in ("created", "resolved", "backlog"):
            row[m] = int(n or 0)
        elif m in ("first_response", "resolution"):
            for clock, (count, mean, median, p90) in (("", v[0:4]), ("business_", v[4:8])):
                prefix = f"{m}_{clock}"
                row[prefix + "count"] = int(count or 0)
                row[prefix + "mean_seconds"] = _seconds(mean)
                row[prefix + "median_seconds"] = _seconds(median)
                row[prefix + "p90_seconds"] = _seconds(p90)
        else:
            target = m.removesuffix("_sla")
            met = int(v[0] or 0)
            row[f"{target}_met"], row[f"{target}_missed"] = met, int(n) - met
            row[f"{target}_sla_percent"] = _percent(met, int(n))
    for k, reopened, breached, escalated in counted:
        row = row_of(k)
        row["reopened"], row["breaches"], row["escalations"] = (
            int(reopened or 0), int(breached or 0), int(escalated or 0))
    ordered = sorted(groups.items(), key=lambda item: (item[0] is None, item[0] or ""))
    return [{"group": key} | values for key, values in ordered]


# --- The business-hours sweep --------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Unmeasured:
    """A request whose first response or resolution is yet to be measured."""

    id: int
    created_at: datetime
    sla_policy: str | None
    sla_pauses: list[Any]
    sla_paused_at: datetime | None
    first_response_at: datetime | None  # set: measure it
    resolved_at: datetime | None  # set: measure it
    first_responder: str | None = None  # the actor of the first reply


@dataclass(frozen=True, slots=True, kw_only=True)
class Measure:
    id: int
    first_response_seconds: float | None = None
    resolution_seconds: float | None = None
    resolved_at: datetime | None = None  # the resolution measured
    first_responder: str | None = None


async def unmeasured(engine: AsyncEngine, *, after_id: int, limit: int) -> list[Unmeasured]:
    """The next `limit` requests past `after_id` with a time to measure (through
    the partial index ix_requests_unmeasured: as quick with none as with many)."""
    c = requests.c
    async with connection(engine) as conn:
        rows = (await conn.execute(
            select(c.id, c.created_at, c.sla_policy, c.sla_pauses, c.sla_paused_at,
                   c.first_response_at, c.first_response_business_seconds, c.resolved_at,
                   c.resolution_measured_for)
            .where(UNMEASURED, c.id > after_id).order_by(c.id).limit(limit))).all()
        answered = [row.id for row in rows if row.first_response_business_seconds is None
                    and row.first_response_at is not None]
        replies = (await conn.execute(
            select(events.c.request_id, events.c.actor)
            .where(events.c.kind == str(EventKind.REPLIED), events.c.request_id.in_(answered))
            .order_by(events.c.id.desc()))).all() if answered else []
    # Latest first, so the first reply's actor is the one left.
    responders = {request_id: actor for request_id, actor in replies}
    found = []
    for row in rows:
        resolved_at = as_utc(row.resolved_at)
        stale = resolved_at is not None and as_utc(row.resolution_measured_for) != resolved_at
        found.append(Unmeasured(
            id=row.id, created_at=as_utc(row.created_at) or row.created_at,
            sla_policy=row.sla_policy, sla_pauses=list(row.sla_pauses or []),
            sla_paused_at=as_utc(row.sla_paused_at),
            first_response_at=(as_utc(row.first_response_at)
                               if row.first_response_business_seconds is None else None),
            resolved_at=resolved_at if stale else None,
            first_responder=responders.get(row.id)))
    return found


async def store_measures(engine: AsyncEngine, measures: Sequence[Measure]) -> None:
    """Store what was measured; a resolution only while the request is still
    resolved at the moment measured (else the next sweep measures it again)."""
    c = requests.c
    async with transaction(engine) as conn:
        for item in measures:
            if item.first_response_seconds is not None:
                await conn.execute(update(requests).where(c.id == item.id).values(
                    first_response_business_seconds=item.first_response_seconds,
                    first_responder=item.first_responder))
            if item.resolution_seconds is not None and item.resolved_at is not None:
                await conn.execute(
                    update(requests).where(c.id == item.id, c.resolved_at == item.resolved_at)
                    .values(resolution_business_seconds=item.resolution_seconds,
                            resolution_measured_for=item.resolved_at))
