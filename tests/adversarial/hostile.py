"""What the poisoning tests share: raw SMTP and HTTP clients that can send any
byte, the hostile envelope and header variants, and checks of what was stored.

smtplib and aiohttp refuse to send most of what an attacker sends (NUL, bytes
that are not UTF-8), so these clients write the bytes themselves. Every read
is bounded by a timeout, and they talk to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import base64
import email.policy
import json
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.lifecycle import ItemState
from storage.models import inbox_items, requests
from storage.storable import EXACT

TIMEOUT = 10.0


def mail(subject: str = "Printer on fire", sender: str = "alice@example.com",
         message_id: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Alice <{sender}>"
    msg["To"] = "support@localhost"
    msg["Subject"] = subject
    if message_id:
        msg["Message-ID"] = message_id
    msg.set_content("It is burning.")
    return msg.as_bytes(policy=email.policy.SMTP)


class SmtpSession:
    """One SMTP session over a socket, commands sent as raw bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> SmtpSession:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), TIMEOUT)
        session = cls(reader, writer)
        await session._reply()  # the greeting
        return session

    async def _reply(self) -> str:
        """The last line of a (possibly multi-line) reply, e.g. '250 2.0.0 ...'."""
        while True:
            line = await asyncio.wait_for(self._reader.readline(), TIMEOUT)
            if not line:
                return "(closed)"
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            if len(text) < 4 or text[3] != "-":
                return text

    async def command(self, line: bytes) -> str:
        self._writer.write(line + b"\r\n")
        return await self._reply()

    async def data(self, content: bytes) -> str:
        reply = await self.command(b"DATA")
        if not reply.startswith("354"):
            return reply
        stuffed = b"\r\n".join(b"." + x if x.startswith(b".") else x
                               for x in content.split(b"\r\n"))
        if not stuffed.endswith(b"\r\n"):
            stuffed += b"\r\n"
        self._writer.write(stuffed + b".\r\n")
        return await self._reply()

    async def send(self, mail_from: bytes, rcpt: bytes, content: bytes) -> list[str]:
        """One transaction; the replies to MAIL, RCPT and DATA (fewer if one fails)."""
        replies = [await self.command(b"MAIL FROM:" + mail_from)]
        if not replies[-1].startswith("250"):
            return replies
        replies.append(await self.command(b"RCPT TO:" + rcpt))
        if not replies[-1].startswith("250"):
            await self.command(b"RSET")
            return replies
        replies.append(await self.data(content))
        return replies

    async def close(self) -> None:
        try:
            self._writer.write(b"QUIT\r\n")
            self._writer.close()
            await asyncio.wait_for(self._writer.wait_closed(), TIMEOUT)
        except (OSError, TimeoutError):
            pass


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def http_raw(port: int, method: str, path: str, body: bytes = b"",
                   headers: dict[str, bytes] | None = None) -> HttpAnswer:
    """One HTTP/1.1 request with header values sent as the given bytes."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close",
             b"Content-Length: " + str(len(body)).encode()]
    lines += [name.encode() + b": " + value for name, value in (headers or {}).items()]
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)
    try:
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        answer = await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()
    head, _, rest = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return HttpAnswer(status, rest)


def api_body(subject: str = "VPN down", **custom: Any) -> bytes:
    return json.dumps({"requester": {"email": "bob@example.com", "name": "Bob"},
                       "subject": subject, "body": "Cannot connect.",
                       "custom_fields": custom}).encode()


# --- hostile envelopes -------------------------------------------------------------
# (HELO argument, MAIL FROM argument, RCPT TO argument, the reply wanted first).
# "250" means accepted and stored: the envelope is merely unusual.

@dataclass(frozen=True, slots=True)
class Envelope:
    name: str
    helo: bytes
    mail_from: bytes
    rcpt: bytes
    wanted: str  # the first reply code that is not 250 ("250": all accepted)
    smtputf8: bool = False


GOOD_RCPT = b"<support@localhost>"
ENVELOPES = [
    Envelope("NUL in EHLO", b"evil\x00.example", b"<a@example.com>", GOOD_RCPT, "500"),
    Envelope("NUL in MAIL FROM", b"x.example", b"<a\x00b@example.com>", GOOD_RCPT, "500"),
    Envelope("NUL in a quoted local part", b"x.example", b'<"a\x00"@example.com>',
             GOOD_RCPT, "500"),
    Envelope("NUL in a MAIL parameter", b"x.example", b"<a@example.com> BODY=8BITMIME\x00",
             GOOD_RCPT, "500"),
    Envelope("NUL in RCPT TO", b"x.example", b"<a@example.com>",
             b"<x\x00@help.example>", "500"),
    Envelope("control character in MAIL FROM", b"x.example", b"<a\x01b@example.com>",
             GOOD_RCPT, "553"),
    Envelope("DEL in MAIL FROM", b"x.example", b"<a\x7fb@example.com>", GOOD_RCPT, "553"),
    Envelope("control character in RCPT TO", b"x.example", b"<a@example.com>",
             b"<x\x1b@help.example>", "553"),
    Envelope("8-bit (latin-1) MAIL FROM", b"x.example", b"<j\xf6rg@example.com>",
             GOOD_RCPT, "250"),
    Envelope("8-bit EHLO", b"h\xf6st.example", b"<a@example.com>", GOOD_RCPT, "250"),
    Envelope("8-bit RCPT TO on our domain", b"x.example", b"<a@example.com>",
             b"<\xff\xfe@help.example>", "250"),
    Envelope("UTF-8 surrogate bytes (CESU-8) in MAIL FROM", b"x.example",
             b"<\xed\xa0\x80@example.com>", GOOD_RCPT, "250"),
    Envelope("SMTPUTF8 address", b"x.example", "<jörg@exämple.de> SMTPUTF8".encode(),
             GOOD_RCPT, "250", smtputf8=True),
    Envelope("control character in EHLO", b"h\x01st", b"<a@example.com>", GOOD_RCPT, "250"),
]


async def run_envelope(port: int, envelope: Envelope, content: bytes) -> list[str]:
    """The replies to EHLO, MAIL, RCPT and DATA (as far as it got)."""
    session = await SmtpSession.open(port)
    try:
        replies = [await session.command(b"EHLO " + envelope.helo)]
        if not replies[0].startswith("250"):
            return replies
        return replies + await session.send(envelope.mail_from, envelope.rcpt, content)
    finally:
        await session.close()


# --- hostile HTTP headers ------------------------------------------------------------
HEADERS: dict[str, dict[str, bytes]] = {
    "User-Agent not UTF-8": {"User-Agent": b"Mozilla/5.0 \xff\xfe\xfd"},
    "User-Agent with CESU-8 surrogates": {"User-Agent": b"agent \xed\xa0\x80\xed\xbf\xbf"},
    "User-Agent with a NUL": {"User-Agent": b"agent\x00evil"},
    "User-Agent with a control character": {"User-Agent": b"agent\x01evil"},
    "Content-Type not UTF-8": {"Content-Type": b"application/json; charset=\xff"},
    "Origin not UTF-8": {"Origin": b"https://\xe9vil.example"},
    "a long User-Agent": {"User-Agent": b"x" * 8000},
}


# --- what was stored -------------------------------------------------------------------

async def stored_meta(engine: AsyncEngine, item_id: int) -> dict[str, Any]:
    async with engine.connect() as conn:
        meta = (await conn.execute(select(inbox_items.c.meta)
                                   .where(inbox_items.c.id == item_id))).scalar_one()
    return dict(meta)


def exact(meta: dict[str, Any], pointer: str) -> bytes | None:
    """The exact bytes kept for a field, if its text could not hold them."""
    found = meta.get(EXACT, {}).get(pointer)
    return None if found is None else base64.b64decode(found)


async def item_outcome(engine: AsyncEngine, item_id: int) -> tuple[str, str | None, bool]:
    """The item's state, its last error, and whether it made a request."""
    async with engine.connect() as conn:
        state, error = (await conn.execute(
            select(inbox_items.c.state, inbox_items.c.last_error)
            .where(inbox_items.c.id == item_id))).one()
        made = (await conn.execute(select(requests.c.id).where(
            requests.c.inbox_item_id == item_id))).first() is not None
    return state, error, made


async def processed(engine: AsyncEngine, item_id: int) -> bool:
    """The item was turned into a request (or a message on one): it is done."""
    state, _, _ = await item_outcome(engine, item_id)
    return state == ItemState.DONE
