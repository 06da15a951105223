"""The spoofing scenario, end to end in verify mode: real SMTP sessions into a
running gateway that checks SPF, DKIM and DMARC itself against a DNS server
run by the test (no internet), on SQLite and PostgreSQL.

example.org publishes SPF (its mail leaves from 127.0.0.1), a DKIM key and
DMARC p=reject. Alice writes from there and gets a request. Someone else,
connecting from 127.0.0.2, writes as Alice with her request's tag and our
acknowledgement's Message-ID: DMARC fails, so it does not land on her
request and nobody is acknowledged. Alice's own reply, signed and from her
domain's server, lands.
"""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import Gateway
from storage.models import outbox
from tests.dns_server import DkimKey, DnsServer, dkim_key
from tests.helpers import all_processed, count_rows, event_data, request_of, running

ALICE = "alice@example.org"
SELECTOR = "mail"


@pytest.fixture
def signer(dns_server: DnsServer) -> DkimKey:
    dns_server.txt("example.org", "v=spf1 ip4:127.0.0.1 -all")
    dns_server.txt("_dmarc.example.org", "v=DMARC1; p=reject; rua=mailto:d@example.org")
    key = dkim_key(1024)
    key.publish(dns_server, SELECTOR, "example.org")
    return key


@pytest.fixture
async def gateway(db_url: str, dns_server: DnsServer, signer: DkimKey
                  ) -> AsyncIterator[Gateway]:
    async with running(db_url, smtp={
            "listen": "127.0.0.1:0", "lmtp_listen": "127.0.0.1:0",
            "policy": {"smtp": {"sender_auth": "verify"}}},
            sender_auth={"nameservers": [dns_server.address], "timeout_seconds": 1.0}
    ) as running_gateway:
        yield running_gateway


def mail(subject: str, message_id: str, in_reply_to: str | None = None) -> bytes:
    lines = [f"From: Alice <{ALICE}>", "To: support@localhost", f"Subject: {subject}",
             f"Message-ID: <{message_id}>", "Date: Sat, 05 Dec 2026 09:00:00 +0000"]
    if in_reply_to:
        lines.append(f"In-Reply-To: <{in_reply_to}>")
    return ("\r\n".join(lines) + "\r\n\r\nThe printer is on fire again.\r\n").encode()


async def send(gateway: Gateway, data: bytes, *, source: str = "127.0.0.1",
               mail_from: str = ALICE) -> str:
    def session() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=10,
                          source_address=(source, 0)) as client:
            client.ehlo("mail.example.org")
            client.mail(mail_from)
            client.rcpt("support@localhost")
            return client.data(data)

    code, reply = await asyncio.to_thread(session)
    assert code == 250, reply
    return reply.split()[-1].decode()


async def processed(engine: AsyncEngine, count: int) -> None:
    await all_processed(engine, count, timeout=20)


events = event_data


async def test_spoofing__forged_from_stays_out_genuine_reply_lands(
        gateway: Gateway, engine: AsyncEngine, signer: DkimKey) -> None:
    first = signer.sign(mail("Printer on fire", "a1@example.org"), SELECTOR, "example.org")
    ref = await send(gateway, first)
    await processed(engine, 1)
    request = await request_of(engine, ref)
    [message] = [m for m in request["messages"] if m["direction"] == "in"]
    auth = message["authentication"]
    assert (auth["source"], auth["spf"], auth["dkim"], auth["dmarc"]) == (
        "verified", "pass", "pass", "pass")
    assert auth["dkim_domains"] == ["example.org"] and auth["dmarc_policy"] == "reject"
    [ack] = [m for m in request["messages"] if m["direction"] == "out"]
    acks = await count_rows(engine, outbox, outbox.c.recipient == ALICE)
    assert acks == 1

    # The forgery: Alice's From, her tag, our acknowledgement's Message-ID, sent
    # from a host example.org's SPF does not list, with no signature of hers.
    forged = await send(gateway, mail(f"Re: [#{ref}] Printer on fire", "f1@evil.test",
                                      in_reply_to=ack["message_id"]), source="127.0.0.2")
    await processed(engine, 2)
    assert forged != ref
    request = await request_of(engine, ref)
    assert len([m for m in request["messages"] if m["direction"] == "in"]) == 1
    other = await request_of(engine, forged)
    [said] = events(other, "authenticated")
    assert said["forged_from"] is True and said["sender_check"] == "failed"
    [message] = other["messages"]
    assert (message["authentication"]["spf"], message["authentication"]["dmarc"]) == (
        "fail", "fail")
    [threaded] = events(other, "threaded")
    assert threaded["refused"] == [ref]
    assert f"{ALICE} failed sender authentication" in threaded["reason"]
    assert await count_rows(engine, outbox, outbox.c.recipient == ALICE) == acks

    # Alice's own reply: signed, from her domain's server: it lands.
    reply = signer.sign(mail(f"Re: [#{ref}] Printer on fire", "a2@example.org",
                             in_reply_to=ack["message_id"]), SELECTOR, "example.org")
    await send(gateway, reply)
    await processed(engine, 3)
    request = await request_of(engine, ref)
    inbound = [m for m in request["messages"] if m["direction"] == "in"]
    assert [m["message_id"] for m in inbound] == ["a1@example.org", "a2@example.org"]
    assert inbound[1]["authentication"]["dmarc"] == "pass"


async def test_spoofing__dns_down_is_temperror_and_mail_still_flows(
        gateway: Gateway, engine: AsyncEngine, dns_server: DnsServer) -> None:
    """No answer from DNS: the checks say temperror (nobody is called forged),
    and the mail becomes a request as it would unchecked."""
    for name in ("example.org", "_dmarc.example.org", f"{SELECTOR}._domainkey.example.org"):
        dns_server.behave(name, "timeout")
    ref = await send(gateway, mail("Printer on fire", "t1@example.org"))
    await processed(engine, 1)
    request = await request_of(engine, ref)
    [message] = [m for m in request["messages"] if m["direction"] == "in"]
    assert message["authentication"]["dmarc"] == "temperror"
    assert message["authentication"]["spf"] == "temperror"
    assert events(request, "authenticated")[0]["sender_check"] != "failed"
    assert await count_rows(engine, outbox, outbox.c.recipient == ALICE) == 1


async def test_spoofing__two_from_addresses_vouch_for_nobody(
        gateway: Gateway, engine: AsyncEngine, signer: DkimKey) -> None:
    """`From: alice@example.org, me@evil.test` is read as Alice by the parser,
    while DMARC can vouch for no single From: kept out, never acknowledged."""
    ref = await send(gateway, signer.sign(mail("Printer on fire", "a1@example.org"),
                                          SELECTOR, "example.org"))
    await processed(engine, 1)
    two = mail(f"Re: [#{ref}] Printer on fire", "f2@evil.test").replace(
        f"From: Alice <{ALICE}>".encode(), f"From: {ALICE}, me@evil.test".encode())
    other = await send(gateway, two, source="127.0.0.2", mail_from="me@evil.test")
    await processed(engine, 2)
    assert other != ref
    request = await request_of(engine, other)
    [said] = events(request, "authenticated")
    assert said["sender_check"] == "failed" and said["verdicts"]["dmarc"] == "permerror"
    assert f"{ALICE} failed sender authentication" in events(request, "threaded")[0]["reason"]
    assert await count_rows(engine, outbox, outbox.c.recipient == ALICE) == 1
