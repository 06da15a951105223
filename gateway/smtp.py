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
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.proxy_protocol import AF, V2_CMD, V2_SIGNATURE, ProxyData
from aiosmtpd.smtp import SMTP, Envelope, Session

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


class _IntakeSession:
    """What our sessions change in aiosmtpd's SMTP class: the NUL checks, the
    replies, and the listener's caps and deadlines (`tracked`)."""

    # The commands whose arguments are stored (session.host_name, the envelope).
    smtp_MAIL = _refusing_nul(SMTP.smtp_MAIL)
    smtp_RCPT = _refusing_nul(SMTP.smtp_RCPT)

    def __init__(self, handler: Any, *, connections: Connections, tracked: Connection,
                 timeouts: SessionTimeouts, budget: DataBudget, proxied: bool = False,
                 **kwargs: Any) -> None:
        if proxied:
            # aiosmtpd's own timer for the header, a backstop like the one below.
            kwargs["proxy_protocol_timeout"] = max(3.0, timeouts.longest * 2)
        super().__init__(handler, **kwargs)  # type: ignore[call-arg]
        self._connections = connections
        self._proxied = proxied  # from a trusted proxy: a PROXY header comes first
        self._first = True  # no byte received yet
        self._budget = budget  # the listener's message data in flight
        self._timeouts = timeouts
        self.tracked = tracked  # admitted by the listener's gate (`_Gate`)
        tracked.cut = self._cut
        self._phase = _Phase.AWAITING
        self._session_ends = math.inf

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._session_ends == math.inf:  # not STARTTLS's second call
            self._session_ends = time.monotonic() + self._timeouts.session
            if self._proxied:  # the header is owed at once, like a command begun
                self._phase = _Phase.COMMAND
                self._wait(self._timeouts.command, Cause.COMMAND, evictable=True)
            else:
                self._await_command()
        super().connection_made(transport)  # type: ignore[misc]

    def connection_lost(self, error: Exception | None) -> None:
        self._connections.release(self.tracked)
        self._budget.release(self)
        super().connection_lost(error)  # type: ignore[misc]

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
        transport = self.transport  # type: ignore[attr-defined]
        if transport is None:
            return
        goodbye = GOODBYES.get(cause)
        hang_up(transport, goodbye.encode() + b"\r\n" if goodbye else b"")

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd runs every path through the email header parser and builds a
        # class per call: a fifth of the server's CPU. Plain paths are matched
        # here with the same result; anything unusual still goes the long way.
        match = _SIMPLE_PATH.match(arg)
        if match is not None and not arg.startswith("(", match.end()):
            return match.group(1), arg[match.end():]
        return super()._getaddr(arg)  # type: ignore[misc,no-any-return]


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

    def __init__(self, *, config: Config, submit: Submit, channel: str) -> None:
        self._config = config
        self._submit = submit
        self._channel = channel
        self.in_flight = 0
        self.counts = metrics.intake(channel)  # bound once: a count is one .inc()

    async def handle_PROXY(self, server: SMTP, session: Session, envelope: Envelope,
                           proxy_data: ProxyData) -> bool:
        """aiosmtpd read a valid PROXY header (only sessions from a trusted proxy
        wait for one; an invalid one closes the connection before this)."""
        return isinstance(server, _IntakeSession) and server.proxied_for(proxy_data)

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
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "peer": list(session.peer) if isinstance(session.peer, tuple) else session.peer,
            "helo": session.host_name,
        }
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
            hang_up(transport, REFUSED[admitted].encode() + b"\r\n")
            return
        try:
            session = listener.session(admitted, proxied=proxied)
        except Exception:
            listener.connections.release(admitted)
            hang_up(transport, TRY_LATER_NOW.encode() + b"\r\n")
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
    """One listening socket and the sessions it has open."""

    def __init__(self, *, config: Config, submit: Submit, lmtp: bool = False) -> None:
        self.config = config
        self.handler = IntakeHandler(config=config, submit=submit,
                                     channel="lmtp" if lmtp else "smtp")
        self._cls = IntakeLMTP if lmtp else IntakeSMTP
        self._sessions: set[SMTP] = set()
        self._server: asyncio.base_events.Server | None = None
        self._timeouts = SessionTimeouts.of(config)
        self.budget = DataBudget(config.smtp.data_in_flight_bytes)
        # Whose connections begin with a PROXY header naming the client.
        self.proxies = TrustedProxies(config.smtp.proxy_protocol_from)
        # Its caps, deadlines and counts (`refused`, `cut`) for tests and metrics.
        self.connections = Connections(
            name="lmtp" if lmtp else "smtp",
            caps=Caps(total=config.smtp.max_connections,
                      per_client=config.smtp.max_connections_per_client),
            # Replies are a few bytes: a client not reading them is as slow as
            # one not finishing its command.
            send_timeout=self._timeouts.command,
            shortest_timeout=self._timeouts.shortest)

    def _factory(self) -> asyncio.Protocol:
        return _Gate(self)

    def session(self, tracked: Connection, *, proxied: bool = False) -> SMTP:
        """A session for an admitted connection (`proxied`: from a trusted proxy)."""
        session = self._cls(
            self.handler,
            connections=self.connections,
            tracked=tracked,
            timeouts=self._timeouts,
            budget=self.budget,
            proxied=proxied,
            data_size_limit=self.config.intake.max_message_bytes,
            enable_SMTPUTF8=True,
            hostname=self.config.smtp.hostname,
            # aiosmtpd's own timer (reset at each command, and running through
            # DATA and storing) is only a backstop: the deadlines above rule.
            timeout=self._timeouts.longest * 2,
        )
        self._sessions.add(session)
        original = session.connection_lost

        def connection_lost(error: Exception | None) -> None:
            self._sessions.discard(session)
            original(error)

        session.connection_lost = connection_lost  # type: ignore[method-assign]
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
        transport = session.transport
        if transport is not None and not transport.is_closing():
            transport.write(SHUTTING_DOWN.encode() + b"\r\n")
            transport.close()
