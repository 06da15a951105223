"""Acknowledgements and replies through a real SMTP relay (aiosmtpd)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import smtplib
from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import Gateway, start, stop
from storage import queries
from storage.outbox import dead_rows, retry_dead, rows_for
from tests.helpers import make_config, wait_for


class Relay:
    """An SMTP relay on 127.0.0.1 that keeps what it is sent; it can refuse or go down."""

    def __init__(self) -> None:
        self.received: list[EmailMessage] = []
        self.refuse: str | None = None
        self.port = 0
        self._server: asyncio.Server | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            return self.refuse
        message = email.message_from_bytes(envelope.original_content,
                                           policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(message)
        return "250 OK"

    async def up(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: SMTP(self, hostname="relay"),
                                                "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    relay = Relay()
    await relay.up()
    yield relay
    if relay._server is not None:
        relay._server.close()


@pytest.fixture
async def gateway_with_relay(db_url: str, relay: Relay) -> AsyncIterator[Gateway]:
    config = make_config(db_url, outbound={
        "relay": f"127.0.0.1:{relay.port}", "backoff_initial_seconds": 0.05,
        "backoff_max_seconds": 0.2, "max_attempts": 30})
    gateway = await start(config)
    yield gateway
    await stop(gateway, grace=3)


def send(gateway: Gateway, *, subject: str, body: str, message_id: str,
         sender: str = "alice@example.com", extra: str = "") -> str:
    data = (f"From: Alice <{sender}>\r\nTo: support@localhost\r\nSubject: {subject}\r\n"
            f"Message-ID: <{message_id}>\r\n{extra}\r\n{body}\r\n").encode()
    with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=10) as client:
        client.ehlo()
        client.mail(sender)
        client.rcpt("support@localhost")
        code, reply = client.data(data)
    assert code == 250
    return reply.split()[-1].decode()


async def mail_rows(engine: AsyncEngine) -> list[dict[str, Any]]:
    return [r for r in await rows_for(engine) if r["kind"] == "email"]


async def received_count(relay: Relay, count: int, timeout: float = 10) -> None:
    async def enough() -> bool:
        return len(relay.received) >= count

    await wait_for(enough, timeout=timeout)


async def test_outbound__one_acknowledgement_with_threading_headers(
        gateway_with_relay: Gateway, relay: Relay, engine: AsyncEngine) -> None:
    ref = await asyncio.to_thread(send, gateway_with_relay, subject="Printer on fire",
                                  body="It burns.", message_id="c1@example.com")
    await received_count(relay, 1)
    await asyncio.sleep(0.5)  # nothing more comes
    assert len(relay.received) == 1
    ack = relay.received[0]
    assert ack["To"].addresses[0].addr_spec == "alice@example.com"
    assert f"[#{ref}]" in ack["Subject"]
    assert ack["In-Reply-To"] == "<c1@example.com>"
    assert "<c1@example.com>" in ack["References"]
    assert ack["Auto-Submitted"] == "auto-replied"
    request = await queries.get_request(engine, ref)
    assert request is not None
    ours = [m for m in request["messages"] if m["direction"] == "out"][0]
    assert ack["Message-ID"] == f"<{ours['message_id']}>"
    assert ours["message_id"].endswith("@localhost")
    body = ack.get_content()
    assert ref in body and "/v1/status/" in body
    status_token = body.split("/v1/status/")[1].split()[0]
    assert status_token == request["status_token"]

    # The customer answers the acknowledgement: it lands on the same request.
    await asyncio.to_thread(send, gateway_with_relay, subject=f"Re: {ack['Subject']}",
                            body="Also the scanner.", message_id="c2@example.com",
                            extra=f"In-Reply-To: {ack['Message-ID']}\r\n")

    async def answered() -> bool:
        found = await queries.get_request(engine, ref)
        return bool(found and len([m for m in found["messages"] if m["direction"] == "in"]) == 2)

    await wait_for(answered)
    await asyncio.sleep(0.5)
    assert len(relay.received) == 1  # a reply is not acknowledged again


async def test_outbound__out_of_office_reply_gets_no_answer(
        gateway_with_relay: Gateway, relay: Relay, engine: AsyncEngine) -> None:
    await asyncio.to_thread(send, gateway_with_relay, subject="Help", body="please",
                            message_id="o1@example.com")
    await received_count(relay, 1)
    ack = relay.received[0]
    await asyncio.to_thread(send, gateway_with_relay, subject=f"Out of office: {ack['Subject']}",
                            body="Away until Monday.", message_id="o2@example.com",
                            extra=f"In-Reply-To: {ack['Message-ID']}\r\n"
                                  "Auto-Submitted: auto-replied\r\n")
    # And one that threads to nothing: kept, but not answered either.
    await asyncio.to_thread(send, gateway_with_relay, subject="Automatic reply",
                            body="Away.", message_id="o3@example.com",
                            extra="X-Autoreply: yes\r\n")
    await asyncio.sleep(1.5)
    assert len(relay.received) == 1


async def test_outbound__no_acknowledgement_to_no_reply_senders(
        gateway_with_relay: Gateway, relay: Relay) -> None:
    await asyncio.to_thread(send, gateway_with_relay, subject="Your invoice", body="x",
                            message_id="n1@example.com", sender="no-reply@shop.example")
    await asyncio.to_thread(send, gateway_with_relay, subject="Loop", body="x",
                            message_id="n2@example.com", sender="support@localhost")
    await asyncio.sleep(1.5)
    assert relay.received == []


async def test_outbound__relay_down_delays_then_delivers_once(
        gateway_with_relay: Gateway, relay: Relay, engine: AsyncEngine) -> None:
    await relay.down()
    await asyncio.to_thread(send, gateway_with_relay, subject="While down", body="x",
                            message_id="d1@example.com")

    async def attempted() -> bool:
        rows = await mail_rows(engine)
        return bool(rows) and rows[0]["attempts"] >= 2 and rows[0]["state"] != "done"

    await wait_for(attempted)
    await relay.up()  # the same port again
    await received_count(relay, 1)
    await asyncio.sleep(1.0)
    assert len(relay.received) == 1
    [row] = await mail_rows(engine)
    assert row["state"] == "done"


async def test_outbound__refused_mail_is_dead_lettered_then_retried(
        gateway_with_relay: Gateway, relay: Relay, engine: AsyncEngine) -> None:
    relay.refuse = "550 5.1.1 No such user here"
    await asyncio.to_thread(send, gateway_with_relay, subject="Refused", body="x",
                            message_id="r1@example.com")

    async def dead() -> list[dict[str, Any]]:
        return await dead_rows(engine)

    [row] = await wait_for(dead)
    assert row["attempts"] == 1  # permanent: not retried
    assert "550" in row["last_error"]
    relay.refuse = None  # the address is fixed
    assert await retry_dead(engine, [row["id"]]) == 1
    gateway_with_relay.outbox.wake()
    await received_count(relay, 1)

    async def delivered() -> bool:  # marked done once the relay's answer is recorded
        return (await mail_rows(engine))[0]["state"] == "done"

    await wait_for(delivered)
    assert await dead_rows(engine) == []


async def test_outbound__agent_reply_sent_and_answer_threads_back(
        gateway_with_relay: Gateway, relay: Relay, engine: AsyncEngine,
        admin_token: str) -> None:
    import aiohttp

    ref = await asyncio.to_thread(send, gateway_with_relay, subject="VPN", body="broken",
                                  message_id="v1@example.com")
    await received_count(relay, 1)  # the acknowledgement
    async with aiohttp.ClientSession(base_url=gateway_with_relay.http_url) as http:
        async with http.post(f"/v1/requests/{ref}/replies",
                             json={"body": "Please restart the client.", "status": "waiting"},
                             headers={"Authorization": f"Bearer {admin_token}"}) as resp:
            assert resp.status == 201
    await received_count(relay, 2)
    reply = relay.received[1]
    assert reply["In-Reply-To"] == "<v1@example.com>"
    assert "Auto-Submitted" not in reply  # a person wrote this one
    assert reply.get_content().strip() == "Please restart the client."
    await asyncio.to_thread(send, gateway_with_relay, subject=f"Re: {reply['Subject']}",
                            body="Restarted, works now.", message_id="v2@example.com",
                            extra=f"In-Reply-To: {reply['Message-ID']}\r\n")

    async def answered() -> bool:
        found = await queries.get_request(engine, ref)
        return bool(found and len([m for m in found["messages"] if m["direction"] == "in"]) == 2)

    await wait_for(answered)


async def test_outbound__header_injection_from_customer_subject_is_neutralised(
        gateway_with_relay: Gateway, relay: Relay) -> None:
    # A subject with an encoded line break must not become an extra header.
    evil = "=?utf-8?q?Hello=0D=0ABcc:_victim@example.net?="
    await asyncio.to_thread(send, gateway_with_relay, subject=evil, body="x",
                            message_id="h1@example.com")
    await received_count(relay, 1)
    ack = relay.received[0]
    assert ack["Bcc"] is None
    assert "\n" not in ack["Subject"] and "Bcc" in ack["Subject"]


async def test_outbound__dead_letters_over_the_admin_api(
        gateway_with_relay: Gateway, relay: Relay, engine: AsyncEngine,
        admin_token: str) -> None:
    import aiohttp

    relay.refuse = "550 5.7.1 Refused by policy"
    await asyncio.to_thread(send, gateway_with_relay, subject="Refused again", body="x",
                            message_id="a1@example.com")

    async def dead() -> list[dict[str, Any]]:
        return await dead_rows(engine)

    [row] = await wait_for(dead)
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with aiohttp.ClientSession(base_url=gateway_with_relay.http_url) as http:
        async with http.get("/v1/admin/dead-letters", headers=headers) as resp:
            listed = await resp.json()
        assert [r["item"] for r in listed["outbox"]] == [f"outbox:{row['id']}"]
        relay.refuse = None
        async with http.post(f"/v1/admin/dead-letters/outbox/{row['id']}/retry",
                             headers=headers) as resp:
            assert resp.status == 200
        gateway_with_relay.outbox.wake()
        await received_count(relay, 1)
        async with http.post(f"/v1/admin/dead-letters/outbox/{row['id']}/retry",
                             headers=headers) as resp:
            assert resp.status == 404  # delivered: no longer a dead letter
        async with http.delete("/v1/admin/dead-letters/inbox/1", headers=headers) as resp:
            assert resp.status == 409  # raw input is never thrown away


async def test_outbound__templates_per_queue_and_rate_limit_per_recipient(
        db_url: str, relay: Relay, engine: AsyncEngine, tmp_path: Any) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "general.txt").write_text("General desk here: {{ reference }} ({{ tag }}).\n")
    config = make_config(db_url, outbound={
        "relay": f"127.0.0.1:{relay.port}", "templates": str(folder),
        "acknowledgements_per_hour": 2, "backoff_initial_seconds": 0.05})
    gateway = await start(config)
    try:
        refs = [await asyncio.to_thread(send, gateway, subject=f"Again {n}", body="x",
                                        message_id=f"rl{n}@example.com") for n in range(3)]
        await received_count(relay, 2)
        await asyncio.sleep(1.0)
    finally:
        await stop(gateway, grace=3)
    assert len(relay.received) == 2  # a third acknowledgement within the hour is held back
    assert relay.received[0].get_content().startswith("General desk here: ")
    third = await queries.get_request(engine, refs[2])
    assert third is not None
    skipped = [e for e in third["timeline"] if e["kind"] == "acknowledgement_skipped"]
    assert "limit 2" in skipped[0]["data"]["reason"]
