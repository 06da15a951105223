"""The connections one listener holds open: caps, deadlines, counts.

Shared by the SMTP, LMTP and HTTP listeners. Each listener has one
`Connections`: it admits a new connection only under two caps, in total and
per client address (grouped as the rate limits group them: IPv4 as is, IPv6
by its /64, see `client_key`), and it cuts a connection whose client keeps it
waiting past the deadline its listener set (an idle session, a command, a
request head or body that does not arrive, a reader that stops reading). One
sweep a tick checks every deadline: cheaper than a timer per event, and the
events (every packet) only store a number.

When the total is full, the connection whose client has kept it waiting
longest between commands or requests gives its place to the new one
(Postfix's "stress" idea): idle connections, from however many addresses,
cannot hold the listener, while one in the middle of a transfer is never
evicted.

Every refusal and cut is counted here (`refused`, `cut`: plain Counters the
metrics will export) and logged, at most once per kind and listener per
`LOG_INTERVAL_SECONDS` with the number left out, so a flood cannot flood the
log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from gateway.http.limits import client_key

log = logging.getLogger("intake.connections")

# At most one log line per kind of refusal or cut and listener in this long;
# the next one (or the sweep) says how many were left out.
LOG_INTERVAL_SECONDS = 10.0
# When the total is full, a connection idle at least this long gives its place
# to a new one. Long enough that a client between two commands is not cut.
EVICT_IDLE_SECONDS = 1.0
# The sweep runs at least this often, and four times per shortest deadline.
MAX_TICK_SECONDS = 1.0
MIN_TICK_SECONDS = 0.05
# The listen queue: connections the kernel completes before we accept them.
# asyncio's default (100) overflowed under a flood, and the good client's SYN
# was dropped with the attacker's (a 1 s retransmit); the kernel caps it at
# net.core.somaxconn (4,096 since Linux 5.4).
LISTEN_BACKLOG = 1024
# A goodbye the client does not read must not hold the descriptor: the
# connection is aborted this long after it was closed with bytes unsent.
HANG_UP_GRACE_SECONDS = 1.0


class Refusal(StrEnum):
    """Why a new connection was refused (SMTP 421, HTTP 429 or 503)."""

    PER_CLIENT = "per_client"
    TOTAL = "total"


class Cause(StrEnum):
    """What a connection was waiting for when it was cut."""

    IDLE = "idle"            # SMTP: the next command did not begin
    COMMAND = "command"      # SMTP: a command line begun was not finished
    DATA = "data"            # SMTP: the message did not arrive in time
    SESSION = "session"      # SMTP: the whole session went on too long
    HEADER = "header"        # HTTP: the request head did not arrive in time
    BODY = "body"            # HTTP: the request body arrived too slowly
    KEEPALIVE = "keepalive"  # HTTP: no next request on a kept-alive connection
    SEND = "send"            # the client stopped reading what we send
    PROXY = "proxy"          # SMTP: a PROXY header from an address not trusted to send one
    EVICTED = "evicted"      # idle while the listener was full


@dataclass(frozen=True, kw_only=True)
class Caps:
    """A listener's connection caps."""

    total: int
    per_client: int


def peer_host(peer: Any) -> str | None:
    """The address part of a transport's peername (None for a Unix socket)."""
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return None


class Connection:
    """One open connection: whose it is and what its client owes us by when."""

    __slots__ = ("key", "active", "deadline", "cause", "evictable", "per_byte",
                 "received", "satisfied", "stalled_since", "cut")

    def __init__(self, *, key: str, cut: Callable[[Cause], None]) -> None:
        self.key = key
        self.cut = cut  # writes what the client should read, if anything, and closes
        self.active = time.monotonic()  # the last byte from the client or change of wait
        self.deadline = math.inf
        self.cause: Cause | None = None
        self.evictable = False
        self.per_byte = 0.0
        self.received = 0
        self.satisfied: Callable[[], bool] | None = None
        self.stalled_since: float | None = None

    def wait(self, seconds: float, cause: Cause, *, evictable: bool = False,
             per_byte: float = 0.0, satisfied: Callable[[], bool] | None = None) -> None:
        """From now the client has `seconds`, plus `per_byte` for each byte it
        sends meanwhile, before it is cut for `cause`; `satisfied()`, when given,
        says at the deadline that what was awaited has come after all."""
        self.active = time.monotonic()
        self.deadline = self.active + seconds
        self.cause = cause
        self.evictable = evictable
        self.per_byte = per_byte
        self.received = 0
        self.satisfied = satisfied

    def busy(self) -> None:
        """We are working (storing, answering): no deadline of the client's runs."""
        self.deadline = math.inf
        self.cause = None
        self.evictable = False
        self.satisfied = None

    def got(self, size: int) -> None:
        self.received += size
        self.active = time.monotonic()

    def stalled(self, paused: bool) -> None:
        """The transport's write buffer went over (True) or back under its mark."""
        self.stalled_since = time.monotonic() if paused else None

    def due(self, now: float) -> bool:
        return now >= self.deadline + self.received * self.per_byte


class Connections:
    """What one listener holds open, under its caps, and what it refused or cut."""

    def __init__(self, *, name: str, caps: Caps, send_timeout: float,
                 shortest_timeout: float) -> None:
        self.name = name
        self.caps = caps
        self.send_timeout = send_timeout
        self.tick = min(MAX_TICK_SECONDS, max(MIN_TICK_SECONDS, shortest_timeout / 4))
        # Counted for the metrics (plain attributes; the metrics issue exports them).
        self.accepted = 0
        self.peak = 0
        self.refused: Counter[Refusal] = Counter()
        self.cut: Counter[Cause] = Counter()
        self._open: set[Connection] = set()
        self._per_client: Counter[str] = Counter()
        self._log = _Throttled(name)
        self._timer: asyncio.TimerHandle | None = None

    @property
    def open(self) -> int:
        return len(self._open)

    def open_from(self, host: str) -> int:
        return self._per_client.get(client_key(host), 0)

    def start(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.tick, self._sweep)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._log.flush(math.inf)

    def admit(self, peer: Any, *, cut: Callable[[Cause], None],
              per_client: bool = True) -> Connection | Refusal:
        """A new connection from `peer` (a peername), or why it is refused.
        `per_client` False: a trusted proxy's, under the total cap only (its
        address stands for many clients; see `rekey`)."""
        host = peer_host(peer)
        key = client_key(host)
        refusal: Refusal | None = None
        if per_client and self._per_client[key] >= self.caps.per_client:
            refusal = Refusal.PER_CLIENT
        elif len(self._open) >= self.caps.total and not self._evict_one():
            refusal = Refusal.TOTAL
        if refusal is not None:
            self.refused[refusal] += 1
            self._refused(refusal, host)
            return refusal
        conn = Connection(key=key, cut=cut)
        self._open.add(conn)
        self._per_client[key] += 1
        self.accepted += 1
        self.peak = max(self.peak, len(self._open))
        return conn

    def rekey(self, conn: Connection, peer: Any) -> Refusal | None:
        """A proxy has said whose `conn` is: from now it counts as `peer`'s,
        under that client's cap; over it, the refusal (counted and logged, the
        connection left for the caller to answer and close)."""
        if conn not in self._open:
            return None  # closed meanwhile
        host = peer_host(peer)
        key = client_key(host)
        if self._per_client[key] >= self.caps.per_client:
            self.refused[Refusal.PER_CLIENT] += 1
            self._refused(Refusal.PER_CLIENT, host)
            return Refusal.PER_CLIENT
        self._uncount(conn.key)
        conn.key = key
        self._per_client[key] += 1
        return None

    def release(self, conn: Connection) -> None:
        """The connection is closed (idempotent: a cut one was released already)."""
        if conn not in self._open:
            return
        self._open.discard(conn)
        self._uncount(conn.key)

    def _uncount(self, key: str) -> None:
        left = self._per_client[key] - 1
        if left > 0:
            self._per_client[key] = left
        else:
            del self._per_client[key]  # the table holds open clients only

    def expire(self, conn: Connection, cause: Cause) -> None:
        """Cut `conn` now for `cause`: counted, logged, released, closed."""
        self.release(conn)
        conn.busy()
        self.cut[cause] += 1
        self._log.event(f"cut:{cause}", "%s: closed a connection from %s: %s",
                        self.name, conn.key or "a local socket", _CUT_REASONS[cause])
        try:
            conn.cut(cause)
        except Exception:  # noqa: BLE001 - one connection's close must not stop the sweep
            log.exception("%s: closing a connection failed", self.name)

    def _evict_one(self) -> bool:
        now = time.monotonic()
        idle = [c for c in self._open if c.evictable]
        oldest = min(idle, key=lambda c: c.active, default=None)
        if oldest is None or now - oldest.active < EVICT_IDLE_SECONDS:
            return False
        self.expire(oldest, Cause.EVICTED)
        return True

    def _refused(self, refusal: Refusal, host: str | None) -> None:
        if refusal is Refusal.PER_CLIENT:
            self._log.event(refusal, "%s: refused a connection from %s: %d open from that "
                            "address (max_connections_per_client)", self.name,
                            client_key(host) or "a local socket", self.caps.per_client)
        else:
            self._log.event(refusal, "%s: refused a connection from %s: %d connections open "
                            "(max_connections)", self.name, client_key(host) or "a local socket",
                            self.caps.total)

    def _sweep(self) -> None:
        now = time.monotonic()
        for conn in list(self._open):
            if conn.due(now):
                if conn.satisfied is not None and conn.satisfied():
                    conn.busy()
                elif conn.cause is not None:
                    self.expire(conn, conn.cause)
            elif (conn.stalled_since is not None
                  and now - conn.stalled_since >= self.send_timeout):
                self.expire(conn, Cause.SEND)
        self._log.flush(now)
        if self._timer is not None:  # not stopped meanwhile
            self._timer = asyncio.get_running_loop().call_later(self.tick, self._sweep)


_CUT_REASONS = {
    Cause.IDLE: "no command within the idle timeout (smtp.timeout_seconds)",
    Cause.COMMAND: "a command not finished in time (smtp.command_timeout_seconds)",
    Cause.DATA: "the message not received in time (smtp.data_timeout_seconds)",
    Cause.SESSION: "the session went on too long (smtp.session_timeout_seconds)",
    Cause.HEADER: "the request head not received in time (http.header_timeout_seconds)",
    Cause.BODY: "the request body arriving too slowly (http.body_timeout_seconds, "
                "http.body_min_bytes_per_second)",
    Cause.KEEPALIVE: "no next request on a kept-alive connection "
                     "(http.keepalive_timeout_seconds)",
    Cause.SEND: "it stopped reading what we send",
    Cause.PROXY: "it sent a PROXY header but is not a trusted proxy "
                 "(smtp.proxy_protocol_from)",
    Cause.EVICTED: "idle while every connection was taken (max_connections)",
}


def hang_up(transport: asyncio.BaseTransport, goodbye: bytes = b"") -> None:
    """Write `goodbye` and close; abort if the client does not take it soon."""
    # A stream transport, whatever its class: uvloop's do not subclass asyncio's.
    stream = cast(asyncio.Transport, transport)
    if stream.is_closing():
        return
    if goodbye:
        stream.write(goodbye)
    stream.close()
    if stream.get_write_buffer_size():
        asyncio.get_running_loop().call_later(HANG_UP_GRACE_SECONDS, _abort, stream)


def _abort(transport: asyncio.Transport) -> None:
    with contextlib.suppress(Exception):  # closed meanwhile: nothing to do
        transport.abort()


class _Throttled:
    """Warnings by kind, at most one per interval; the rest counted into the next."""

    def __init__(self, name: str, interval: float = LOG_INTERVAL_SECONDS) -> None:
        self._name = name
        self._interval = interval
        self._last: dict[str, float] = {}
        self._left_out: Counter[str] = Counter()

    def event(self, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval:
            self._left_out[kind] += 1
            return
        self._last[kind] = now
        more = self._left_out.pop(kind, 0)
        if more:
            log.warning(message + " (%d more like it in the last %.0f s)", *args, more,
                        self._interval)
        else:
            log.warning(message, *args)

    def flush(self, now: float) -> None:
        for kind, more in list(self._left_out.items()):
            if now - self._last.get(kind, 0.0) >= self._interval:
                del self._left_out[kind]
                self._last[kind] = now if math.isfinite(now) else time.monotonic()
                log.warning("%s: %d more %s in the last %.0f s", self._name, more,
                            _KIND_NAMES.get(kind, kind), self._interval)


_KIND_NAMES = {
    Refusal.PER_CLIENT: "connections refused over max_connections_per_client",
    Refusal.TOTAL: "connections refused over max_connections",
    **{f"cut:{cause}": f"connections closed ({_CUT_REASONS[cause]})" for cause in Cause},
}
