"""Our mail through a real relay (aiosmtpd on loopback): who it comes from (per
queue, else the address the customer wrote to), the EHLO name, each mail's
delivery outcome on the request's timeline, hard bounces, and an
acknowledgement template that fails at run time."""

from __future__ import annotations

import asyncio
import email
import email.policy
import smtplib
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiosmtpd.smtp import SMTP
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import Gateway, start, stop
from storage import queries
from storage.outbox import dead_rows, retry_dead
from storage.processing import dead_items
from tests.helpers import delivery_report, make_config, wait_for

FAST = {"backoff_initial_seconds": 0.05, "backoff_max_seconds": 0.2, "max_attempts": 30}


class Relay:
    """An SMTP relay on 127.0.0.1 that keeps each mail with the EHLO name it was
    given and the envelope sender; `refuse` answers DATA with that reply."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, EmailMessage]] = []
        self.refuse: str | None = None
        self.port = 0
        self._server: asyncio.Server | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            return self.refuse
        message = email.message_from_bytes(envelope.original_content,
                                           policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append((session.host_name, envelope.mail_from, message))
        return "250 OK"

    async def up(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: SMTP(self, hostname="relay"),
                                                "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    relay = Relay()
    await relay.up()
    yield relay
    relay.close()


def send(gateway: Gateway, *, to: str = "support@localhost", subject: str = "Help",
         message_id: str = "", sender: str = "alice@example.com", raw: bytes | None = None) -> str:
    data = raw or (f"From: Alice <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
                   f"Message-ID: <{message_id}>\r\n\r\nPlease help.\r\n").encode()
    with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=10) as client:
        client.ehlo()
        client.mail(sender)
        client.rcpt(to)
        code, reply = client.data(data)
    assert code == 250
    return reply.split()[-1].decode()


async def received(relay: Relay, count: int) -> None:
    async def enough() -> bool:
        return len(relay.received) >= count

    await wait_for(enough, timeout=15)


async def until_timeline(engine: AsyncEngine, ref: str, kind: str,
                         count: int = 1) -> list[dict[str, Any]]:
    async def found() -> list[dict[str, Any]] | None:
        request = await queries.get_request(engine, ref)
        if request is None:
            return None
        # Not yet processed: "received", with no timeline yet.
        entries = [e["data"] for e in request.get("timeline", []) if e["kind"] == kind]
        return entries if len(entries) >= count else None

    result: list[dict[str, Any]] = await wait_for(found, timeout=15)
    return result


async def reply(gateway: Gateway, token: str, ref: str, body: str) -> None:
    async with aiohttp.ClientSession(base_url=gateway.http_url) as http, http.post(
            f"/v1/requests/{ref}/replies", json={"body": body},
            headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 201


async def test_outbound__from_follows_the_queue_else_the_address_written_to(
        db_url: str, relay: Relay, engine: AsyncEngine, admin_token: str) -> None:
    config = make_config(
        db_url, smtp={"hostname": "mx.desk.example"},
        outbound={"relay": f"127.0.0.1:{relay.port}", **FAST},
        queue=[{"name": "general"},
               {"name": "billing", "from_address": "accounts@desk.example",
                "from_name": "Accounts", "signature": "The accounts team"}],
        rule=[{"name": "invoices", "when": {"subject": {"contains": "invoice"}},
               "then": {"queue": "billing"}}])
    gateway = await start(config)
    try:
        # Written to billing@, routed to a queue without an identity: from billing@.
        written = await asyncio.to_thread(send, gateway, to="billing@localhost",
                                          message_id="i1@example.com")
        await received(relay, 1)
        # Routed to the billing queue: its own address, name and signature.
        queued = await asyncio.to_thread(send, gateway, subject="My invoice is wrong",
                                         message_id="i2@example.com")
        await received(relay, 2)
        # Neither: the first intake address, as before.
        await asyncio.to_thread(send, gateway, message_id="i3@example.com")
        await received(relay, 3)
        # Agents' replies come from the same identity as the acknowledgement.
        await reply(gateway, admin_token, written, "Paid, thanks.")
        await received(relay, 4)
        await reply(gateway, admin_token, queued, "Corrected.")
        await received(relay, 5)
    finally:
        await stop(gateway, grace=3)
    by_reply = {m["In-Reply-To"]: (helo, sender, m) for helo, sender, m in relay.received}
    helo, sender, written = by_reply["<i1@example.com>"]
    assert helo == "mx.desk.example"  # EHLO from smtp.hostname, not the host's name
    assert written["From"].addresses[0].addr_spec == "billing@localhost"
    assert sender == "billing@localhost"
    assert written["From"].addresses[0].display_name == "Support"
    _, sender, queued = by_reply["<i2@example.com>"]
    assert queued["From"].addresses[0].addr_spec == "accounts@desk.example"
    assert queued["From"].addresses[0].display_name == "Accounts"
    assert sender == "accounts@desk.example"
    assert "The accounts team" in queued.get_content()
    replies = [m for _, _, m in relay.received if "Auto-Submitted" not in m]
    assert [m["From"].addresses[0].addr_spec for m in replies] == [
        "billing@localhost", "accounts@desk.example"]
    assert replies[1].get_content().replace("\r\n", "\n").rstrip().endswith(
        "Corrected.\n\n-- \nThe accounts team")
    _, _, plain = by_reply["<i3@example.com>"]
    assert plain["From"].addresses[0].addr_spec == "support@localhost"
    assert "-- " not in plain.get_content()  # no signature configured, none shown


async def test_outbound__ehlo_uses_outbound_helo_when_set(
        db_url: str, relay: Relay) -> None:
    config = make_config(db_url, smtp={"hostname": "mx.desk.example"},
                         outbound={"relay": f"127.0.0.1:{relay.port}",
                                   "helo": "out.desk.example", **FAST})
    gateway = await start(config)
    try:
        await asyncio.to_thread(send, gateway, message_id="h1@example.com")
        await received(relay, 1)
    finally:
        await stop(gateway, grace=3)
    assert relay.received[0][0] == "out.desk.example"


async def test_outbound__delivery_outcomes_are_on_the_timeline(
        db_url: str, relay: Relay, engine: AsyncEngine) -> None:
    config = make_config(db_url, outbound={"relay": f"127.0.0.1:{relay.port}", **FAST})
    gateway = await start(config)
    try:
        relay.refuse = "451 4.3.0 Try again later"
        deferred_ref = await asyncio.to_thread(send, gateway, message_id="d1@example.com")
        deferred = await until_timeline(engine, deferred_ref, "delivery")
        assert deferred[0]["outcome"] == "deferred" and deferred[0]["code"] == 451
        relay.refuse = None
        await received(relay, 1)
        outcomes = await until_timeline(engine, deferred_ref, "delivery",
                                        count=len(deferred) + 1)
        delivered = [o for o in outcomes if o["outcome"] == "delivered"]
        assert delivered and delivered[0]["code"] == 250
        assert delivered[0]["purpose"] == "acknowledgement"
        ack = relay.received[0][2]
        assert ack["Message-ID"] == f"<{delivered[0]['message_id']}>"

        relay.refuse = "550 5.1.1 No such user here"
        failed_ref = await asyncio.to_thread(send, gateway, message_id="d2@example.com")
        outcomes = await until_timeline(engine, failed_ref, "delivery")
        assert outcomes[-1]["outcome"] == "failed" and outcomes[-1]["code"] == 550
        # The timeline says what happened, never the relay's text (it may name people).
        assert "No such user" not in str(outcomes)
        assert [row["reference"] for row in await dead_rows(engine)] == [failed_ref]
    finally:
        await stop(gateway, grace=3)


def dsn(original_id: str, ref: str) -> bytes:
    return delivery_report(original_id, recipient="alice@example.com",
                           report_id=f"bounce-{ref}@mx.example.net",
                           diagnostic="smtp; 550 5.1.1 User unknown",
                           returned=f"To: alice@example.com\nSubject: [#{ref}] Help\n")


async def test_outbound__hard_bounce_flags_the_request_and_a_rule_moves_it(
        db_url: str, relay: Relay, engine: AsyncEngine) -> None:
    config = make_config(
        db_url, outbound={"relay": f"127.0.0.1:{relay.port}", **FAST},
        rule=[{"name": "bounced to billing", "applies_to": "replies",
               "when": {"bounce": True}, "then": {"queue": "billing"}}])
    gateway = await start(config)
    try:
        ref = await asyncio.to_thread(send, gateway, message_id="b1@example.com")
        await received(relay, 1)
        ack_id = relay.received[0][2]["Message-ID"].strip("<>")
        await asyncio.to_thread(send, gateway, raw=dsn(ack_id, ref), sender="")
        failed = await until_timeline(engine, ref, "delivery_failed")
    finally:
        await stop(gateway, grace=3)
    assert failed == [{"message_id": ack_id, "kind": "dsn", "statuses": ["5.1.1"]}]
    request = await queries.get_request(engine, ref)
    assert request is not None
    assert "bounced" in request["tags"]
    assert request["queue"] == "billing"


async def test_outbound__a_template_failing_at_run_time_does_not_block_the_request(
        db_url: str, relay: Relay, engine: AsyncEngine, tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    template = folder / "acknowledgement.txt"
    # Renders for the sample subject at start; not for a subject under 4 characters.
    template.write_text("About {{ subject[3] }}: {{ reference }}\n")
    config = make_config(db_url, outbound={"relay": f"127.0.0.1:{relay.port}",
                                           "templates": str(folder), **FAST})
    gateway = await start(config)
    try:
        ref = await asyncio.to_thread(send, gateway, subject="Hi", message_id="t1@example.com")
        failed = await until_timeline(engine, ref, "acknowledgement_failed")
        assert failed[0]["dead_letter"] is True and "UndefinedError" in failed[0]["error"]
        request = await queries.get_request(engine, ref)
        assert request is not None and request["status"] == "new"  # the request stands
        assert await dead_items(engine) == []  # the inbox item is done, not dead
        dead = await dead_rows(engine)
        assert [(d["kind"], d["reference"]) for d in dead] == [("email", ref)]
        assert dead[0]["last_error"].startswith("template: UndefinedError")
        # The next mail is not held up by it.
        await asyncio.to_thread(send, gateway, subject="Printer on fire",
                                message_id="t2@example.com")
        await received(relay, 1)

        # Fixed on disk and retried: rendered now, sent, and kept with the request.
        template.write_text("We have {{ reference }}.\n")
        assert await retry_dead(engine, [dead[0]["id"]]) == 1
        await received(relay, 2)
    finally:
        await stop(gateway, grace=3)
    retried = next(m for _, _, m in relay.received if m["In-Reply-To"] == "<t1@example.com>")
    assert retried.get_content().strip() == f"We have {ref}."
    request = await queries.get_request(engine, ref)
    assert request is not None
    ours = [m for m in request["messages"] if m["direction"] == "out"]
    assert ours[0]["text"] == f"We have {ref}.\n"
    assert "render_error" not in ours[0]["flags"]
