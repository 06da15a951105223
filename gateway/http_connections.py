"""The HTTP listener's connection caps and deadlines, around aiohttp.

aiohttp has a keep-alive timeout and header size limits, but no cap on
connections and no deadline for a request head or body: a client sending a
byte a second held a connection for as long as it liked. So the listening
socket is opened here (`GuardedSite`, an aiohttp site) with a small protocol
in front of aiohttp's own (`_Guarded`, which forwards every event): it admits
the connection under the listener's caps (gateway/connections.py) and notes
each packet, and a middleware (`HttpConnections.middleware`, the innermost)
tells it when a request's head has arrived and when its answer is done.

- At accept: over the per-address cap (not applied to `trusted_proxies`),
  `429`; over the total (with no idle connection to evict), `503`; both with
  `Retry-After` and a problem document, written before the request is read,
  then the connection is closed once the client has sent its request or
  `REFUSAL_LINGER_SECONDS` have passed (so its request does not meet a reset).
  Past `MAX_LINGERING` such connections at once, a refused one is closed just
  after the answer is written.
- The head must arrive within `header_timeout_seconds` of the connection (or of
  the first byte of a next request on a kept-alive connection), the body within
  `body_timeout_seconds` plus a second per `body_min_bytes_per_second` bytes
  received; past either the client gets `408` and the connection is closed. An
  idle kept-alive connection is closed after `keepalive_timeout_seconds`, one
  whose client stops reading after `send_timeout_seconds`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.config import Config
from gateway.connections import (
    LISTEN_BACKLOG,
    Caps,
    Cause,
    Connection,
    Connections,
    Refusal,
    hang_up,
    peer_host,
)
from gateway.http.problems import PROBLEM, RETRY_AFTER_SECONDS, Problem
from gateway.proxies import TrustedProxies

# How long a refused connection stays open to take in the request before it
# is closed, and how many may wait so at once (each holds a descriptor).
REFUSAL_LINGER_SECONDS = 1.0
MAX_LINGERING = 64
# aiohttp's limits on a request head, kept and named: a request line or one
# header line at most 8190 bytes (its default; with its 128 fields at most,
# a head is bounded, and the header timeout bounds how long it may take).
MAX_LINE_BYTES = 8190
MAX_FIELD_BYTES = 8190


def _answer(problem: Problem) -> bytes:
    """A whole HTTP/1.1 answer carrying `problem`, closing the connection."""
    body = json.dumps(problem.document()).encode()
    head = [f"HTTP/1.1 {problem.status} {problem.title}", f"Content-Type: {PROBLEM}",
            f"Content-Length: {len(body)}", "Connection: close"]
    head += [f"{name}: {value}" for name, value in problem.headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


_RETRY = {"Retry-After": str(RETRY_AFTER_SECONDS)}
REFUSED = {
    Refusal.PER_CLIENT: _answer(Problem(
        429, "too many connections from your address; retry later", headers=_RETRY)),
    Refusal.TOTAL: _answer(Problem(
        503, "too many connections; the server is busy, retry later", headers=_RETRY)),
}
TIMED_OUT = _answer(Problem(408, "the request did not arrive in time", title="Request Timeout"))


class HttpConnections:
    """The HTTP listener's connections: caps, deadlines, counts (`connections`)."""

    def __init__(self, config: Config) -> None:
        http = config.http
        self.header_timeout = http.header_timeout_seconds
        self.body_timeout = http.body_timeout_seconds
        self.seconds_per_byte = (1 / http.body_min_bytes_per_second
                                 if http.body_min_bytes_per_second else 0.0)
        self.keepalive_timeout = http.keepalive_timeout_seconds
        # A trusted proxy's connections carry many clients' requests (and HAProxy
        # reuses them across clients): the total cap only; the rate limits see
        # each client by its X-Forwarded-For (gateway/http/forwarded.py).
        self.proxies = TrustedProxies(http.trusted_proxies)
        self.connections = Connections(
            name="http",
            caps=Caps(total=http.max_connections, per_client=http.max_connections_per_client),
            send_timeout=http.send_timeout_seconds,
            shortest_timeout=min(self.header_timeout, self.body_timeout,
                                 self.keepalive_timeout, http.send_timeout_seconds))
        self.lingering = 0
        self._by_transport: dict[asyncio.BaseTransport, _Guarded] = {}

    def runner_options(self) -> dict[str, Any]:
        """aiohttp's own options for its request handlers."""
        return {
            # Ours closes idle connections first (and counts them); aiohttp's is the
            # backstop, a little later.
            "keepalive_timeout": self.keepalive_timeout + 1,
            "max_line_size": MAX_LINE_BYTES,
            "max_field_size": MAX_FIELD_BYTES,
            # A client that hangs up does not cancel its handler halfway through a
            # commit; the handler finishes and its answer goes nowhere.
            "handler_cancellation": False,
        }

    def protocol(self, make: Callable[[], asyncio.Protocol]) -> asyncio.Protocol:
        return _Guarded(self, make)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The head has arrived: the body's deadline, if one is coming, then ours."""
        transport = request.transport
        guarded = self._by_transport.get(transport) if transport is not None else None
        if guarded is None:
            return await handler(request)  # the app alone (tests), not behind a site
        guarded.request_began(request)
        try:
            return await handler(request)
        except ConnectionResetError:
            if request.transport is None or request.transport.is_closing():
                # We cut it (or the client left): nobody will read an answer,
                # and the cut is logged already; a traceback per cut would not be.
                raise Problem(408, "the connection was closed") from None
            raise
        finally:
            guarded.keep_alive()

    def track(self, transport: asyncio.BaseTransport, guarded: _Guarded) -> None:
        self._by_transport[transport] = guarded

    def untrack(self, transport: asyncio.BaseTransport | None) -> None:
        if transport is not None:
            self._by_transport.pop(transport, None)


class _Guarded(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind the caps and deadlines."""

    __slots__ = ("_guard", "_make", "_inner", "_transport", "conn", "_between")

    def __init__(self, guard: HttpConnections, make: Callable[[], asyncio.Protocol]) -> None:
        self._guard = guard
        self._make = make
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.BaseTransport | None = None
        self.conn: Connection | None = None
        self._between = False  # a kept-alive connection between two requests

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        guard = self._guard
        peer = transport.get_extra_info("peername")
        admitted = guard.connections.admit(peer, cut=self._cut,
                                           per_client=not guard.proxies.trusts(peer_host(peer)))
        if isinstance(admitted, Refusal):
            self._refuse(transport, REFUSED[admitted])
            return
        self.conn = admitted
        admitted.wait(guard.header_timeout, Cause.HEADER, evictable=True)
        guard.track(transport, self)
        self._inner = self._make()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        inner, conn = self._inner, self.conn
        if inner is None or conn is None:
            if b"\r\n\r\n" in data and self._transport is not None:
                self._transport.close()  # a refused client's request is in
            return
        if self._between:
            self._between = False  # a next request begins: its head's deadline runs
            conn.wait(self._guard.header_timeout, Cause.HEADER, evictable=True)
        conn.got(len(data))
        inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._inner is None:
            return False
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is None:
            self._guard.lingering -= 1
            return
        if self.conn is not None:
            self._guard.connections.release(self.conn)
        self._guard.untrack(self._transport)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.conn is not None:
            self.conn.stalled(True)
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self.conn is not None:
            self.conn.stalled(False)
        if self._inner is not None:
            self._inner.resume_writing()

    def request_began(self, request: web.Request) -> None:
        """Its head is in: the body's deadline if one is coming, else none of the client's."""
        conn = self.conn
        if conn is None:
            return
        self._between = False  # (a pipelined request's head came with the one before)
        if request.body_exists and not request.content.is_eof():
            conn.wait(self._guard.body_timeout, Cause.BODY,
                      per_byte=self._guard.seconds_per_byte, satisfied=request.content.is_eof)
        else:
            conn.busy()

    def keep_alive(self) -> None:
        """The answer is done: the next request has the keep-alive timeout to begin."""
        if self.conn is not None:
            self._between = True
            self.conn.wait(self._guard.keepalive_timeout, Cause.KEEPALIVE, evictable=True)

    def _refuse(self, transport: asyncio.BaseTransport, answer: bytes) -> None:
        guard = self._guard
        guard.lingering += 1  # until connection_lost
        if guard.lingering > MAX_LINGERING:
            hang_up(transport, answer)
            return
        cast(asyncio.Transport, transport).write(answer)  # uvloop's are no WriteTransport
        asyncio.get_running_loop().call_later(REFUSAL_LINGER_SECONDS, hang_up, transport)

    def _cut(self, cause: Cause) -> None:
        transport, conn = self._transport, self.conn
        if transport is None or conn is None:
            return
        # A head or body begun (or an answer owed) gets 408; an idle connection
        # is just closed (RFC 9110 15.5.9); a client not reading gets nothing.
        partial = cause in (Cause.HEADER, Cause.EVICTED) and not self._between and conn.received
        if cause is Cause.BODY or partial:
            hang_up(transport, TIMED_OUT)
        elif cause is Cause.SEND:
            cast(asyncio.Transport, transport).abort()
        else:
            hang_up(transport)


class GuardedSite(web.BaseSite):
    """aiohttp's TCP site, each connection admitted by `guard` first."""

    __slots__ = ("_host", "_port", "_guard", "_reuse_port")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *,
                 guard: HttpConnections, reuse_port: bool = False) -> None:
        super().__init__(runner, backlog=LISTEN_BACKLOG)
        self._host = host
        self._port = port
        self._guard = guard
        # Beside other worker processes on the same port (gateway/processes.py).
        self._reuse_port = reuse_port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: self._guard.protocol(server), self._host, self._port,
            backlog=self._backlog, reuse_port=self._reuse_port or None)
        self._guard.connections.start()

    async def stop(self) -> None:
        self._guard.connections.stop()
        await super().stop()
