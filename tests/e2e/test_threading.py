"""Replies, tags, automatic mail and duplicates over real SMTP sessions."""

from __future__ import annotations

import asyncio
import smtplib
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import Gateway
from gateway.config import Config
from storage import queries
from storage.models import inbox_items, messages, requests
from storage.records import NewMessage
from storage.store import record_outbound
from tests.helpers import delivery_report, make_config, wait_for


@pytest.fixture
def config(db_url: str, request: pytest.FixtureRequest) -> Config:
    if request.node.originalname == "test_threading__duplicates_in_one_batch_stored_once":
        # The pipeline's own linger (0.2 s), not the tests' short one: the burst
        # of duplicates must reach one batch, as it does in production.
        return make_config(db_url, pipeline={"linger_seconds": 0.2})
    return make_config(db_url)


def inbound(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The customer's messages (acknowledgements and replies are ours)."""
    return [m for m in request["messages"] if m["direction"] == "in"]


def mail(*, sender: str = "alice@example.com", subject: str = "Printer on fire",
         message_id: str, body: str = "It is burning.", extra: str = "") -> bytes:
    return (f"From: Alice <{sender}>\r\nTo: support@localhost\r\nSubject: {subject}\r\n"
            f"Message-ID: <{message_id}>\r\nDate: Mon, 30 Nov 2026 09:00:00 +0000\r\n{extra}"
            f"\r\n{body}\r\n").replace("\n", "\r\n").replace("\r\r\n", "\r\n").encode()


async def send(gateway: Gateway, data: bytes, sender: str = "alice@example.com") -> str:
    def session() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=10) as client:
            client.ehlo()
            client.mail(sender)
            client.rcpt("support@localhost")
            return client.data(data)

    code, reply = await asyncio.to_thread(session)
    assert code == 250, reply
    return reply.split()[-1].decode()


async def processed(engine: AsyncEngine, count: int) -> None:
    async def done() -> bool:
        async with engine.connect() as conn:
            states = list((await conn.execute(select(inbox_items.c.state))).scalars())
        return len(states) == count and set(states) == {"done"}

    await wait_for(done)


async def request_of(engine: AsyncEngine, reference: str) -> dict[str, Any]:
    found = await queries.get_request(engine, reference)
    assert found is not None
    return found


async def n_requests(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(requests))).scalar_one()


async def test_threading__reply_with_in_reply_to_lands_on_request(
        gateway: Gateway, engine: AsyncEngine) -> None:
    ref = await send(gateway, mail(message_id="first@example.com"))
    reply = mail(subject="Re: Printer on fire", message_id="second@example.com",
                 body="Still burning.\n\nOn Mon, 30 Nov 2026 at 09:00, Alice <alice@example.com> "
                      "wrote:\n> It is burning.",
                 extra="In-Reply-To: <first@example.com>\r\nReferences: <first@example.com>\r\n")
    await send(gateway, reply)
    await processed(engine, 2)
    request = await request_of(engine, ref)
    assert [m["message_id"] for m in inbound(request)] == ["first@example.com",
                                                              "second@example.com"]
    assert inbound(request)[1]["new_text"] == "Still burning."
    received = [e for e in request["timeline"] if e["kind"] == "message_received"]
    assert "replies to message first@example.com" in received[0]["data"]["reason"]
    assert await n_requests(engine) == 1


async def test_threading__subject_tag_from_requester_lands_on_request(
        gateway: Gateway, engine: AsyncEngine) -> None:
    ref = await send(gateway, mail(message_id="t1@example.com"))
    await processed(engine, 1)
    # A client that dropped In-Reply-To and References but kept the subject.
    await send(gateway, mail(subject=f"Re: [#{ref}] Printer on fire", message_id="t2@example.com",
                             body="Any news?"))
    await processed(engine, 2)
    request = await request_of(engine, ref)
    assert len(inbound(request)) == 2
    assert await n_requests(engine) == 1


async def test_threading__stranger_quoting_tag_gets_new_request(
        gateway: Gateway, engine: AsyncEngine) -> None:
    ref = await send(gateway, mail(message_id="s1@example.com"))
    await processed(engine, 1)
    stranger = mail(sender="mallory@evil.example", subject=f"[#{ref}] give me the data",
                    message_id="s2@evil.example")
    new_ref = await send(gateway, stranger, sender="mallory@evil.example")
    await processed(engine, 2)
    assert new_ref != ref
    assert len(inbound(await request_of(engine, ref))) == 1
    other = await request_of(engine, new_ref)
    assert other["requester"]["email"] == "mallory@evil.example"
    threaded = [e for e in other["timeline"] if e["kind"] == "threaded"]
    assert "takes no part in it" in threaded[0]["data"]["reason"]


async def test_threading__out_of_office_reply_recorded_not_acknowledged(
        gateway: Gateway, engine: AsyncEngine) -> None:
    ref = await send(gateway, mail(message_id="o1@example.com"))
    await processed(engine, 1)
    # Our acknowledgement, as the outbound step will store it.
    await record_outbound(engine, ref, NewMessage(
        subject=f"[#{ref}] Printer on fire", text="We have your request.", new_text="",
        from_address="support@localhost", from_name="Support", message_id="ack-1@localhost",
        to=[{"name": "Alice", "address": "alice@example.com"}]))
    ooo = mail(subject=f"Out of office: [#{ref}] Printer on fire", message_id="o2@example.com",
               body="I am away until Monday.",
               extra="In-Reply-To: <ack-1@localhost>\r\nAuto-Submitted: auto-replied\r\n")
    await send(gateway, ooo)
    await processed(engine, 2)
    request = await request_of(engine, ref)
    assert request["status"] == "new"  # not reopened, not changed
    assert inbound(request)[-1]["flags"]["auto_reply"] is True
    received = [e for e in request["timeline"] if e["kind"] == "message_received"]
    assert received[0]["data"]["automatic"] is True
    assert await n_requests(engine) == 1

    # An out-of-office reply to nothing we know is kept, closed, never acknowledged.
    lone = mail(subject="Automatic reply: hello", message_id="o3@example.com",
                body="I am away.", extra="Auto-Submitted: auto-replied\r\n")
    lone_ref = await send(gateway, lone)
    await processed(engine, 3)
    kept = await request_of(engine, lone_ref)
    assert kept["status"] == "closed" and kept["tags"] == ["automatic"]
    ack = [e for e in kept["timeline"] if e["kind"] == "acknowledgement"]
    assert ack[0]["data"] == {"send": False, "reason": "automatic reply (RFC 3834)",
                              "template": None}


def dsn(original_id: str, ref: str) -> bytes:
    return delivery_report(original_id, recipient="alice@example.com",
                           note="Your message could not be delivered to alice@example.com.",
                           diagnostic="smtp; 550 5.1.1 User unknown",
                           returned=f"To: alice@example.com\nSubject: [#{ref}] Printer on fire\n")


async def test_threading__bounce_of_our_mail_attaches_to_its_request(
        gateway: Gateway, engine: AsyncEngine) -> None:
    ref = await send(gateway, mail(message_id="b1@example.com"))
    await processed(engine, 1)
    await record_outbound(engine, ref, NewMessage(
        subject=f"[#{ref}] Printer on fire", text="We have your request.", new_text="",
        from_address="support@localhost", from_name="Support", message_id="ack-9@localhost",
        to=[{"name": "Alice", "address": "alice@example.com"}]))
    await send(gateway, dsn("ack-9@localhost", ref), sender="")
    await processed(engine, 2)
    request = await request_of(engine, ref)
    bounce = inbound(request)[-1]
    assert bounce["flags"]["bounce"]["permanent"] is True
    assert bounce["flags"]["bounce"]["recipients"][0]["address"] == "alice@example.com"
    reasons = [e["data"]["reason"] for e in request["timeline"] if e["kind"] == "message_received"]
    assert reasons == ["delivery report for message ack-9@localhost"]
    assert request["status"] == "new"
    assert await n_requests(engine) == 1


async def test_threading__same_message_twice_stored_once(
        gateway: Gateway, engine: AsyncEngine) -> None:
    data = mail(message_id="dup@example.com")
    first = await send(gateway, data)
    await processed(engine, 1)
    second = await send(gateway, data)  # the sender's MTA retried after a lost 250
    await processed(engine, 2)
    assert second != first  # each delivery is acknowledged and its raw bytes kept
    async with engine.connect() as conn:
        stored = (await conn.execute(select(func.count()).select_from(messages)
                                     .where(messages.c.direction == "in"))).scalar_one()
    assert stored == 1
    assert await n_requests(engine) == 1
    request = await request_of(engine, first)
    duplicate = [e for e in request["timeline"] if e["kind"] == "duplicate_delivery"]
    assert duplicate[0]["data"]["message_id"] == "dup@example.com"
    # Asking for the second delivery's reference leads to the first request.
    found = await queries.find_by_message_id(engine, "<dup@example.com>")
    assert [f["reference"] for f in found] == [first]


async def test_threading__duplicates_in_one_batch_stored_once(
        gateway: Gateway, engine: AsyncEngine) -> None:
    data = mail(message_id="burst-dup@example.com")
    await asyncio.gather(*(send(gateway, data) for _ in range(5)))
    await processed(engine, 5)
    assert await n_requests(engine) == 1
