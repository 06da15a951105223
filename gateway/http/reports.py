"""GET /v1/reports/requests: the desk's figures for a period, per group.

Admins and agents: an agent scoped to queues gets the figures of those queues
only (an admin or an unscoped agent, every queue). Every parameter is checked
(gateway/reports.py); an unknown one, one given twice or a value it cannot
take is a 400 naming it.
"""

from __future__ import annotations

from aiohttp import web

from gateway.http import listing
from gateway.http.audit import audited
from gateway.http.auth import STAFF, require_role
from gateway.http.problems import bad_parameter
from gateway.http.queues import visible_queues
from gateway.http.shared import ENGINE, RULES, json_response
from gateway.report_output import as_csv, as_document
from gateway.reports import BadParameter, check_parameters, run_report
from storage import audit
from storage.engine import utcnow
from storage.reports import ReportQuery

PARAMETERS = ("from", "to", "group", "format")
FORMATS = ("json", "csv")
# Requests measured (business hours) before a report at most; the scheduler
# measures the rest as they happen, so this bounds the wait after a backlog.
MEASURE_LIMIT = 5_000


async def request_report(request: web.Request) -> web.Response:
    token = await require_role(request, STAFF)
    asked = listing.check_query(request.query, PARAMETERS)
    try:
        checked = check_parameters(start=asked.get("from"), end=asked.get("to"),
                                   grouping=asked.get("group"), format=asked.get("format"),
                                   formats=FORMATS, default_format="json")
    except BadParameter as exc:
        raise bad_parameter(exc.parameter, exc.detail, str(exc)) from None
    scoped = token.role != "admin" and bool(token.queues)
    query = ReportQuery(start=checked.start, end=checked.end, grouping=checked.grouping,
                        now=utcnow(),
                        queues=visible_queues(request, token) if scoped else None)
    rows = await run_report(request.app[ENGINE], request.app[RULES].sla, query,
                            measure_limit=MEASURE_LIMIT)
    # Audited before it is sent: a report that cannot be recorded is not given out.
    by = audited(request, token)
    await audit.record(request.app[ENGINE], actor=by.actor, action="report.download",
                       target="requests", client=by.client, data={
                           "from": checked.start, "to": checked.end,
                           "group": checked.grouping, "format": checked.format,
                           "queues": query.queues})
    if checked.format == "csv":
        return web.Response(text=as_csv(rows), content_type="text/csv", charset="utf-8")
    return json_response(as_document(rows, start=checked.start, end=checked.end,
                                     grouping=checked.grouping))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/reports/requests", request_report)
