"""Shared pieces of the HTTP API: app keys, problem documents, tokens and scopes."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.errors import GatewayError
from gateway.config import Config
from gateway.rules_in_force import RulesHolder
from gateway.signals import WorkSignals
from storage.inbox import InboxWriter
from storage.tokens import TokenInfo, hash_secret, lookup_token

log = logging.getLogger("intake.http")

CONFIG = web.AppKey("config", Config)
ENGINE = web.AppKey("engine", AsyncEngine)
WRITER = web.AppKey("writer", InboxWriter)
TOKENS = web.AppKey("tokens", "TokenCache")
RULES = web.AppKey("rules", RulesHolder)
SIGNALS = web.AppKey("signals", WorkSignals)

PROBLEM = "application/problem+json"
RETRY_AFTER_SECONDS = 5

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

    def forget(self) -> None:
        """Drop cached lookups (after a revoke in this process)."""
        self._entries.clear()

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


async def token_of(request: web.Request) -> TokenInfo | None:
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return await request.app[TOKENS].get(secret.strip())


async def authorised(request: web.Request,
                     roles: tuple[str, ...]) -> TokenInfo | web.Response:
    """The caller's token if its role is one of `roles`; else the 401 or 403 to send."""
    token = await token_of(request)
    if token is None:
        return unauthorised()
    return token if token.role in roles else forbidden()


def unauthorised() -> web.Response:
    return problem(401, "Unauthorized", "a valid bearer token is required",
                   headers={"WWW-Authenticate": 'Bearer realm="intake"'})


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as a problem document, never as an HTML page."""
    if "\x00" in request.path or any("\x00" in v for v in request.query.values()):
        # PostgreSQL text cannot hold NUL; no legitimate value carries one.
        return problem(400, "Bad Request", "NUL characters are not allowed in the URL")
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        detail = exc.text if exc.text and exc.text != f"{exc.status}: {exc.reason}" else None
        return problem(exc.status, exc.reason, detail, headers={
            k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")})
    except Exception as exc:
        if isinstance(exc, GatewayError) and exc.temporary:
            log.warning("storage unavailable: %s", exc)
            return unavailable("storage is temporarily unavailable")
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "Internal Server Error")


def request_url(request: web.Request, reference: str) -> str:
    return f"{request.app[CONFIG].public_url}/v1/requests/{reference}"


def small_int(raw: str) -> int | None:
    """A path or query number: ASCII digits that fit a database integer, else None."""
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None


def may_read(token: TokenInfo, queue: str | None) -> bool:
    """Admins read all; agents their queues (all if unscoped); intake clients none."""
    if token.role == "admin":
        return True
    if token.role != "agent":
        return False
    return not token.queues or (queue is not None and queue in token.queues)


def forbidden() -> web.Response:
    return problem(403, "Forbidden", "this token's role may not do this")


