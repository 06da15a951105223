"""Rate limits per token and per client address (token buckets, in memory).

Each process keeps its own buckets: with N processes behind a balancer a
client gets up to N times the rate, which is what a limit against runaway
clients needs, not an exact quota.

A client's address is grouped as a network hands them out: an IPv6 client
holds a whole /64 (RFC 4291 2.5.1 interface identifiers; one host can take any
of 2^64 addresses in it), an IPv4-mapped IPv6 address is the IPv4 host it maps.
The table is bounded: past `MAX_BUCKETS` the least recently used bucket goes
(an idle client's, never the busy one being limited).
"""

from __future__ import annotations

import functools
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway import metrics
from gateway.http.problems import Problem

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# About 120 bytes a bucket: 50,000 is a few MB, and more distinct clients than a
# second's worth of any flood the per-address rate lets through.
MAX_BUCKETS = 50_000
IPV6_CLIENT_PREFIX = 64


@functools.lru_cache(maxsize=4096)  # clients come back: parse each address once
def client_key(remote: str | None) -> str:
    """The address a per-client limit counts: IPv4 as is, IPv6 by its /64."""
    if not remote:
        return ""
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return remote  # not an IP (a Unix socket): the peer as given
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        network = ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False)
        return str(network)
    return str(address)


class Buckets:
    """Token buckets by key, the least recently used dropped past `max_keys`."""

    def __init__(self, rate: float, burst: float, *, max_keys: int = MAX_BUCKETS) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        # OrderedDict, not a cache library: move_to_end and popitem(last=False)
        # are the whole LRU, a dependency would add nothing.
        self._state: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._state)

    def take(self, key: str, now: float | None = None) -> float:
        """0 if allowed, else the seconds until one request is allowed again."""
        now = time.monotonic() if now is None else now
        tokens, last = self._state.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1
        self._state[key] = (tokens - 1 if allowed else tokens, now)
        self._state.move_to_end(key)
        while len(self._state) > self.max_keys:
            self._state.popitem(last=False)
        return 0.0 if allowed else (1 - tokens) / self.rate


def rate_limit_middleware(per_token: Buckets, per_address: Buckets) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/v1/"):
            return await handler(request)
        header = request.headers.get("Authorization", "")
        key = header.partition(" ")[2].strip()
        wait = per_token.take(f"t:{key[-16:]}") if key else 0.0
        wait = max(wait, per_address.take(f"a:{client_key(request.remote)}"))
        if wait > 0:
            channel = _intake_channel(request)
            if channel is not None:  # a post refused before its handler saw it
                metrics.intake(channel).refused("rate_limited")
            raise Problem(429, "slow down and retry later",
                          headers={"Retry-After": str(max(1, math.ceil(wait)))})
        return await handler(request)

    return middleware


def _intake_channel(request: web.Request) -> str | None:
    """The intake channel a request would have posted to, if it is a post."""
    if request.method != "POST":
        return None
    if request.path == "/v1/requests":
        return "api"
    return "form" if request.path.startswith("/v1/forms/") else None
