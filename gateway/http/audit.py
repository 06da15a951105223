"""The audit trail over HTTP: who acts from where (`audited`), handed to the
storage function that records the action in its own transaction, and the
admins' read-only listing. There is no route that changes or deletes an event
(PUT, PATCH, DELETE answer 405); the database refuses it anyway."""

from __future__ import annotations

from aiohttp import web

from gateway.audit_query import PARAMETERS, BadParameter, parse_query
from gateway.http import listing
from gateway.http.auth import ADMINS, actor, require_role
from gateway.http.problems import bad_parameter
from gateway.http.shared import ENGINE, json_response
from storage.audit import Audit, list_events
from storage.tokens import TokenInfo


def audited(request: web.Request, token: TokenInfo) -> Audit:
    """The token's actor (`agent:<id>` or `token:<id>`) and the client's address
    (request.remote: the X-Forwarded-For client behind a trusted proxy)."""
    return Audit(actor(token), request.remote)


async def list_audit(request: web.Request) -> web.Response:
    """Audit events, newest first, filtered, paged by an opaque cursor (admin)."""
    await require_role(request, ADMINS)
    values = listing.check_query(request.query, PARAMETERS)
    try:
        query = parse_query(values)
    except BadParameter as exc:
        raise bad_parameter(exc.parameter, exc.detail, str(exc)) from None
    items, cursor = await list_events(request.app[ENGINE], query.filters, limit=query.limit,
                                      after=query.after)
    return json_response({"items": items, "next_cursor": cursor},
                         headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/admin/audit", list_audit)
