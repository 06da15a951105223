"""SMTP and LMTP intake (aiosmtpd): decide, commit, answer with a constant.

The handler is thin on purpose: check the recipient, refuse what RFC 5321
forbids, hand the exact bytes to the inbox writer and answer 250 only once
they are committed. Any fault of ours answers 451 4.3.0 so the sender retries.

What the envelope carries reaches storage too, so what RFC 5321 forbids in it
is refused at the command: a NUL anywhere in HELO, EHLO, LHLO, MAIL or RCPT,
and control characters in a path (its grammar has none). What is merely
unusual (8-bit bytes that are not UTF-8, from an old MTA) is accepted; the
inbox keeps its exact bytes (storage/storable.py).

A listener holds at most `max_connections` sessions, `max_connections_per_client`
from one address (gateway/connections.py); past them a new one is told 421 and
closed. A session's client owes us, by a deadline it cannot stretch by sending
a byte at a time: the next command within the idle timeout, a command begun
within the command timeout, the message within the DATA timeout, and the end
of the session within the session timeout (cut at its first idle moment
after, never in a transaction). Past one it is told 421 4.4.2 and closed.

Behind a load balancer (`smtp.proxy_protocol_from`, gateway/proxies.py) a
connection from a listed proxy must begin with a PROXY header (v1 or v2,
aiosmtpd reads it) within the command timeout, and the client it names is the
session's peer: in the stored envelope, the logs and the per-client cap. The
cap is applied at accept to the proxy's address, which stands for many
clients, so there only the total counts; once the header is in, the client's
own cap (`Connections.rekey`), and over it 421 4.7.0 as at accept. A header
from anyone else is refused (554 5.7.1) and the connection closed: otherwise
any client could say it is somebody else.

TLS (gateway/tls.py): with `[smtp.tls]` the SMTP and LMTP listeners offer
STARTTLS, and `tls_listen` is a listener (`smtps`) that speaks TLS from the
first byte. Both run asyncio's TLS layer on the session's own transport, the
way aiosmtpd's STARTTLS does, so one session object, counted by the caps from
accept, lives through the handshake: it owes the handshake like a command
(cut at the command timeout), and a failed one is logged on one line and
frees its place. Whatever the client sent after STARTTLS before the handshake
is dropped, never read as a command (the STARTTLS injection of CVE-2011-0411),
and the session starts over after it (RFC 3207 4.2), keeping only the client's
address. A listener with `require_tls` answers every command but EHLO, LHLO,
NOOP, STARTTLS and QUIT with 530 5.7.0 until TLS is up (RFC 3207 4). Every
stored message records its listener (`meta.listener`), and its TLS version and
cipher when it came over TLS (`meta.tls`). A trusted proxy's PROXY header is
read on the SMTP and LMTP listeners only: on `smtps` it would have to come
before the handshake, which is not implemented, so it fails the handshake.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto as sslproto
import functools
import logging
import math
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.proxy_protocol import AF, V2_CMD, V2_SIGNATURE, ProxyData
from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session, TLSSetupException, syntax

from domain.errors import GatewayError
from gateway import logs, metrics
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
from gateway.data_budget import DataBudget
from gateway.proxies import TrustedProxies
from gateway.smtp_data import read_data
from gateway.smtp_prototype import init_session
from gateway.tls import ServerTls, described
from storage.errors import Unstorable
from storage.inbox import Accepted, NewItem

log = logging.getLogger("intake.smtp")

# Replies, with their RFC 3463 enhanced status codes.
OK_RECIPIENT = "250 2.1.5 Recipient OK"
NO_SUCH_USER = "550 5.1.1 Recipient address rejected: not a support address here"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"  # RFC 5321 4.5.3.1.8
BARE_LINE_ENDING = (
    "550 5.5.2 Message refused: bare CR or LF in data; lines must end with CRLF "
    "(RFC 5321 2.3.8)"
)
TRY_LATER = "451 4.3.0 Temporary failure storing the message, please try again later"
# RFC 5321 4.1.2: no command may carry a NUL, and a path (Mailbox) has no
# control character; RFC 3463 5.5.2 (syntax), 5.1.7 (sender), 5.1.3 (recipient).
NUL_IN_COMMAND = "500 5.5.2 Syntax error: NUL character in command"
BAD_SENDER = "553 5.1.7 Sender address rejected: control character in address"
BAD_RECIPIENT = "553 5.1.3 Recipient address rejected: control character in address"
SENDER_OK = "250 2.1.0 Sender OK"
# The database refused what the message carries, and would again: a retry
# cannot help (RFC 3463 5.6.0, other media error).
UNSTORABLE = "554 5.6.0 Message refused: it cannot be stored as sent"
SHUTTING_DOWN = "421 4.3.2 Service shutting down, please try again later"
TRY_LATER_NOW = "421 4.3.0 Temporary failure, please try again later"
# Connection caps and deadlines (RFC 3463: 4.7.0 security or policy status,
# 4.3.2 system not accepting network messages, 4.4.2 bad connection).
TOO_MANY_FROM_YOU = "421 4.7.0 Too many connections from your address, try again later"
SERVER_BUSY = "421 4.3.2 Too many connections, server busy, try again later"
REFUSED = {Refusal.PER_CLIENT: TOO_MANY_FROM_YOU, Refusal.TOTAL: SERVER_BUSY}
GOODBYES = {
    Cause.IDLE: "421 4.4.2 Timeout: no command received, closing connection",
    Cause.COMMAND: "421 4.4.2 Timeout: command not completed, closing connection",
    Cause.DATA: "421 4.4.2 Timeout: message data not received in time, closing connection",
    Cause.SESSION: "421 4.4.2 Session time limit reached, closing connection",
    Cause.EVICTED: "421 4.3.2 Server busy and this session idle, closing connection",
    Cause.PROXY: "554 5.7.1 PROXY header refused: this address is not a trusted proxy",
}
# TLS (RFC 3207 4; the words are Postfix's).
READY_FOR_TLS = "220 2.0.0 Ready to start TLS"
MUST_STARTTLS = "530 5.7.0 Must issue a STARTTLS command first"
TLS_ACTIVE = "554 5.5.1 Error: TLS already active"
STARTTLS_SYNTAX = "501 5.5.4 Syntax: STARTTLS"
# What a listener that requires TLS takes before it (LHLO is LMTP's EHLO).
BEFORE_TLS = frozenset({"EHLO", "LHLO", "NOOP", "STARTTLS", "QUIT"})
# A TLS close waits this long for the client's close_notify, then drops the
# connection (asyncio's 30 s would hold a descriptor per silent client).
TLS_SHUTDOWN_SECONDS = 5.0
# How a PROXY header begins (v1's text, v2's binary signature).
PROXY_SIGNATURES = (b"PROXY", V2_SIGNATURE[:5])
# aiosmtpd's own size replies carry no enhanced code; RFC 3463 says 5.3.4.
_REWRITES = {
    "552 Error: message size exceeds fixed maximum message size":
        "552 5.3.4 Message size exceeds fixed maximum message size",
    "552 Error: Too much mail data": "552 5.3.4 Message size exceeds fixed maximum message size",
}

Submit = Callable[[NewItem], Awaitable[Accepted]]


def has_bare_line_ending(data: bytes) -> bool:
    """True if a CR or LF appears other than as part of CRLF.

    aiosmtpd splits DATA on CRLF only, so a lone LF stays inside a "line";
    left alone, `Subject: a\\nX-Evil: b` would be read as two headers later.
    """
    crlf = data.count(b"\r\n")
    return data.count(b"\n") != crlf or data.count(b"\r") != crlf


# The everyday reverse- and forward-path, `<dot-atom@domain>` (RFC 5321 4.1.2).
_SIMPLE_PATH = re.compile(
    r"<([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)>[ \t]*"
)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _reply_for(exc: Exception) -> str:
    """The SMTP edge's one mapping of errors to replies. Nothing is refused
    after DATA for a fault of ours: a temporary error and a bug alike answer
    451, so the sender keeps the message and tries again. Only a message the
    database refuses for its own values is refused for good."""
    if isinstance(exc, Unstorable):
        log.warning("refusing a message: %s", exc)
        return UNSTORABLE
    if isinstance(exc, GatewayError) and exc.temporary:
        log.warning("storing a message failed: %s", exc)
    else:
        log.exception("unexpected error storing a message")
    return TRY_LATER


Command = Callable[[Any, str | None], Awaitable[None]]


def _refusing_nul(command: Command) -> Command:
    """aiosmtpd's command, refusing an argument with a NUL (its help text kept)."""
    @functools.wraps(command)
    async def checked(self: Any, arg: str | None) -> None:
        if arg is not None and "\x00" in arg:
            await self.push(NUL_IN_COMMAND)
            return
        await command(self, arg)
    return checked


class _Phase(StrEnum):
    """Where a session is, which says what its client owes us."""

    AWAITING = "awaiting"  # our reply sent, the next command not begun
    COMMAND = "command"    # a command line begun
    DATA = "data"          # 354 sent, the message arriving
    STORING = "storing"    # the message is ours to store: no deadline of the client's


@dataclass
class TlsCounts:
    """A listener's TLS handshakes: done, and failed (cut, refused, garbage)."""

    sessions: int = 0
    failed: int = 0


class _IntakeSession:
    """What our sessions change in aiosmtpd's SMTP class: the NUL checks, the
    replies, the listener's caps and deadlines (`tracked`) and TLS."""

    # The commands whose arguments are stored (session.host_name, the envelope).
    smtp_MAIL = _refusing_nul(SMTP.smtp_MAIL)
    smtp_RCPT = _refusing_nul(SMTP.smtp_RCPT)

    def __init__(self, handler: Any, *, connections: Connections, tracked: Connection,
                 timeouts: SessionTimeouts, budget: DataBudget, proxied: bool = False,
                 implicit_tls: bool = False, require_tls: bool = False,
                 tls_counts: TlsCounts | None = None,
                 forget: Callable[[Any], None] | None = None, **kwargs: Any) -> None:
        if proxied:
            # aiosmtpd's own timer for the header, a backstop like the one below.
            kwargs["proxy_protocol_timeout"] = max(3.0, timeouts.longest * 2)
        init_session(self, handler, kwargs)  # type: ignore[arg-type]  # SMTP.__init__
        self._connections = connections
        self._proxied = proxied  # from a trusted proxy: a PROXY header comes first
        self._first = True  # no byte received yet
        self._budget = budget  # the listener's message data in flight
        self._timeouts = timeouts
        self.tracked = tracked  # admitted by the listener's gate (`_Gate`)
        tracked.cut = self._cut
        self._phase = _Phase.AWAITING
        self._session_ends = math.inf
        self._implicit_tls = implicit_tls  # TLS from the first byte (the smtps listener)
        self._secured = False  # a TLS handshake is done: the session runs over TLS
        self._tls_counts = tls_counts or TlsCounts()
        self._forget = forget  # the listener's, called once the session is gone
        self._peer_host: str | None = None
        if require_tls:
            methods = self._smtp_methods  # type: ignore[attr-defined]
            for command, method in methods.items():
                if command not in BEFORE_TLS:
                    methods[command] = self._after_tls(method)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._session_ends == math.inf:  # the connection, not a handshake's end
            self._session_ends = time.monotonic() + self._timeouts.session
            self._peer_host = peer_host(transport.get_extra_info("peername"))
            if self._implicit_tls:
                # The session begins once the handshake is done (this is called
                # again then); the handshake is owed like a command begun.
                self._owe_handshake()
                self._start_tls(transport)
                return
            if self._proxied:  # the header is owed at once, like a command begun
                self._phase = _Phase.COMMAND
                self._wait(self._timeouts.command, Cause.COMMAND, evictable=True)
            else:
                self._await_command()
            super().connection_made(transport)  # type: ignore[misc]
            return
        # A TLS handshake is done. aiosmtpd starts the session over (RFC 3207
        # 4.2) and, after STARTTLS, drops what was read but not yet handled;
        # the client's address (a proxy's word for it, too) is all that stays.
        self._secured = True
        self._tls_counts.sessions += 1
        before = self.session  # type: ignore[attr-defined]
        self._await_command()
        super().connection_made(transport)  # type: ignore[misc]
        session = self.session  # type: ignore[attr-defined]
        if before is not None:
            session.peer, session.proxy_data = before.peer, before.proxy_data
        session.ssl = self._tls_protocol._extra  # type: ignore[attr-defined]

    def connection_lost(self, error: Exception | None) -> None:
        self._gone()
        super().connection_lost(error)  # type: ignore[misc]

    def _gone(self) -> None:
        """Free what the session held: its place under the caps, its data."""
        self._connections.release(self.tracked)
        self._budget.release(self)
        if self._forget is not None:
            self._forget(self)

    def _after_tls(self, method: Callable[[str | None], Awaitable[None]]
                   ) -> Callable[[str | None], Awaitable[None]]:
        """`method`, answered 530 until TLS is up (its HELP text kept)."""
        @functools.wraps(method)
        async def checked(arg: str | None) -> None:
            if not self._secured:
                await self.push(MUST_STARTTLS)
                return
            await method(arg)
        return checked

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str | None) -> None:
        """aiosmtpd's STARTTLS, with our deadline on the handshake, a second
        STARTTLS refused, and a handshake cut or failed told apart from one done."""
        if arg:
            await self.push(STARTTLS_SYNTAX)
            return
        if self.tls_context is None:  # type: ignore[attr-defined]
            await self.push("454 4.7.0 TLS not available")
            return
        if self._tls_protocol is not None:  # type: ignore[attr-defined]
            await self.push(TLS_ACTIVE)
            return
        await self.push(READY_FOR_TLS)
        # Sent with or after STARTTLS, before any handshake, in the clear: never
        # a command (aiosmtpd clears it again once the handshake is done).
        self._reader._buffer.clear()  # type: ignore[attr-defined]
        waiter = self._start_tls(self.transport)  # type: ignore[attr-defined]
        try:
            await waiter
        except asyncio.CancelledError:
            raise
        except Exception as error:
            raise TLSSetupException() from error  # aiosmtpd closes the connection
        if not self._secured:  # closed during the handshake: cut, or shut down
            raise TLSSetupException()

    def _start_tls(self, raw: asyncio.BaseTransport) -> asyncio.Future[None]:
        """Put asyncio's TLS layer between `raw` and this session, as aiosmtpd's
        STARTTLS does; `connection_made` is called again when the handshake is
        done, and the future is done when it ends either way."""
        smtp: Any = self  # aiosmtpd's attributes, set as its STARTTLS sets them
        waiter: asyncio.Future[None] = smtp.loop.create_future()
        protocol = sslproto.SSLProtocol(
            smtp.loop, smtp, smtp.tls_context, waiter, server_side=True,
            # A backstop: the command deadline cuts a slow handshake first.
            ssl_handshake_timeout=2 * self._timeouts.command,  # type: ignore[arg-type]
            ssl_shutdown_timeout=TLS_SHUTDOWN_SECONDS)
        smtp._tls_protocol = protocol
        smtp._original_transport = raw
        if not self._implicit_tls:
            smtp.transport = protocol._app_transport  # aiosmtpd's sign of STARTTLS
        waiter.add_done_callback(self._handshake_done)
        raw.set_protocol(protocol)
        protocol.connection_made(raw)
        return waiter

    def _handshake_done(self, waiter: asyncio.Future[None]) -> None:
        if self._secured:
            return
        error = None if waiter.cancelled() else waiter.exception()
        self._tls_counts.failed += 1
        log.info("%s: TLS handshake with %s failed: %s", self._connections.name,
                 self._client() or "a local socket", _handshake_failure(error))
        if self._implicit_tls:
            # No session began: nothing of aiosmtpd's to stop, only our place to free.
            raw = self._original_transport  # type: ignore[attr-defined]
            if raw is not None and not raw.is_closing():
                raw.close()
            self._gone()

    def _client(self) -> str | None:
        session = self.session  # type: ignore[attr-defined]
        return peer_host(session.peer) if session is not None else self._peer_host

    def _owe_handshake(self) -> None:
        self._phase = _Phase.COMMAND
        self._wait(self._timeouts.command, Cause.COMMAND, evictable=True)

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            # Logged once by _handshake_done; aiosmtpd closes without a reply.
            return TRY_LATER_NOW
        return await super().handle_exception(error)  # type: ignore[misc,no-any-return]

    def eof_received(self) -> bool:
        """The client is gone: aiosmtpd stops the session's task, and the
        connection is closed here. aiosmtpd would keep it half open, and under
        uvloop an EOF that came before the task first ran (a client that
        connects and closes, as a TCP health check does) left it open for good,
        counted against the client's cap until the idle timeout."""
        super().eof_received()  # type: ignore[misc]
        return False

    def data_received(self, data: bytes) -> None:
        if self._first:
            self._first = False
            if not self._proxied and data.startswith(PROXY_SIGNATURES):
                self._connections.expire(self.tracked, Cause.PROXY)
                return
        if self._phase == _Phase.AWAITING:
            self._phase = _Phase.COMMAND  # the command's deadline does not move again
            self._wait(self._timeouts.command, Cause.COMMAND, evictable=True)
        self.tracked.got(len(data))
        super().data_received(data)  # type: ignore[misc]
        if self._phase == _Phase.DATA and not self._budget.add(self, len(data)):
            self._hold()

    def _hold(self) -> None:
        """Stop reading until the listener has room for more message data."""
        self.transport.pause_reading()  # type: ignore[attr-defined]
        # asyncio's StreamReader resumes a transport it paused itself as soon
        # as its buffer drains, which would let a packet in at every line read;
        # told it paused nothing, it leaves this pause alone.
        reader = getattr(self, "_reader", None)
        if reader is not None:
            reader._paused = False
        self.tracked.busy()  # our wait, not the client's
        self._budget.hold(self, self._go_on)

    def _go_on(self) -> None:
        transport = self.transport  # type: ignore[attr-defined]
        if transport is not None and not transport.is_closing():
            transport.resume_reading()
            self.tracked.wait(self._timeouts.data, Cause.DATA)

    def pause_writing(self) -> None:
        self.tracked.stalled(True)
        super().pause_writing()  # type: ignore[misc]

    def resume_writing(self) -> None:
        self.tracked.stalled(False)
        super().resume_writing()  # type: ignore[misc]

    async def smtp_PROXY(self, arg: str | None) -> None:
        """A PROXY line as a command (not the connection's first bytes, or sent
        in pieces): never believed, refused like a header from an untrusted peer."""
        self._connections.expire(self.tracked, Cause.PROXY)

    def proxied_for(self, data: ProxyData) -> bool:
        """A trusted proxy's header has come: its client becomes the session's
        peer (False: refused, over that client's cap, and answered)."""
        source = data.src_addr
        if (data.command == V2_CMD.LOCAL or data.family not in (AF.INET, AF.INET6)
                or source is None or isinstance(source, (bytes, bytearray))):
            return True  # the proxy's own connection (a health check): its address stays
        peer = (str(source), data.src_port or 0)
        refusal = self._connections.rekey(self.tracked, peer)
        if refusal is not None:
            hang_up(self.transport, REFUSED[refusal].encode() + b"\r\n")  # type: ignore[attr-defined]
            return False
        self.session.peer = peer  # type: ignore[attr-defined]
        return True

    @syntax("DATA")
    async def smtp_DATA(self, arg: str | None) -> None:
        """aiosmtpd's DATA, its data read a block at a time (gateway/smtp_data.py)
        rather than a line at a time; its checks, replies and hook as they were."""
        smtp: Any = self  # aiosmtpd's own members
        assert not smtp._decode_data  # the content stays bytes, as below
        if await smtp.check_helo_needed() or await smtp.check_auth_needed("DATA"):
            return
        if not smtp.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            data = await read_data(smtp._reader, size_limit=smtp.data_size_limit,
                                   line_limit=smtp.line_length_limit)
        except asyncio.CancelledError:  # the connection went during DATA
            log.info("Connection lost during DATA")
            smtp._writer.close()
            raise
        if isinstance(data, str):  # refused, now that all of it was read
            await self.push(data)
            smtp._set_post_data_state()
            return
        # Our sessions keep aiosmtpd's decode_data=False: the handler takes the
        # bytes as they came (gateway/smtp.py IntakeHandler.handle_DATA).
        smtp.envelope.content = smtp.envelope.original_content = data
        status = await smtp._call_handler_hook("DATA")
        smtp._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    def storing(self) -> None:
        """The message is in: storing it is our time, not the client's."""
        self._phase = _Phase.STORING
        self.tracked.busy()

    async def push(self, status: Any) -> None:
        if isinstance(status, str):
            if status in _REWRITES:  # aiosmtpd refused a message as too large
                self.event_handler.counts.refused("too_large")  # type: ignore[attr-defined]
            status = _REWRITES.get(status, status)
        if isinstance(status, str) and status.startswith("354"):
            self._phase = _Phase.DATA
            self.tracked.wait(self._timeouts.data, Cause.DATA)
        elif status == READY_FOR_TLS:
            self._owe_handshake()
        else:
            self._budget.release(self)  # the message, if any, is stored or refused
            self._await_command()
        await super().push(status)  # type: ignore[misc]

    def _await_command(self) -> None:
        self._phase = _Phase.AWAITING
        self._wait(self._timeouts.idle, Cause.IDLE, evictable=True)

    def _wait(self, seconds: float, cause: Cause, *, evictable: bool) -> None:
        """Wait `seconds` for `cause`, or less when the session's time runs out first."""
        left = self._session_ends - time.monotonic()
        if left < seconds:
            seconds, cause = max(0.0, left), Cause.SESSION
        self.tracked.wait(seconds, cause, evictable=evictable)

    def _cut(self, cause: Cause) -> None:
        self.close_with(GOODBYES.get(cause))

    def close_with(self, goodbye: str | None) -> None:
        """Say `goodbye` where the client can read it, and close."""
        if self._tls_protocol is not None and not self._secured:  # type: ignore[attr-defined]
            # Mid-handshake nothing can be said, in the clear or in TLS.
            raw = self._original_transport  # type: ignore[attr-defined]
            if raw is not None:
                hang_up(raw)
            return
        transport = self.transport  # type: ignore[attr-defined]
        if transport is not None:
            hang_up(transport, goodbye.encode() + b"\r\n" if goodbye else b"")

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd runs every path through the email header parser and builds a
        # class per call: a fifth of the server's CPU. Plain paths are matched
        # here with the same result; anything unusual still goes the long way.
        match = _SIMPLE_PATH.match(arg)
        if match is not None and not arg.startswith("(", match.end()):
            return match.group(1), arg[match.end():]
        return super()._getaddr(arg)  # type: ignore[misc,no-any-return]


def _handshake_failure(error: BaseException | None) -> str:
    """A failed handshake's cause, for one log line (no traceback: it is the client's)."""
    if error is None:
        return "closed before it was done"
    if isinstance(error, ssl.SSLError):
        return str(error.reason or error)
    if isinstance(error, ConnectionResetError):
        return "the client closed the connection"
    return str(error) or type(error).__name__


class IntakeSMTP(_IntakeSession, SMTP):
    smtp_HELO = _refusing_nul(SMTP.smtp_HELO)
    smtp_EHLO = _refusing_nul(SMTP.smtp_EHLO)


class IntakeLMTP(_IntakeSession, LMTP):
    smtp_LHLO = _refusing_nul(LMTP.smtp_LHLO)


@dataclass(frozen=True, kw_only=True)
class SessionTimeouts:
    """What a session's client has, in seconds, for each thing it owes us."""

    idle: float
    command: float
    data: float
    session: float

    @classmethod
    def of(cls, config: Config) -> SessionTimeouts:
        smtp = config.smtp
        return cls(idle=smtp.timeout_seconds, command=smtp.command_timeout_seconds,
                   data=smtp.data_timeout_seconds, session=smtp.session_timeout_seconds)

    @property
    def longest(self) -> float:
        return max(self.idle, self.command, self.data, self.session)

    @property
    def shortest(self) -> float:
        return min(self.idle, self.command, self.data, self.session)


class IntakeHandler:
    """aiosmtpd hooks for one listener (SMTP or LMTP)."""

    def __init__(self, *, config: Config, submit: Submit, channel: str,
                 listener: str | None = None) -> None:
        self._config = config
        self._submit = submit
        self._channel = channel  # the inbox's: smtp (the smtps listener's too) or lmtp
        self._listener = listener or channel  # smtp, lmtp or smtps: whose policy applies
        self.in_flight = 0
        self.counts = metrics.intake(channel)  # bound once: a count is one .inc()

    async def handle_PROXY(self, server: SMTP, session: Session, envelope: Envelope,
                           proxy_data: ProxyData) -> bool:
        """aiosmtpd read a valid PROXY header (only sessions from a trusted proxy
        wait for one; an invalid one closes the connection before this)."""
        return isinstance(server, _IntakeSession) and server.proxied_for(proxy_data)

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        """EHLO's (and LHLO's) answer without AUTH, which aiosmtpd offers once
        TLS is up: there is no login here, and a client holding credentials
        for this host would try them and defer its mail on the refusal."""
        session.host_name = hostname  # the hook's to set (aiosmtpd leaves it)
        return [line for line in responses if not line[4:].upper().startswith("AUTH")]

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        if _CONTROL.search(address):
            return BAD_SENDER
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return SENDER_OK

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if _CONTROL.search(address):
            return BAD_RECIPIENT
        if len(envelope.rcpt_tos) >= self._config.intake.max_recipients:
            return TOO_MANY_RECIPIENTS
        if not self._config.accepts(address):
            logs.item("refused", reference=None, channel=self._channel,
                      outcome=NO_SUCH_USER[:9])  # the address itself only at DEBUG
            self.counts.refused("unknown_recipient")
            log.debug("recipient refused: %s", address)
            return NO_SUCH_USER
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return OK_RECIPIENT

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if has_bare_line_ending(raw):
            logs.item("refused", reference=None, channel=self._channel,
                      outcome=BARE_LINE_ENDING[:9])
            self.counts.refused("bare_line_ending")
            return self._per_recipient(envelope, BARE_LINE_ENDING)
        meta: dict[str, Any] = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "peer": list(session.peer) if isinstance(session.peer, tuple) else session.peer,
            "helo": session.host_name,
            "listener": self._listener,
        }
        transport = server.transport
        tls = described(transport.get_extra_info("ssl_object") if transport else None)
        if tls is not None:
            meta["tls"] = tls
        if isinstance(server, _IntakeSession):
            server.storing()
        self.in_flight += 1
        try:
            accepted = await self._submit(NewItem(self._channel, raw, meta))
        except Exception as exc:  # noqa: BLE001 - every failure gets its answer here
            reply = _reply_for(exc)
            logs.item("refused", reference=None, channel=self._channel, outcome=reply[:9])
            self.counts.failed() if reply == TRY_LATER else self.counts.refused("unstorable")
            return self._per_recipient(envelope, reply)
        finally:
            self.in_flight -= 1
        logs.item("accepted", reference=accepted.reference, channel=self._channel,
                  outcome="250")
        self.counts.accepted(len(raw))
        return self._per_recipient(envelope, f"250 2.0.0 Accepted as {accepted.reference}")

    def _per_recipient(self, envelope: Envelope, reply: str) -> str:
        # LMTP answers DATA once per accepted recipient (RFC 2033 4.2).
        if self._channel == "lmtp":
            return "\r\n".join([reply] * max(1, len(envelope.rcpt_tos)))
        return reply


class _Gate(asyncio.Protocol):
    """What a listener's socket accepts first: a connection over a cap is told
    421 and closed before any session is made (aiosmtpd's takes about 0.4 ms,
    the cost a flood would make us pay); one admitted is handed to its session."""

    def __init__(self, listener: SmtpListener) -> None:
        self._listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        listener = self._listener
        peer = transport.get_extra_info("peername")
        proxied = listener.proxies.trusts(peer_host(peer))
        admitted = listener.connections.admit(peer, cut=_not_yet, per_client=not proxied)
        if isinstance(admitted, Refusal):
            hang_up(transport, listener.in_the_clear(REFUSED[admitted]))
            return
        try:
            session = listener.session(admitted, proxied=proxied)
        except Exception:
            listener.connections.release(admitted)
            hang_up(transport, listener.in_the_clear(TRY_LATER_NOW))
            raise
        transport.set_protocol(session)
        session.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        pass  # a refused client's command: nobody is listening

    def eof_received(self) -> bool:
        return False


def _not_yet(cause: Cause) -> None:
    """A connection's cut before its session is made (it is made at once)."""


class SmtpListener:
    """One listening socket and the sessions it has open: `smtp`, `lmtp`, or
    `smtps` (`implicit_tls`). With `tls` the first two offer STARTTLS."""

    def __init__(self, *, config: Config, submit: Submit, lmtp: bool = False,
                 implicit_tls: bool = False, tls: ServerTls | None = None) -> None:
        if implicit_tls and (tls is None or lmtp):
            raise ValueError("the implicit-TLS listener is SMTP, and needs [smtp.tls]")
        self.config = config
        self.name = "lmtp" if lmtp else "smtps" if implicit_tls else "smtp"
        self.tls = tls  # its context in force is read per session: a reload applies to new ones
        self.tls_counts = TlsCounts()
        self._implicit_tls = implicit_tls
        self._require_tls = config.smtp.policy_of(self.name).require_tls and tls is not None
        self.handler = IntakeHandler(config=config, submit=submit,
                                     channel="lmtp" if lmtp else "smtp", listener=self.name)
        self._cls = IntakeLMTP if lmtp else IntakeSMTP
        self._sessions: set[SMTP] = set()
        self._server: asyncio.base_events.Server | None = None
        self._timeouts = SessionTimeouts.of(config)
        self.budget = DataBudget(config.smtp.data_in_flight_bytes)
        # Whose connections begin with a PROXY header naming the client.
        # (Not on smtps: the header would come before the handshake; not read there.)
        self.proxies = TrustedProxies([] if implicit_tls else config.smtp.proxy_protocol_from)
        # Its caps, deadlines and counts (`refused`, `cut`) for tests and metrics.
        self.connections = Connections(
            name=self.name,
            caps=Caps(total=config.smtp.max_connections,
                      per_client=config.smtp.max_connections_per_client),
            # Replies are a few bytes: a client not reading them is as slow as
            # one not finishing its command.
            send_timeout=self._timeouts.command,
            shortest_timeout=self._timeouts.shortest)

    def _factory(self) -> asyncio.Protocol:
        return _Gate(self)

    def in_the_clear(self, reply: str) -> bytes:
        """`reply` as sent before any session: nothing on smtps, whose client
        expects a TLS handshake and would read it as a broken one."""
        return b"" if self._implicit_tls else reply.encode() + b"\r\n"

    def session(self, tracked: Connection, *, proxied: bool = False) -> SMTP:
        """A session for an admitted connection (`proxied`: from a trusted proxy)."""
        session = self._cls(
            self.handler,
            connections=self.connections,
            tracked=tracked,
            timeouts=self._timeouts,
            budget=self.budget,
            proxied=proxied,
            implicit_tls=self._implicit_tls,
            require_tls=self._require_tls,
            tls_counts=self.tls_counts,
            forget=self._sessions.discard,
            tls_context=self.tls.context if self.tls is not None else None,
            data_size_limit=self.config.intake.max_message_bytes,
            enable_SMTPUTF8=True,
            hostname=self.config.smtp.hostname,
            # aiosmtpd's own timer (reset at each command, and running through
            # DATA and storing) is only a backstop: the deadlines above rule.
            timeout=self._timeouts.longest * 2,
        )
        self._sessions.add(session)
        return session

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> tuple[str, int]:
        """Listen; `reuse_port`: beside other worker processes on the same port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._factory, host, port,
                                                backlog=LISTEN_BACKLOG,
                                                reuse_port=reuse_port or None)
        self.connections.start()
        sockname = self._server.sockets[0].getsockname()
        return sockname[0], sockname[1]

    async def stop(self, grace: float) -> None:
        """Stop accepting; let open transactions finish (bounded), then hang up.

        A session between transactions is told 421 and closed at once; one
        with a MAIL FROM given (mid-transaction, or storing its DATA) gets up to
        `grace` seconds to finish and receive its answer.
        """
        if self._server is None:
            return
        self._server.close()
        self.connections.stop()
        deadline = asyncio.get_running_loop().time() + grace
        while self._sessions:
            expired = asyncio.get_running_loop().time() >= deadline
            for session in list(self._sessions):
                busy = session.envelope is not None and session.envelope.mail_from is not None
                if expired or not busy:
                    self._hang_up(session)
            if self._sessions and not expired:
                await asyncio.sleep(0.05)
        if self.handler.in_flight:
            log.warning("%d SMTP transactions still storing at shutdown",
                        self.handler.in_flight)
        await self._server.wait_closed()

    def _hang_up(self, session: SMTP) -> None:
        self._sessions.discard(session)
        if isinstance(session, _IntakeSession):
            session.close_with(SHUTTING_DOWN)
