"""Real SMTP and LMTP sessions (smtplib) against the running gateway."""

from __future__ import annotations

import asyncio
import email.policy
import smtplib
import socket
from email.message import EmailMessage

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import Gateway
from storage import queries
from storage.models import inbox_items, messages, requests
from tests.helpers import count_rows, wait_for


def _mail(subject: str = "Printer on fire", body: str = "It is burning.\n",
          message_id: str = "<m1@example.com>", to: str = "support@localhost") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Alice Example <alice@example.com>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    msg.set_content(body)
    return msg.as_bytes(policy=email.policy.SMTP)  # CRLF line endings, as on the wire


def _send(port: int, rcpts: list[str], data: bytes, **kwargs: object) -> dict[str, object]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        return client.sendmail("alice@example.com", rcpts, data, **kwargs)  # type: ignore[arg-type]


async def _request_for(engine: AsyncEngine, message_id: str) -> list[dict[str, object]]:
    return await queries.find_by_message_id(engine, message_id)


async def test_smtp__accepted_mail_becomes_request(gateway: Gateway, engine: AsyncEngine) -> None:
    refused = await asyncio.to_thread(_send, gateway.smtp_port, ["support@localhost"], _mail())
    assert refused == {}
    found = await wait_for(lambda: _request_for(engine, "<m1@example.com>"))
    request = await queries.get_request(engine, found[0]["reference"])
    assert request is not None
    assert request["subject"] == "Printer on fire"
    assert request["queue"] == "general"
    assert request["requester"] == {"email": "alice@example.com", "name": "Alice Example"}
    assert request["messages"][0]["text"].strip() == "It is burning."
    assert [e["kind"] for e in request["timeline"]] == [
        "received", "threaded", "parsed", "classified", "routed", "acknowledgement",
        "acknowledgement_queued"]


async def test_smtp__250_names_the_reference(gateway: Gateway, engine: AsyncEngine) -> None:
    def session() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=10) as client:
            client.ehlo()
            client.mail("alice@example.com")
            client.rcpt("support@localhost")
            return client.data(_mail(message_id="<ref@example.com>"))

    code, reply = await asyncio.to_thread(session)
    assert code == 250
    assert reply.startswith(b"2.0.0 Accepted as ")
    reference = reply.split()[-1].decode()
    found = await wait_for(lambda: _request_for(engine, "<ref@example.com>"))
    assert found[0]["reference"] == reference


async def test_smtp__raw_bytes_kept_exactly(gateway: Gateway, engine: AsyncEngine) -> None:
    data = _mail(body="Zeile mit Umlaut: \u00e4\u00f6\u00fc\n..leading dot line\n")
    await asyncio.to_thread(_send, gateway.smtp_port, ["support@localhost"], data)
    async with engine.connect() as conn:
        raw = (await conn.execute(select(inbox_items.c.raw))).scalar_one()
    # smtplib dot-stuffs on the wire; what is kept is the message, unstuffed.
    assert raw == data


async def test_smtp__unknown_recipient_refused(gateway: Gateway, engine: AsyncEngine) -> None:
    def session() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=10) as client:
            client.ehlo()
            client.mail("alice@example.com")
            return client.rcpt("someone@elsewhere.example")

    code, reply = await asyncio.to_thread(session)
    assert (code, reply[:5]) == (550, b"5.1.1")
    assert await count_rows(engine, inbox_items) == 0


async def test_smtp__configured_domain_accepted(gateway: Gateway, engine: AsyncEngine) -> None:
    refused = await asyncio.to_thread(_send, gateway.smtp_port, ["anyone@help.example"],
                                      _mail(to="anyone@help.example"))
    assert refused == {}
    assert await count_rows(engine, inbox_items) == 1


async def test_smtp__two_of_our_addresses_make_one_request(
        gateway: Gateway, engine: AsyncEngine) -> None:
    data = _mail(message_id="<two@example.com>", to="support@localhost, billing@localhost")
    await asyncio.to_thread(_send, gateway.smtp_port,
                            ["support@localhost", "billing@localhost"], data)
    await wait_for(lambda: _request_for(engine, "<two@example.com>"))
    await asyncio.sleep(0.3)
    assert await count_rows(engine, requests) == 1
    async with engine.connect() as conn:
        inbound = (await conn.execute(select(func.count()).select_from(messages)
                                      .where(messages.c.direction == "in"))).scalar_one()
    assert inbound == 1


async def test_smtp__size_advertised(gateway: Gateway) -> None:
    def session() -> str | None:
        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=10) as client:
            client.ehlo()
            return client.esmtp_features.get("size")

    assert await asyncio.to_thread(session) == "200000"


async def test_smtp__oversize_declared_with_size_refused(
        gateway: Gateway, engine: AsyncEngine) -> None:
    def session() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=10) as client:
            client.ehlo()
            return client.mail("alice@example.com", ["SIZE=300000"])

    code, reply = await asyncio.to_thread(session)
    assert (code, reply[:5]) == (552, b"5.3.4")
    assert await count_rows(engine, inbox_items) == 0


async def test_smtp__oversize_without_size_refused(gateway: Gateway, engine: AsyncEngine) -> None:
    big = _mail(body=("x" * 70 + "\n") * 3000)  # ~213 kB, over the 200 kB limit

    def session() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=10) as client:
            client.ehlo()
            client.mail("alice@example.com")  # no SIZE parameter
            client.rcpt("support@localhost")
            return client.data(big)

    code, reply = await asyncio.to_thread(session)
    assert (code, reply[:5]) == (552, b"5.3.4")
    assert await count_rows(engine, inbox_items) == 0


async def test_smtp__101st_recipient_refused_earlier_kept(
        gateway: Gateway, engine: AsyncEngine) -> None:
    def session() -> tuple[list[int], tuple[int, bytes]]:
        codes = []
        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=10) as client:
            client.ehlo()
            client.mail("alice@example.com")
            for i in range(101):
                codes.append(client.rcpt(f"user{i}@help.example")[0])
            return codes, client.data(_mail(message_id="<many@example.com>"))

    codes, (data_code, _) = await asyncio.to_thread(session)
    assert codes[:100] == [250] * 100
    assert codes[100] == 452
    assert data_code == 250
    async with engine.connect() as conn:
        meta = (await conn.execute(select(inbox_items.c.meta))).scalar_one()
    assert len(meta["rcpt_tos"]) == 100
    assert meta["rcpt_tos"][0] == "user0@help.example"


def _raw_session(port: int, payload: bytes) -> bytes:
    """Speak SMTP by hand, so bare CR/LF reach the server unchanged."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"EHLO test\r\nMAIL FROM:<alice@example.com>\r\n"
                     b"RCPT TO:<support@localhost>\r\nDATA\r\n" + payload + b"QUIT\r\n")
        received = b""
        while not received.endswith(b"221 Bye\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
        return received


@pytest.mark.parametrize(("name", "payload"), [
    ("bare LF before dot ends nothing", b"Subject: a\r\n\r\nhello\n.\r\nMAIL FROM:<x@y>\r\n.\r\n"),
    ("bare LF in header", b"Subject: a\nX-Evil: b\r\n\r\nbody\r\n.\r\n"),
    ("bare CR in header", b"Subject: a\rX-Evil: b\r\n\r\nbody\r\n.\r\n"),
    ("bare CR before dot", b"Subject: a\r\n\r\nhello\r.\r\nbody\r\n.\r\n"),
])
async def test_smtp__bare_line_endings_refused(
        gateway: Gateway, engine: AsyncEngine, name: str, payload: bytes) -> None:
    transcript = await asyncio.to_thread(_raw_session, gateway.smtp_port, payload)
    replies = [line for line in transcript.split(b"\r\n") if line]
    data_replies = [r for r in replies if r[:3] in (b"250", b"550") and b"5.5.2" in r
                    or b"Accepted as" in r]
    assert any(b"550 5.5.2" in r for r in data_replies), transcript
    assert not any(b"Accepted as" in r for r in data_replies), transcript
    # The smuggled MAIL FROM inside the data was never seen as a command.
    assert replies.count(b"250 OK") <= 1, transcript
    assert await count_rows(engine, inbox_items) == 0


async def test_smtp__dot_stuffed_lines_kept(gateway: Gateway, engine: AsyncEngine) -> None:
    payload = b"Subject: dots\r\n\r\n..hidden\r\n.\r\n"
    transcript = await asyncio.to_thread(_raw_session, gateway.smtp_port, payload)
    assert b"Accepted as" in transcript
    async with engine.connect() as conn:
        raw = (await conn.execute(select(inbox_items.c.raw))).scalar_one()
    assert raw == b"Subject: dots\r\n\r\n.hidden\r\n"


async def test_lmtp__one_reply_per_recipient(gateway: Gateway, engine: AsyncEngine) -> None:
    def session() -> bytes:
        with socket.create_connection(("127.0.0.1", gateway.lmtp_port), timeout=10) as sock:
            sock.sendall(b"LHLO mta.example\r\nMAIL FROM:<alice@example.com>\r\n"
                         b"RCPT TO:<support@localhost>\r\nRCPT TO:<billing@localhost>\r\n"
                         b"DATA\r\n" + _mail(message_id="<lmtp@example.com>")
                         + b".\r\nQUIT\r\n")
            received = b""
            while not received.endswith(b"221 Bye\r\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                received += chunk
            return received

    transcript = await asyncio.to_thread(session)
    assert transcript.count(b"250 2.0.0 Accepted as") == 2, transcript
    found = await wait_for(lambda: _request_for(engine, "<lmtp@example.com>"))
    assert len(found) == 1
    async with engine.connect() as conn:
        channel = (await conn.execute(select(inbox_items.c.channel))).scalar_one()
    assert channel == "lmtp"


async def test_smtp__never_relays(gateway: Gateway) -> None:
    def session() -> dict[str, tuple[int, bytes]]:
        try:
            _send(gateway.smtp_port, ["victim@gmail.example"], _mail())
        except smtplib.SMTPRecipientsRefused as exc:
            return exc.recipients  # type: ignore[return-value]
        return {}

    refused = await asyncio.to_thread(session)
    assert refused["victim@gmail.example"][0] == 550


async def test_smtp__nul_bytes_stored_as_replacement_characters(
        gateway: Gateway, engine: AsyncEngine) -> None:
    payload = (b"From: N\x00ul <nul@example.com>\r\nSubject: a\x00b\r\n"
               b"Message-ID: <nul@example.com>\r\n\r\nbody\x00text\r\n.\r\n")
    transcript = await asyncio.to_thread(_raw_session, gateway.smtp_port, payload)
    assert b"Accepted as" in transcript
    found = await wait_for(lambda: _request_for(engine, "nul@example.com"))
    request = await queries.get_request(engine, found[0]["reference"])
    assert request is not None
    assert "\x00" not in request["subject"]
    assert "\x00" not in request["messages"][0]["text"]
    assert "body" in request["messages"][0]["text"]
