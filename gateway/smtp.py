"""SMTP and LMTP intake (aiosmtpd): decide, commit, answer with a constant.

The handler is thin on purpose: check the recipient, refuse what RFC 5321
forbids, hand the exact bytes to the inbox writer and answer 250 only once
they are committed. Any fault of ours answers 451 4.3.0 so the sender retries.

What the envelope carries reaches storage too, so what RFC 5321 forbids in it
is refused at the command: a NUL anywhere in HELO, EHLO, LHLO, MAIL or RCPT,
and control characters in a path (its grammar has none). What is merely
unusual (8-bit bytes that are not UTF-8, from an old MTA) is accepted; the
inbox keeps its exact bytes (storage/storable.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from domain.errors import GatewayError
from gateway.config import Config
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


class _IntakeSession:
    """What our sessions change in aiosmtpd's SMTP class."""

    # The commands whose arguments are stored (session.host_name, the envelope).
    smtp_MAIL = _refusing_nul(SMTP.smtp_MAIL)
    smtp_RCPT = _refusing_nul(SMTP.smtp_RCPT)

    async def push(self, status: Any) -> None:
        if isinstance(status, str):
            status = _REWRITES.get(status, status)
        await super().push(status)  # type: ignore[misc]

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


class IntakeHandler:
    """aiosmtpd hooks for one listener (SMTP or LMTP)."""

    def __init__(self, *, config: Config, submit: Submit, channel: str) -> None:
        self._config = config
        self._submit = submit
        self._channel = channel
        self.in_flight = 0

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
            return NO_SUCH_USER
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return OK_RECIPIENT

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if has_bare_line_ending(raw):
            return self._per_recipient(envelope, BARE_LINE_ENDING)
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "peer": list(session.peer) if isinstance(session.peer, tuple) else session.peer,
            "helo": session.host_name,
        }
        self.in_flight += 1
        try:
            accepted = await self._submit(NewItem(self._channel, raw, meta))
        except Exception as exc:  # noqa: BLE001 - every failure gets its answer here
            return self._per_recipient(envelope, _reply_for(exc))
        finally:
            self.in_flight -= 1
        return self._per_recipient(envelope, f"250 2.0.0 Accepted as {accepted.reference}")

    def _per_recipient(self, envelope: Envelope, reply: str) -> str:
        # LMTP answers DATA once per accepted recipient (RFC 2033 4.2).
        if self._channel == "lmtp":
            return "\r\n".join([reply] * max(1, len(envelope.rcpt_tos)))
        return reply


class SmtpListener:
    """One listening socket and the sessions it has open."""

    def __init__(self, *, config: Config, submit: Submit, lmtp: bool = False) -> None:
        self.config = config
        self.handler = IntakeHandler(config=config, submit=submit,
                                     channel="lmtp" if lmtp else "smtp")
        self._cls = IntakeLMTP if lmtp else IntakeSMTP
        self._sessions: set[SMTP] = set()
        self._server: asyncio.base_events.Server | None = None

    def _factory(self) -> SMTP:
        session = self._cls(
            self.handler,
            data_size_limit=self.config.intake.max_message_bytes,
            enable_SMTPUTF8=True,
            hostname=self.config.smtp.hostname,
            timeout=self.config.smtp.timeout_seconds,
        )
        self._sessions.add(session)
        original = session.connection_lost

        def connection_lost(error: Exception | None) -> None:
            self._sessions.discard(session)
            original(error)

        session.connection_lost = connection_lost  # type: ignore[method-assign]
        return session

    async def start(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._factory, host, port)
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
