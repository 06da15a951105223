"""Reports: their parameters checked, business-hours times measured, then run.

Shared by `intake report` and `GET /v1/reports/requests`. A parameter is
hostile until checked: a period of bounded length and span, a grouping and a
format from closed sets; anything else is a `BadParameter` naming it.

Business-hours times need the request's calendar (its SLA policy's, else the
built-in 24x7) and its pauses, so they are measured here, in Python, and stored
(storage/reports.py `unmeasured`, `store_measures`): by the service-level
scheduler as requests are answered and resolved, and by a report for whatever
is left, so that the report itself aggregates plain numbers in SQL.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from parsers.timestamps import is_rfc3339, parse_rfc3339
from routing.sla import DEFAULT_CALENDAR, SlaConfig, elapsed_business_time
from storage.reports import (
    GROUPINGS,
    Measure,
    ReportQuery,
    Unmeasured,
    report,
    store_measures,
    unmeasured,
)

FORMATS = ("table", "csv", "json")
DEFAULT_GROUPING = "queue"
MAX_PARAMETER = 40  # the longest RFC 3339 date-time with nanoseconds is 35
# Day buckets for at most a year; other groupings for at most five.
MAX_DAY_SPAN = timedelta(days=366)
MAX_SPAN = timedelta(days=5 * 366)
# ASCII digits only (`\d` would take any script's).
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
MEASURE_BATCH = 500


class BadParameter(ValueError):
    """A report parameter that cannot be taken; `parameter` names it."""

    def __init__(self, parameter: str, detail: str) -> None:
        super().__init__(f"{parameter}: {detail}")
        self.parameter = parameter
        self.detail = detail


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportParameters:
    start: datetime
    end: datetime
    grouping: str
    format: str


def _instant(parameter: str, raw: str, *, end: bool) -> datetime:
    """An RFC 3339 date-time, or a date: the start of that UTC day, or for the
    period's end the end of it (a date names a whole day, both ends included)."""
    if len(raw) > MAX_PARAMETER:
        raise BadParameter(parameter, f"must be at most {MAX_PARAMETER} characters")
    try:
        if _DATE.fullmatch(raw):
            day = date.fromisoformat(raw)
            midnight = datetime.combine(day, time(), tzinfo=UTC)
            return midnight + timedelta(days=1) if end else midnight
        if is_rfc3339(raw):
            return parse_rfc3339(raw)
    except (ValueError, OverflowError):
        raise BadParameter(parameter, "is not a real date or time") from None
    raise BadParameter(parameter, "must be a date (2026-01-31) or an RFC 3339 date-time "
                                  "with an offset (2026-01-31T09:00:00Z)")


def check_parameters(*, start: str | None, end: str | None, grouping: str | None,
                     format: str | None, formats: Sequence[str] = FORMATS,
                     default_format: str = "table") -> ReportParameters:
    """The checked parameters; the first bad one raises BadParameter."""
    if start is None:
        raise BadParameter("from", "is required")
    if end is None:
        raise BadParameter("to", "is required")
    begins = _instant("from", start, end=False)
    ends = _instant("to", end, end=True)
    if not begins < ends:
        raise BadParameter("to", "must be after from")
    group = DEFAULT_GROUPING if grouping is None else grouping
    if group not in GROUPINGS:
        raise BadParameter("group", "must be one of " + ", ".join(GROUPINGS))
    longest = MAX_DAY_SPAN if group == "day" else MAX_SPAN
    if ends - begins > longest:
        raise BadParameter("to", f"the period may be at most {longest.days} days "
                                 f"when grouped by {group}")
    shape = default_format if format is None else format
    if shape not in formats:
        raise BadParameter("format", "must be one of " + ", ".join(formats))
    return ReportParameters(start=begins, end=ends, grouping=group, format=shape)


def _pauses(row: Unmeasured) -> list[tuple[datetime, str]]:
    out: list[tuple[datetime, str]] = []
    for start, end in row.sla_pauses:
        out += [(datetime.fromisoformat(start), "pause"), (datetime.fromisoformat(end),
                                                           "resume")]
    if row.sla_paused_at is not None:
        out.append((row.sla_paused_at, "pause"))
    return out


def measure_one(row: Unmeasured, sla: SlaConfig | None) -> Measure:
    """Business seconds from creation to the first response and to the
    resolution: the calendar's open time, the pauses (waiting on the customer,
    held in quarantine, resolved until reopened) cut out, as the SLA counts."""
    policy = None
    if sla is not None and row.sla_policy:
        policy = next((p for p in sla.policies if p.name == row.sla_policy), None)
    calendar = policy.calendar if policy is not None else DEFAULT_CALENDAR
    events = _pauses(row)

    def seconds(until: datetime | None) -> float | None:
        if until is None:
            return None
        return elapsed_business_time(row.created_at, until, calendar, events).total_seconds()

    return Measure(id=row.id, first_response_seconds=seconds(row.first_response_at),
                   resolution_seconds=seconds(row.resolved_at), resolved_at=row.resolved_at,
                   first_responder=row.first_responder)


async def measure(engine: AsyncEngine, sla: SlaConfig | None, *,
                  limit: int | None = None) -> int:
    """Measure up to `limit` (None: all) requests' pending times; how many."""
    after, done = 0, 0
    while limit is None or done < limit:
        size = MEASURE_BATCH if limit is None else min(MEASURE_BATCH, limit - done)
        rows = await unmeasured(engine, after_id=after, limit=size)
        if not rows:
            break
        await store_measures(engine, [measure_one(row, sla) for row in rows])
        after, done = rows[-1].id, done + len(rows)
    return done


async def run_report(engine: AsyncEngine, sla: SlaConfig | None, query: ReportQuery, *,
                     measure_limit: int | None = None) -> list[dict[str, object]]:
    """Measure what is pending (up to `measure_limit`), then the report's rows."""
    await measure(engine, sla, limit=measure_limit)
    return await report(engine, query)
