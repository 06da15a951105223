"""The request a path names, as its caller may see it.

Out of scope looks exactly like unknown (404): no leak of what exists. A
request still being processed (`received`) is shown to admins only, and
cannot be changed yet (409 with Retry-After).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from domain.lifecycle import Status
from gateway.http.auth import STAFF, ensure_role, may_read, require_token
from gateway.http.problems import Problem
from gateway.http.shared import ENGINE
from storage import queries
from storage.tokens import TokenInfo


def not_found() -> Problem:
    return Problem(404, "no request with this reference")


async def readable(request: web.Request, *, whole: bool = False
                   ) -> tuple[TokenInfo, dict[str, Any]]:
    """The caller's token and the request it names.

    Only the request's own fields unless `whole` (messages, timeline) is asked for.
    """
    token = await require_token(request)
    found = await queries.get_request(request.app[ENGINE], request.match_info["reference"],
                                      whole=whole)
    if found is None or found.get("status") == Status.RECEIVED and token.role != "admin" or (
            not may_read(token, found.get("queue"))):
        raise not_found()
    return token, found


async def to_change(request: web.Request, *, whole: bool = False
                    ) -> tuple[TokenInfo, dict[str, Any]]:
    """As `readable`, for a request that is processed (a request, not an inbox item)."""
    token, found = await readable(request, whole=whole)
    if found.get("status") == Status.RECEIVED:
        raise Problem(409, "this input is still being processed; try again shortly",
                      headers={"Retry-After": "1"})
    return token, found


async def acting(request: web.Request, *, whole: bool = False
                 ) -> tuple[TokenInfo, dict[str, Any]]:
    """As `to_change`, for an agent's or admin's action on it."""
    token, found = await to_change(request, whole=whole)
    return ensure_role(token, STAFF), found
