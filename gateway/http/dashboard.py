"""The team leads' dashboard: /dashboard, server-rendered, no script.

Created against resolved per day, the backlog per queue, service-level
compliance per queue and per queue and priority, the first-response times as
a histogram, and the breaches open now with links to their requests. The
figures come from the reports (storage/reports.py) and a few queries of its
own (storage/dashboard.py); the charts are SVG drawn here (charts.py), each
with its table. Logging in and out, and the session every page checks:
dashboard_login.py. An agent scoped to queues sees those queues only.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from gateway.http import charts, dashboard_login
from gateway.http.auth import may_read
from gateway.http.dashboard_login import FORM_FIELD, logged_out, page, signed_in
from gateway.http.dashboard_session import COOKIE_PATH, session_form_token
from gateway.http.limits import Buckets
from gateway.http.queues import visible_queues
from gateway.http.reports import MEASURE_LIMIT
from gateway.http.shared import ENGINE, RULES
from gateway.reports import measure
from storage.dashboard import (
    RESPONSE_BINS,
    compliance_by_queue_and_priority,
    current_breaches,
    first_response_histogram,
    session_key,
)
from storage.engine import is_sqlite, utcnow
from storage.queries import get_request
from storage.reports import ReportQuery, report
from storage.tokens import TokenInfo

PERIODS = (7, 30, 90)  # days the page may show; ?days= picks one
DEFAULT_DAYS = 30
MAX_BREACHES = 100  # listed; the heading gives how many there are
MAX_REFERENCE = 20
BIN_LABELS = ("≤ 15 min", "15 min–1 h", "1–4 h", "4–8 h", "8–24 h", "1–3 days", "> 3 days")
assert len(BIN_LABELS) == len(RESPONSE_BINS) + 1


def _days(request: web.Request) -> int | None:
    """The period asked for (?days=), or None if the query is not one we take."""
    if set(request.query) - {"days"} or len(request.query.getall("days", [])) > 1:
        return None
    raw = request.query.get("days")
    if raw is None:
        return DEFAULT_DAYS
    return int(raw) if raw in {str(d) for d in PERIODS} else None


def _scope(request: web.Request, token: TokenInfo) -> list[str] | None:
    """The queues the token may see; None: every queue (admin, unscoped agent)."""
    return visible_queues(request, token) if token.role != "admin" and token.queues else None


def _percent(met: int, decided: int) -> float | None:
    return round(100.0 * met / decided, 1) if decided else None


def _overdue(now: datetime, due: datetime) -> str:
    minutes = max(0, int((now - due).total_seconds() // 60))
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


async def dashboard(request: web.Request) -> web.Response:
    found_session = await signed_in(request)
    if found_session is None:
        return await logged_out(request)
    session, token = found_session
    days = _days(request)
    if days is None:
        return page("dashboard_problem.html", 400, title="Unknown period",
                    detail="The period may be " + ", ".join(f"{d}" for d in PERIODS)
                           + " days (?days=).")
    engine, now = request.app[ENGINE], utcnow()
    end = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), now.tzinfo)
    start = end - timedelta(days=days)
    queues = _scope(request, token)
    shown_queues = queues if queues is not None else visible_queues(request, token)

    def query(grouping: str) -> ReportQuery:
        return ReportQuery(start=start, end=end, grouping=grouping, now=now, queues=queues)

    # Business hours measured first (bounded), so both reports count the same.
    await measure(engine, request.app[RULES].sla, limit=MEASURE_LIMIT)
    reads = (report(engine, query("day")), report(engine, query("queue")),
             first_response_histogram(engine, start=start, end=end, queues=queues),
             compliance_by_queue_and_priority(engine, start=start, end=end, now=now,
                                              queues=queues),
             current_breaches(engine, now=now, queues=queues, limit=MAX_BREACHES))
    if is_sqlite(engine):  # one reader at a time is as quick there
        per_day, by_queue, histogram, matrix, (breaches, breach_count) = (
            await reads[0], await reads[1], await reads[2], await reads[3], await reads[4])
    else:  # PostgreSQL: each on a connection of its own, the page as slow as the slowest
        per_day, by_queue, histogram, matrix, (breaches, breach_count) = (
            await asyncio.gather(*reads))
    per_queue = {row["group"]: row for row in by_queue}

    dates = [str(row["group"]) for row in per_day]
    names = sorted(set(shown_queues) | {q for q in per_queue if q is not None})
    queue_rows: list[dict[str, Any]] = [per_queue.get(q, {}) for q in names]
    figures = [
        charts.line_chart(
            "created-resolved", "Requests created and resolved per day",
            f"Requests created and resolved each day (UTC) over the last {days} days.",
            dates, [charts.Series("Created", [r["created"] for r in per_day]),
                    charts.Series("Resolved", [r["resolved"] for r in per_day])],
            first_column="Day", axis_labels=[d[5:] for d in dates]),
        charts.bar_chart(
            "backlog", "Backlog per queue", "Open requests in each queue now.",
            names, [charts.Series("Open", [r.get("backlog", 0) for r in queue_rows])],
            first_column="Queue"),
        charts.bar_chart(
            "sla-queue", "Service-level compliance per queue",
            f"Share of targets met among those decided in the last {days} days, per queue.",
            names, [charts.Series("First response", [r.get("first_response_sla_percent")
                                                     for r in queue_rows]),
                    charts.Series("Resolution", [r.get("resolution_sla_percent")
                                                 for r in queue_rows])],
            unit="%", top=100, first_column="Queue"),
        charts.bar_chart(
            "first-response", "Time to first response",
            f"Requests first answered in the last {days} days, by wall-clock time from "
            "creation to the first response.",
            BIN_LABELS, [charts.Series("Requests", histogram)], first_column="Time"),
    ]
    compliance = [{
        "queue": c.queue, "priority": c.priority or "none",
        "first_response": _percent(c.first_response_met, c.first_response_decided),
        "first_response_of": f"{c.first_response_met} of {c.first_response_decided}",
        "resolution": _percent(c.resolution_met, c.resolution_decided),
        "resolution_of": f"{c.resolution_met} of {c.resolution_decided}",
    } for c in matrix]
    listed = [{"reference": b.reference, "subject": b.subject, "queue": b.queue,
               "priority": b.priority or "none", "status": b.status,
               "target": b.target.replace("_", " "),
               "due": b.due_at.strftime("%Y-%m-%d %H:%M UTC"),
               "overdue": _overdue(now, b.due_at)} for b in breaches]
    key = await session_key(engine)
    return page("dashboard.html", token=token, days=days, periods=PERIODS,
                start=start.date().isoformat(),
                last=(end - timedelta(days=1)).date().isoformat(),
                scoped=queues is not None, queues=shown_queues, charts=figures,
                compliance=compliance, breaches=listed, breach_count=breach_count,
                field=FORM_FIELD, form_token=session_form_token(key, session),
                generated=now.strftime("%Y-%m-%d %H:%M UTC"))


async def request_page(request: web.Request) -> web.Response:
    """One request's summary, for the links in the breaches list."""
    found_session = await signed_in(request)
    if found_session is None:
        return await logged_out(request)
    session, token = found_session
    reference = request.match_info["reference"]
    found = None
    if len(reference) <= MAX_REFERENCE and reference.isascii():
        found = await get_request(request.app[ENGINE], reference.upper(), whole=False)
    if found is None or not may_read(token, found.get("queue")):
        return page("dashboard_problem.html", 404, title="Request not found",
                    detail="There is no request with this reference that you may see.")
    key = await session_key(request.app[ENGINE])
    return page("dashboard_request.html", found=found, token=token, field=FORM_FIELD,
                form_token=session_form_token(key, session))


def add_routes(app: web.Application) -> None:
    app[dashboard_login.LOGIN_ATTEMPTS] = Buckets(dashboard_login.LOGIN_RATE_PER_SECOND,
                                                  dashboard_login.LOGIN_BURST)
    app.router.add_get(COOKIE_PATH, dashboard)
    app.router.add_get(f"{COOKIE_PATH}/login", dashboard_login.login_page)
    app.router.add_post(f"{COOKIE_PATH}/login", dashboard_login.login)
    app.router.add_post(f"{COOKIE_PATH}/logout", dashboard_login.logout)
    app.router.add_get(f"{COOKIE_PATH}/requests/{{reference}}", request_page)
