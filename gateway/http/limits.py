"""Rate limits per token and per client address (token buckets, in memory).

Each process keeps its own buckets: with N processes behind a balancer a
client gets up to N times the rate, which is what a limit against runaway
clients needs, not an exact quota.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.http.problems import Problem

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_MAX_BUCKETS = 50_000


class Buckets:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._state: dict[str, tuple[float, float]] = {}

    def take(self, key: str, now: float | None = None) -> float:
        """0 if allowed, else the seconds until one request is allowed again."""
        now = time.monotonic() if now is None else now
        tokens, last = self._state.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1:
            if len(self._state) > _MAX_BUCKETS:
                self._state.clear()  # a flood of addresses: start over, never grow unbounded
            self._state[key] = (tokens - 1, now)
            return 0.0
        self._state[key] = (tokens, now)
        return (1 - tokens) / self.rate


def rate_limit_middleware(per_token: Buckets, per_address: Buckets) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/v1/"):
            return await handler(request)
        header = request.headers.get("Authorization", "")
        key = header.partition(" ")[2].strip()
        wait = per_token.take(f"t:{key[-16:]}") if key else 0.0
        wait = max(wait, per_address.take(f"a:{request.remote}"))
        if wait > 0:
            raise Problem(429, "slow down and retry later",
                          headers={"Retry-After": str(max(1, math.ceil(wait)))})
        return await handler(request)

    return middleware


