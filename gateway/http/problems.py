"""Problem documents (RFC 9457): the exception handlers raise, and the one
middleware that turns every error into a document.

A handler returns only its happy answer; anything else is raised as a
`Problem` and rendered here once. A `GatewayError` that is `temporary` (the
database is unwell) answers 503 with Retry-After; a permanent one is about
the input (`PERMANENT`: 422 for what the database refuses to store, 409 for a
clash with what is stored, 422 for any other), except a `ConfigError`, which
is ours; anything else is a bug of ours: 500, logged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from domain.errors import ConfigError, Conflict, GatewayError
from gateway.http.shared import json_response
from parsers.api_request import FieldProblem
from storage.errors import Unstorable

log = logging.getLogger("intake.http")

PROBLEM = "application/problem+json"
RETRY_AFTER_SECONDS = 5
# RFC 9110's names (Python 3.11's HTTPStatus still has the older 413 and 422 ones).
TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
          409: "Conflict", 412: "Precondition Failed", 413: "Content Too Large",
          415: "Unsupported Media Type", 422: "Unprocessable Content",
          428: "Precondition Required", 429: "Too Many Requests",
          500: "Internal Server Error", 503: "Service Unavailable"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# A permanent GatewayError that is not a Problem: the status and detail its
# class answers (the first that matches); the same input again would fail
# again. The error's own text (a database message) is logged, not sent.
PERMANENT: tuple[tuple[type[GatewayError], int, str], ...] = (
    (Unstorable, 422, "the input cannot be stored as sent"),
    (Conflict, 409, "the input conflicts with what is stored"),
    (GatewayError, 422, "the input cannot be processed"),
)


@dataclass(frozen=True, slots=True)
class ParameterProblem:
    """What is wrong with a query parameter (a body field is a `FieldProblem`)."""

    parameter: str
    detail: str


class Problem(GatewayError):
    """An answer other than the one asked for, sent as a problem document."""

    def __init__(self, status: int, detail: str | None = None, *, title: str | None = None,
                 errors: Sequence[FieldProblem | ParameterProblem] = (),
                 headers: Mapping[str, str] | None = None,
                 extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(detail or title or TITLES.get(status, "Error"))
        self.status = status
        self.title = title or TITLES.get(status, "Error")
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def document(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": "about:blank", "title": self.title,
                                "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        body.update(self.extra)
        if self.errors:
            body["errors"] = [_item(e) for e in self.errors]
        return body

    def response(self) -> web.Response:
        return json_response(self.document(), status=self.status, headers=self.headers,
                             content_type=PROBLEM)


def _item(error: FieldProblem | ParameterProblem) -> dict[str, str]:
    if isinstance(error, ParameterProblem):
        return {"parameter": error.parameter, "detail": error.detail}
    return {"pointer": error.pointer, "detail": error.detail}


def invalid(pointer: str, detail: str) -> Problem:
    """422 for one invalid body field, named by its JSON pointer."""
    summary = f"{pointer}: {detail}" if pointer else detail
    return Problem(422, summary, errors=[FieldProblem(pointer, detail)])


def bad_parameter(parameter: str, detail: str, summary: str | None = None) -> Problem:
    """400 for one invalid query parameter."""
    return Problem(400, summary or detail, errors=[ParameterProblem(parameter, detail)])


def unavailable(detail: str) -> Problem:
    """503 for a fault that may pass: the client should retry."""
    return Problem(503, detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def _from_http_exception(exc: web.HTTPException) -> Problem:
    # aiohttp's own answers (no route, wrong method, body over client_max_size).
    detail = exc.text if exc.text and exc.text != f"{exc.status}: {exc.reason}" else None
    return Problem(exc.status, detail, title=exc.reason, headers={
        k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")})


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as a problem document, never as an HTML page."""
    try:
        if "\x00" in request.path or any("\x00" in v for v in request.query.values()):
            # PostgreSQL text cannot hold NUL; no legitimate value carries one.
            raise Problem(400, "NUL characters are not allowed in the URL")
        return await handler(request)
    except Problem as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _from_http_exception(exc).response()
    except Exception as exc:
        if isinstance(exc, GatewayError) and exc.temporary:
            log.warning("storage unavailable: %s", exc)
            return unavailable("storage is temporarily unavailable").response()
        if isinstance(exc, GatewayError) and not isinstance(exc, ConfigError):
            return _permanent(exc, request).response()
        log.exception("unhandled error on %s %s", request.method, request.path)
        return Problem(500).response()


def _permanent(exc: GatewayError, request: web.Request) -> Problem:
    status, detail = next((code, text) for kind, code, text in PERMANENT
                          if isinstance(exc, kind))
    log.warning("%s %s refused (%d): %s", request.method, request.path, status, exc)
    return Problem(status, detail)
