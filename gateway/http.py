"""HTTP API (aiohttp): intake by POST, reads by reference or Message-ID.

Errors are problem documents (RFC 9457). A storage fault answers 503 with
Retry-After; 201 is sent only after the request body is committed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Config
from gateway.errors import is_temporary
from gateway.rules import RulesHolder
from parsers.api_request import parse_api_request
from storage import actions, queries
from storage.errors import IdempotencyConflict
from storage.inbox import Accepted, InboxWriter, NewItem
from storage.tokens import TokenInfo, hash_secret, lookup_token

log = logging.getLogger("intake.http")

CONFIG = web.AppKey("config", Config)
ENGINE = web.AppKey("engine", AsyncEngine)
WRITER = web.AppKey("writer", InboxWriter)
TOKENS = web.AppKey("tokens", "TokenCache")
RULES = web.AppKey("rules", RulesHolder)

PROBLEM = "application/problem+json"
RETRY_AFTER_SECONDS = 5
MAX_IDEMPOTENCY_KEY = 200

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None,
                  content_type: str = "application/json") -> web.Response:
    return web.Response(body=json.dumps(data, default=_default).encode(), status=status,
                        headers=headers, content_type=content_type)


def problem(status: int, title: str, detail: str | None = None, *,
            headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return json_response(body, status=status, headers=headers, content_type=PROBLEM)


def unavailable(detail: str) -> web.Response:
    return problem(503, "Service Unavailable", detail,
                   headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


class TokenCache:
    """Token lookups cached briefly: a revoked token stops working within `ttl`."""

    def __init__(self, engine: AsyncEngine, ttl: float = 5.0) -> None:
        self._engine = engine
        self._ttl = ttl
        self._entries: dict[str, tuple[float, TokenInfo | None]] = {}

    async def get(self, secret: str) -> TokenInfo | None:
        key = hash_secret(secret)
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        info = await lookup_token(self._engine, secret)
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[key] = (now + self._ttl, info)
        return info


async def _token(request: web.Request) -> TokenInfo | None:
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return await request.app[TOKENS].get(secret.strip())


def _unauthorised() -> web.Response:
    return problem(401, "Unauthorized", "a valid bearer token is required",
                   headers={"WWW-Authenticate": 'Bearer realm="intake"'})


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as a problem document, never as an HTML page."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        detail = exc.text if exc.text and exc.text != f"{exc.status}: {exc.reason}" else None
        return problem(exc.status, exc.reason, detail, headers={
            k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")})
    except Exception as exc:
        if is_temporary(exc):
            log.warning("storage unavailable: %s", exc)
            return unavailable("storage is temporarily unavailable")
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "Internal Server Error")


def _request_url(request: web.Request, reference: str) -> str:
    return f"{request.app[CONFIG].public_url}/v1/requests/{reference}"


async def create_request(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    token = await _token(request)
    if token is None and not config.http.open_intake:
        return _unauthorised()
    if request.content_length is not None and request.content_length > config.http.max_body_bytes:
        return problem(413, "Content Too Large",
                       f"the body must be at most {config.http.max_body_bytes} bytes")
    body = await request.read()  # aiohttp enforces client_max_size while reading
    parsed = parse_api_request(body)
    if isinstance(parsed, list):
        return problem(422, "Unprocessable Content", "the request body has invalid fields",
                       errors=[{"pointer": p.pointer, "detail": p.detail} for p in parsed])
    meta = {
        "content_type": request.content_type,
        "remote": request.remote,
        "token_id": token.id if token else None,
        "user_agent": request.headers.get("User-Agent"),
    }
    item = NewItem("api", body, meta)
    key = request.headers.get("Idempotency-Key")
    writer = request.app[WRITER]
    headers: dict[str, str] = {}
    if key is not None:
        if not key or len(key) > MAX_IDEMPOTENCY_KEY:
            return problem(400, "Bad Request",
                           f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
        scope = f"{token.id if token else 'open'}:{key}"
        try:
            accepted: Accepted = await writer.submit_idempotent(item, scope)
        except IdempotencyConflict:
            return problem(422, "Unprocessable Content",
                           "this Idempotency-Key was used with a different body")
        if accepted.replayed:
            headers["Idempotent-Replayed"] = "true"
    else:
        accepted = await writer.submit(item)
    url = _request_url(request, accepted.reference)
    headers["Location"] = url
    return json_response({"reference": accepted.reference, "url": url, "status": "received"},
                         status=201, headers=headers)


def _may_read(token: TokenInfo, queue: str | None) -> bool:
    """Admins read all; agents their queues (all if unscoped); intake clients none."""
    if token.role == "admin":
        return True
    if token.role != "agent":
        return False
    return not token.queues or (queue is not None and queue in token.queues)


async def get_request(request: web.Request) -> web.Response:
    token = await _token(request)
    if token is None:
        return _unauthorised()
    found = await queries.get_request(request.app[ENGINE], request.match_info["reference"])
    # Out of scope looks exactly like unknown: no leak of what exists.
    if found is None or not _may_read(token, found.get("queue")):
        return problem(404, "Not Found", "no request with this reference")
    found["url"] = _request_url(request, found["reference"])
    return json_response(found)


async def list_requests(request: web.Request) -> web.Response:
    token = await _token(request)
    if token is None:
        return _unauthorised()
    message_id = request.query.get("message_id")
    if not message_id:
        return problem(400, "Bad Request", "query parameter message_id is required",
                       errors=[{"parameter": "message_id", "detail": "is required"}])
    rows = await queries.find_by_message_id(request.app[ENGINE], message_id)
    visible = [r for r in rows if _may_read(token, r["queue"])]
    for row in visible:
        row["url"] = _request_url(request, row["reference"])
    return json_response({"items": visible})


def _forbidden() -> web.Response:
    return problem(403, "Forbidden", "this token's role may not do this")


async def rules_status(request: web.Request) -> web.Response:
    """The rules in force and how the last reload went (admin)."""
    token = await _token(request)
    if token is None:
        return _unauthorised()
    if token.role != "admin":
        return _forbidden()
    return json_response(request.app[RULES].status())


async def list_quarantined(request: web.Request) -> web.Response:
    token = await _token(request)
    if token is None:
        return _unauthorised()
    if token.role not in ("admin", "agent"):
        return _forbidden()
    scope = list(token.queues) if token.role == "agent" and token.queues else None
    items = await actions.list_by_status(request.app[ENGINE], "quarantined", scope)
    for row in items:
        row["url"] = _request_url(request, row["reference"])
    return json_response({"items": items})


async def release_quarantined(request: web.Request) -> web.Response:
    token = await _token(request)
    if token is None:
        return _unauthorised()
    engine = request.app[ENGINE]
    found = await queries.get_request(engine, request.match_info["reference"])
    if found is None or not _may_read(token, found.get("queue")):
        return problem(404, "Not Found", "no request with this reference")
    if token.role not in ("admin", "agent"):
        return _forbidden()
    queue = await actions.release(engine, found["reference"], f"token:{token.id}")
    if queue is None:
        return problem(409, "Conflict", f"request is {found['status']}, not quarantined")
    return json_response({"reference": found["reference"], "status": "new", "queue": queue})


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    try:
        await queries.ping(request.app[ENGINE])
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        return unavailable(f"database unreachable: {type(exc).__name__}")
    return json_response({"status": "ready"})


def build_app(config: Config, engine: AsyncEngine, writer: InboxWriter,
              rules: RulesHolder) -> web.Application:
    app = web.Application(middlewares=[problems_middleware],
                          client_max_size=config.http.max_body_bytes)
    app[CONFIG] = config
    app[ENGINE] = engine
    app[WRITER] = writer
    app[TOKENS] = TokenCache(engine)
    app[RULES] = rules
    app.router.add_post("/v1/requests", create_request)
    app.router.add_get("/v1/requests", list_requests)
    app.router.add_get("/v1/requests/{reference}", get_request)
    app.router.add_get("/v1/admin/rules", rules_status)
    app.router.add_get("/v1/quarantine", list_quarantined)
    app.router.add_post("/v1/quarantine/{reference}/release", release_quarantined)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
