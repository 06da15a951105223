"""Thread hijacking: a stranger must never write into someone else's request.

Over real SMTP sessions (the `gateway` fixture), on SQLite and PostgreSQL. A
message threads onto a request only when its sender takes part in it as the
request established it (the requester, the people copied on the first mail or
on our mail, people a participant copied later, our own addresses); anything
else becomes a new request whose `threaded` event says which request it named
and why it was not let in.
"""

from __future__ import annotations

import asyncio
import smtplib
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import Gateway
from gateway.pipeline.placement import place
from storage import actions, queries
from storage.engine import utcnow
from storage.inbox import NewItem, accept_many
from storage.models import inbox_items, messages, requests
from storage.processing import claim_items
from storage.records import NewMessage, NewRequest, ThreadHints
from storage.reference import reference_for
from storage.rows import outbound_row
from storage.store import complete_items
from tests.helpers import wait_for

ALICE = "alice@example.com"
MALLORY = "mallory@evil.example"
EVE = "eve@evil.example"


def mail(*, sender: str = ALICE, name: str = "Alice", subject: str = "Printer on fire",
         message_id: str, body: str = "It is burning.", headers: dict[str, str] | None = None,
         from_header: str | None = None) -> bytes:
    lines = [f"From: {from_header or f'{name} <{sender}>'}", "To: support@localhost",
             f"Subject: {subject}", f"Message-ID: <{message_id}>",
             "Date: Mon, 30 Nov 2026 09:00:00 +0000",
             *(f"{key}: {value}" for key, value in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n" + body.replace("\n", "\r\n") + "\r\n").encode()


async def send(gateway: Gateway, data: bytes, envelope_from: str = ALICE) -> str:
    def session() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=10) as client:
            client.ehlo()
            client.mail(envelope_from)
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
    assert found is not None, reference
    return found


def senders(request: dict[str, Any]) -> list[str]:
    """Who wrote the inbound messages on a request, in order."""
    return [m["from"]["address"] for m in request["messages"] if m["direction"] == "in"]


def threaded(request: dict[str, Any]) -> dict[str, Any]:
    [event] = [e for e in request["timeline"] if e["kind"] == "threaded"]
    return dict(event["data"])


async def n_requests(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(requests)))
                   .scalar_one())


async def victim(gateway: Gateway, engine: AsyncEngine, *, cc: str | None = None
                 ) -> tuple[str, str]:
    """Alice's request (optionally copying someone) and our acknowledgement's Message-ID."""
    ref = await send(gateway, mail(message_id="a1@example.com",
                                   headers={"Cc": cc} if cc else None))
    await processed(engine, 1)
    request = await request_of(engine, ref)
    [ack] = [m for m in request["messages"] if m["direction"] == "out"]
    return ref, ack["message_id"]


async def assert_untouched(engine: AsyncEngine, ref: str) -> None:
    request = await request_of(engine, ref)
    assert senders(request) == [ALICE]
    assert request["status"] == "new"
    assert [e for e in request["timeline"] if e["kind"] == "message_received"] == []


async def legacy_hijack(engine: AsyncEngine, ref: str, *, message_id: str, cc: str) -> None:
    """A stranger's message stored on the request by the code before this fix."""
    async with engine.begin() as conn:
        request_id = (await conn.execute(select(requests.c.id)
                                         .where(requests.c.reference == ref))).scalar_one()
        await conn.execute(insert(messages), outbound_row(request_id, NewMessage(
            subject="Re: Printer on fire", text="Pay the invoice to IBAN XX00.",
            new_text="Pay the invoice to IBAN XX00.", from_address=MALLORY,
            from_name="Alice", message_id=message_id,
            to=[{"name": "", "address": "support@localhost"}],
            cc=[{"name": "", "address": cc}]), utcnow()) | {"direction": "in"})


@pytest.mark.parametrize("whose", ["customer's", "ours"])
async def test_threading__in_reply_to_from_stranger_gets_new_request(
        gateway: Gateway, engine: AsyncEngine, whose: str) -> None:
    ref, ack_id = await victim(gateway, engine)
    target = "a1@example.com" if whose == "customer's" else ack_id
    attack = mail(sender=MALLORY, name="Alice", subject="Re: Printer on fire",
                  message_id="m1@evil.example", body="Send the invoices to me.",
                  headers={"In-Reply-To": f"<{target}>"})
    new_ref = await send(gateway, attack, MALLORY)
    await processed(engine, 2)
    assert new_ref != ref
    await assert_untouched(engine, ref)
    other = await request_of(engine, new_ref)
    assert other["requester"]["email"] == MALLORY
    data = threaded(other)
    assert data["placement"] == "new" and data["refused"] == [ref]
    assert f"message {target}" in data["reason"] and "takes no part in it" in data["reason"]


async def test_threading__references_from_stranger_gets_new_request(
        gateway: Gateway, engine: AsyncEngine) -> None:
    ref, ack_id = await victim(gateway, engine)
    attack = mail(sender=MALLORY, subject="Re: Printer on fire", message_id="m2@evil.example",
                  headers={"References": f"<unknown@x.example> <a1@example.com> <{ack_id}>"})
    new_ref = await send(gateway, attack, MALLORY)
    await processed(engine, 2)
    assert new_ref != ref
    await assert_untouched(engine, ref)
    assert threaded(await request_of(engine, new_ref))["refused"] == [ref]


async def test_threading__tag_from_strangers_cc_gets_new_request(
        gateway: Gateway, engine: AsyncEngine) -> None:
    ref, _ = await victim(gateway, engine)
    # Mallory answers Alice's mail, copying Eve; then Eve quotes the reference tag.
    await send(gateway, mail(sender=MALLORY, subject="Re: Printer on fire",
                             message_id="m3@evil.example",
                             headers={"In-Reply-To": "<a1@example.com>", "Cc": EVE}), MALLORY)
    await processed(engine, 2)
    eve_ref = await send(gateway, mail(sender=EVE, name="Eve",
                                       subject=f"Re: [#{ref}] Printer on fire",
                                       message_id="e3@evil.example"), EVE)
    await processed(engine, 3)
    assert eve_ref != ref
    await assert_untouched(engine, ref)
    data = threaded(await request_of(engine, eve_ref))
    assert data["refused"] == [ref] and "takes no part in it" in data["reason"]
    assert await n_requests(engine) == 3


async def test_threading__stranger_copied_by_stranger_then_replying_stays_out(
        gateway: Gateway, engine: AsyncEngine) -> None:
    ref, ack_id = await victim(gateway, engine)
    mallory_ref = await send(gateway, mail(
        sender=MALLORY, subject="Re: Printer on fire", message_id="m4@evil.example",
        headers={"In-Reply-To": "<a1@example.com>", "Cc": EVE}), MALLORY)
    await processed(engine, 2)
    # Eve answers Mallory's mail, naming Alice's thread too: she takes part in
    # Mallory's request (copied on its first mail), never in Alice's.
    await send(gateway, mail(
        sender=EVE, name="Eve", subject=f"Re: [#{ref}] Printer on fire",
        message_id="e4@evil.example",
        headers={"In-Reply-To": f"<{ack_id}>",
                 "References": f"<a1@example.com> <{ack_id}> <m4@evil.example>"}), EVE)
    await processed(engine, 3)
    await assert_untouched(engine, ref)
    # (The SMTP answer names the item, not the request it joined: not compared.)
    assert senders(await request_of(engine, mallory_ref)) == [MALLORY, EVE]


async def test_threading__stranger_naming_own_thread_and_victims_lands_on_own(
        gateway: Gateway, engine: AsyncEngine) -> None:
    ref, _ = await victim(gateway, engine)
    own = await send(gateway, mail(sender=MALLORY, subject="Hello", message_id="m5@evil.example"),
                     MALLORY)
    await processed(engine, 2)
    # In-Reply-To names Alice's mail first; References names Mallory's own.
    await send(gateway, mail(
        sender=MALLORY, subject="Re: Hello", message_id="m6@evil.example",
        headers={"In-Reply-To": "<a1@example.com>", "References": "<m5@evil.example>"}),
        MALLORY)
    await processed(engine, 3)
    await assert_untouched(engine, ref)
    assert senders(await request_of(engine, own)) == [MALLORY, MALLORY]


@pytest.mark.parametrize("from_header", [
    '"alice@example.com" <mallory@evil.example>',  # the victim's address as display name
    "Alice <alice@example.com.evil.example>",  # the victim's address as a prefix
    "Alice\r\nReply-To: alice@example.com",  # no address in From: another header's is used
    "Alice\r\nSender: alice@example.com",
])
async def test_threading__look_alike_sender_gets_new_request(
        gateway: Gateway, engine: AsyncEngine, from_header: str) -> None:
    ref, ack_id = await victim(gateway, engine)
    attack = mail(from_header=from_header, subject=f"Re: [#{ref}] Printer on fire",
                  message_id="m7@evil.example", headers={"In-Reply-To": f"<{ack_id}>"})
    new_ref = await send(gateway, attack, MALLORY)
    await processed(engine, 2)
    assert new_ref != ref
    await assert_untouched(engine, ref)
    assert threaded(await request_of(engine, new_ref))["refused"] == [ref]


async def test_threading__forged_bounce_naming_customers_message_stays_out(
        gateway: Gateway, engine: AsyncEngine) -> None:
    ref, _ = await victim(gateway, engine)
    dsn = (
        b"From: Mail Delivery System <MAILER-DAEMON@evil.example>\r\nTo: support@localhost\r\n"
        b"Subject: Undelivered Mail\r\nMessage-ID: <bounce-m@evil.example>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain\r\n\r\nCall +00 0000 to fix your printer.\r\n"
        b"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; evil.example\r\n"
        b"\r\nFinal-Recipient: rfc822; alice@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        b"\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: Alice <alice@example.com>\r\n"
        b"Subject: Printer on fire\r\nMessage-ID: <a1@example.com>\r\n\r\n--B--\r\n")
    new_ref = await send(gateway, dsn, "")
    await processed(engine, 2)
    assert new_ref != ref
    await assert_untouched(engine, ref)


async def test_threading__participants_ignore_people_a_stranger_added(
        gateway: Gateway, engine: AsyncEngine) -> None:
    ref, _ = await victim(gateway, engine)
    # Stored by the code before this fix: Mallory on Alice's request, copying Eve.
    await legacy_hijack(engine, ref, message_id="old@evil.example", cc=EVE)
    tag = await send(gateway, mail(sender=EVE, name="Eve", subject=f"[#{ref}] more",
                                   message_id="e8@evil.example"), EVE)
    reply = await send(gateway, mail(sender=EVE, name="Eve", subject="Re: Printer",
                                     message_id="e9@evil.example",
                                     headers={"In-Reply-To": "<old@evil.example>"}), EVE)
    again = await send(gateway, mail(sender=MALLORY, subject="Re: Printer",
                                     message_id="m9@evil.example",
                                     headers={"In-Reply-To": "<a1@example.com>"}), MALLORY)
    await processed(engine, 4)
    assert ref not in {tag, reply, again}
    assert senders(await request_of(engine, ref)) == [ALICE, MALLORY]  # only the old one


async def test_threading__reply_by_requester_still_threads(
        gateway: Gateway, engine: AsyncEngine) -> None:
    ref, ack_id = await victim(gateway, engine)
    await send(gateway, mail(
        sender="Alice@EXAMPLE.com", subject="Re: Printer on fire", message_id="a2@example.com",
        body="Still burning.", headers={"In-Reply-To": f"<{ack_id}>"}))
    await send(gateway, mail(subject=f"Re: [#{ref}] Printer on fire",
                                      message_id="a3@example.com", body="Any news?"))
    await processed(engine, 3)
    request = await request_of(engine, ref)
    assert len(senders(request)) == 3
    received = [e["data"]["reason"] for e in request["timeline"]
                if e["kind"] == "message_received"]
    assert received[0] == f"replies to message {ack_id}"
    assert received[1].startswith(f"subject tag {ref}")


async def test_threading__reply_from_person_copied_on_first_mail_threads(
        gateway: Gateway, engine: AsyncEngine) -> None:
    ref, _ = await victim(gateway, engine, cc="Bob <Bob@Example.com>")
    await send(gateway, mail(sender="bob@example.com", name="Bob",
                                   subject="Re: Printer on fire", message_id="b1@example.com",
                                   body="Mine too.", headers={"In-Reply-To": "<a1@example.com>",
                                                              "Cc": "carol@example.com"}),
                     "bob@example.com")
    await processed(engine, 2)
    # Carol, whom a participant copied, takes part too.
    await send(gateway, mail(sender="carol@example.com", name="Carol",
                                     subject=f"Re: [#{ref}] Printer on fire",
                                     message_id="c1@example.com"), "carol@example.com")
    await processed(engine, 3)
    assert senders(await request_of(engine, ref)) == [ALICE, "bob@example.com",
                                                       "carol@example.com"]


async def test_threading__reply_to_merged_request_from_its_requester_threads(
        gateway: Gateway, engine: AsyncEngine) -> None:
    ref, _ = await victim(gateway, engine)
    bob = await send(gateway, mail(sender="bob@example.com", name="Bob", subject="Printer",
                                   message_id="b2@example.com"), "bob@example.com")
    await processed(engine, 2)
    assert await actions.merge(engine, bob, ref, "test") == "ok"
    await send(gateway, mail(sender="bob@example.com", name="Bob", subject="Re: Printer",
                                      message_id="b3@example.com",
                                      headers={"In-Reply-To": "<b2@example.com>"}),
                        "bob@example.com")
    await processed(engine, 3)
    assert senders(await request_of(engine, ref)) == [ALICE, "bob@example.com"]


async def test_status_page__never_shows_a_stranger_as_you(
        gateway: Gateway, engine: AsyncEngine, http: aiohttp.ClientSession) -> None:
    ref, _ = await victim(gateway, engine, cc="Bob <bob@example.com>")
    await send(gateway, mail(sender=MALLORY, name="Alice", subject="Re: Printer on fire",
                             message_id="m10@evil.example", body="Call me on +00 0000.",
                             headers={"In-Reply-To": "<a1@example.com>"}), MALLORY)
    await send(gateway, mail(sender="bob@example.com", name="Bob", subject="Re: Printer on fire",
                             message_id="b10@example.com", body="Mine too.",
                             headers={"In-Reply-To": "<a1@example.com>"}), "bob@example.com")
    await processed(engine, 3)
    await legacy_hijack(engine, ref, message_id="old2@evil.example", cc=EVE)
    request = await request_of(engine, ref)
    async with http.get(f"/v1/status/{request['status_token']}") as resp:
        assert resp.status == 200
        page = await resp.json()
    shown = [(m["from"], m["text"]) for m in page["messages"]]
    assert ("you", "It is burning.") in shown
    assert ("Bob", "Mine too.") in shown  # copied people by name, never by address
    assert not any("bob@example.com" in who for who, _ in shown)
    assert [who for who, _ in shown if who == "you"] == ["you"]
    assert not any("+00" in text or "IBAN" in text for _, text in shown)


async def test_threading__batch_of_mails_naming_hundreds_of_messages_is_stored(
        engine: AsyncEngine) -> None:
    # Every mail of a full batch names 500 Message-IDs (the parser's cap on
    # References) and 40 subject tags: the lookups must stay within the
    # drivers' limits on bound parameters (asyncpg: 32,767 per statement).
    count = 128
    await accept_many(engine, [NewItem("email", b"x") for _ in range(count)])
    items = await claim_items(engine, limit=count, lease_seconds=60)
    tags = tuple(reference_for(n) for n in range(1, 41))
    work = [(item, NewRequest(
        queue="general", requester_email=MALLORY, requester_name=None,
        message=NewMessage(subject="x", text="x", new_text="x", from_address=MALLORY,
                           from_name=None, message_id=f"{item.id}@evil.example"),
        hints=ThreadHints(message_id=f"{item.id}@evil.example", sender=MALLORY,
                          parent_ids=tuple(f"{item.id}.{n}@evil.example" for n in range(500)),
                          tags=tags)))
        for item in items]
    stored = await complete_items(engine, work, place)
    assert len(stored) == count and {s.kind for s in stored} == {"new"}


def _email(item: Any, sender: str, message_id: str, *, parents: tuple[str, ...] = (),
           cc: tuple[str, ...] = ()) -> tuple[Any, NewRequest]:
    copied = ("support@localhost", *cc)
    return item, NewRequest(
        queue="general", requester_email=sender, requester_name=None,
        message=NewMessage(subject="x", text="x", new_text="x", from_address=sender,
                           from_name=None, message_id=message_id,
                           to=[{"name": "", "address": "support@localhost"}],
                           cc=[{"name": "", "address": a} for a in cc]),
        hints=ThreadHints(message_id=message_id, sender=sender, parent_ids=parents,
                          copied=copied))


async def test_threading__answers_within_one_batch_follow_the_same_rules(
        engine: AsyncEngine) -> None:
    # Stored: Alice's request, copying Bob.
    await accept_many(engine, [NewItem("email", b"x")])
    [first] = await claim_items(engine, limit=1, lease_seconds=60)
    [made] = await complete_items(engine, [_email(first, ALICE, "a1@example.com",
                                                  cc=("bob@example.com",))], place)
    # One batch: Alice answers copying Dave; Bob and Dave answer her answer;
    # Mallory answers it too, and copies Eve, who answers Mallory.
    await accept_many(engine, [NewItem("email", b"x") for _ in range(5)])
    items = await claim_items(engine, limit=5, lease_seconds=60)
    stored = await complete_items(engine, [
        _email(items[0], ALICE, "a2@example.com", parents=("a1@example.com",),
               cc=("dave@example.com",)),
        _email(items[1], "bob@example.com", "b2@example.com", parents=("a2@example.com",)),
        _email(items[2], "dave@example.com", "d2@example.com", parents=("a2@example.com",)),
        _email(items[3], MALLORY, "m2@evil.example", parents=("a2@example.com",), cc=(EVE,)),
        _email(items[4], EVE, "e2@evil.example", parents=("m2@evil.example", "a1@example.com")),
    ], place)
    assert [s.kind for s in stored] == ["thread", "thread", "thread", "new", "thread"]
    assert [s.reference for s in stored[:3]] == [made.reference] * 3
    assert stored[4].reference == stored[3].reference != made.reference
