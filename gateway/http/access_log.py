"""The HTTP access log (`[log] access = true`; off by default): one line per
request on the `intake.access` logger.

The path is the route's template (`/v1/status/{token}`), never the path as
sent: status links carry a secret, and query strings carry search text.
"""

from __future__ import annotations

import logging

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from gateway.http.forwarded import CLIENT

LOGGER = logging.getLogger("intake.access")


def route_of(request: BaseRequest) -> str:
    """The matched route's template; "-" when no route matched (404, 405)."""
    match_info = getattr(request, "match_info", None)
    route = getattr(match_info, "route", None)
    resource = getattr(route, "resource", None)
    return resource.canonical if resource is not None else "-"


class AccessLogger(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        route = route_of(request)
        # The client's address as resolved behind a trusted proxy, else the peer's.
        client = request.get(CLIENT) or request.remote
        self.logger.info("%s %s %s %d %d %.1fms", client or "-", request.method,
                         route, response.status, response.body_length, time * 1000,
                         extra={"event": "http", "method": request.method, "route": route,
                                "status": response.status, "bytes": response.body_length,
                                "ms": round(time * 1000, 1)})
