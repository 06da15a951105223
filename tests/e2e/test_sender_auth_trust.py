"""Sender authentication believed from a trusted front MTA (`sender_auth = "trust"`),
end to end: real LMTP and SMTP sessions into a running gateway, on SQLite and
PostgreSQL, read back through the agents' API.

The front MTA (mx.help.example) adds its Received and its Authentication-Results
at the top of each message, as Postfix with OpenDMARC does; what the sender
wrote follows. A forged From (DMARC fails for a domain whose policy is reject
or quarantine) never joins the request of the person it names and is never
acknowledged; results written by the sender are recorded and not believed.
"""

from __future__ import annotations

import argparse
import asyncio
import smtplib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.lifecycle import FORGED_FROM
from gateway import metrics
from gateway.app import Gateway
from gateway.cli import _reroute
from gateway.config import build_config
from storage.models import outbox
from storage.tokens import create_token
from tests.helpers import all_processed, auth, count_rows, event_data, request_of, running

MX = "mx.help.example"
ALICE = "alice@example.com"
FRONT = (f"Received: from mail.example.com (mail.example.com [203.0.113.5])\r\n"
         f"\tby {MX} (Postfix) with ESMTPS id 4Q1x2y\r\n"
         f"\tfor <support@localhost>; Mon, 30 Nov 2026 09:00:01 +0000")
SENDERS_HOP = ("Received: from laptop (laptop [192.0.2.7]) by smtp.evil.example\r\n"
               "\twith ESMTPSA id 77; Mon, 30 Nov 2026 09:00:00 +0000")
PASS = f"Authentication-Results: {MX}; dmarc=pass (p=reject dis=none) header.from=example.com"
FAIL_REJECT = (f"Authentication-Results: {MX}; dmarc=fail (p=reject dis=none)\r\n"
               "\theader.from=example.com;\r\n\tspf=pass smtp.mailfrom=bounce@evil.example")
QUEUES = [{"name": "general"}, {"name": "billing"}, {"name": "review"}, {"name": "spam"}]
RULES = [
    # Mail claiming our own domain that no trusted front MTA passed: held.
    {"name": "internal but unauthenticated",
     "when": {"from_domain": "help.example", "not": {"auth": {"dmarc": "pass"}}},
     "then": {"quarantine": True, "queue": "review"}, "stop": True},
    {"name": "spam", "when": {"spam.score": {"greater": 5}}, "then": {"queue": "spam"}},
]


def sections(*, forged_from: str = "new_request") -> dict[str, Any]:
    return {
        "smtp": {"listen": "127.0.0.1:0", "lmtp_listen": "127.0.0.1:0", "policy": {
            "lmtp": {"sender_auth": "trust", "authserv_ids": [MX], "spam_headers": True},
            "smtp": {"sender_auth": "trust", "authserv_ids": [MX]}}},
        "sender_auth": {"forged_from": forged_from},
        "queue": QUEUES, "rule": RULES,
    }


@pytest.fixture
async def front(db_url: str) -> AsyncIterator[Gateway]:
    async with running(db_url, **sections()) as gateway:
        yield gateway


def mail(*top: str, sender: str = ALICE, subject: str = "Printer on fire", message_id: str,
         headers: dict[str, str] | None = None, below: tuple[str, ...] = ()) -> bytes:
    """The front MTA's `top` headers, then the sender's message (`below`: their
    own header lines above From)."""
    lines = [*top, *below, f"From: Alice <{sender}>", "To: support@localhost",
             f"Subject: {subject}", f"Message-ID: <{message_id}>",
             "Date: Mon, 30 Nov 2026 09:00:00 +0000",
             *(f"{key}: {value}" for key, value in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\nIt is burning.\r\n").encode()


async def lmtp(gateway: Gateway, data: bytes, envelope_from: str = ALICE) -> str:
    def session() -> tuple[int, bytes]:
        with smtplib.LMTP("127.0.0.1", gateway.lmtp_port, timeout=10) as client:
            client.ehlo_or_helo_if_needed()
            client.mail(envelope_from)
            client.rcpt("support@localhost")
            return client.data(data)

    code, reply = await asyncio.to_thread(session)
    assert code == 250, reply
    return reply.split()[-1].decode()


async def smtp(gateway: Gateway, data: bytes) -> str:
    def session() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=10) as client:
            client.ehlo()
            client.mail(ALICE)
            client.rcpt("support@localhost")
            return client.data(data)

    code, reply = await asyncio.to_thread(session)
    assert code == 250, reply
    return reply.split()[-1].decode()


async def processed(engine: AsyncEngine, count: int) -> None:
    await all_processed(engine, count)


events = event_data


def inbound(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in request["messages"] if m["direction"] == "in"]


async def acks_to(engine: AsyncEngine, address: str) -> int:
    return await count_rows(engine, outbox, outbox.c.recipient == address)


async def test_trust__forged_reply_stays_out_genuine_reply_lands(
        front: Gateway, engine: AsyncEngine) -> None:
    dmarc_failed = metrics.SENDER_AUTH.labels("dmarc", "fail")
    failed_before = dmarc_failed._value.get()
    ref = await lmtp(front, mail(FRONT, PASS, message_id="a1@example.com"))
    await processed(engine, 1)
    request = await request_of(engine, ref)
    [ack] = [m for m in request["messages"] if m["direction"] == "out"]
    assert await acks_to(engine, ALICE) == 1
    assert events(request, "authenticated")[0]["sender_check"] == "verified"

    # Someone else writes as Alice, quoting her reference and our Message-ID;
    # example.com publishes p=reject and the front MTA saw DMARC fail.
    forged = await lmtp(front, mail(
        FRONT, FAIL_REJECT, subject=f"Re: [#{ref}] Printer on fire",
        message_id="f1@evil.example", headers={"In-Reply-To": f"<{ack['message_id']}>"}),
        "bounce@evil.example")
    await processed(engine, 2)
    assert forged != ref
    request = await request_of(engine, ref)
    assert len(inbound(request)) == 1 and events(request, "message_received") == []
    other = await request_of(engine, forged)
    [threaded] = events(other, "threaded")
    assert threaded["placement"] == "new" and threaded["refused"] == [ref]
    assert f"{ALICE} failed sender authentication" in threaded["reason"]
    [said] = events(other, "authenticated")
    assert said["forged_from"] is True and said["sender_check"] == "failed"
    assert "From is forged" in said["summary"] and "no acknowledgement" in said["summary"]
    [ack_decision] = events(other, "acknowledgement")
    assert ack_decision == {"send": False, "reason": FORGED_FROM, "template": None}
    assert [m["direction"] for m in other["messages"]] == ["in"]
    assert other["status"] == "new"
    assert await acks_to(engine, ALICE) == 1  # nothing more went to the person impersonated

    # Alice's own reply, DMARC passing, lands on her request.
    await lmtp(front, mail(FRONT, PASS, subject=f"Re: [#{ref}] Printer on fire",
                           message_id="a2@example.com",
                           headers={"In-Reply-To": f"<{ack['message_id']}>"}))
    await processed(engine, 3)
    request = await request_of(engine, ref)
    assert [m["message_id"] for m in inbound(request)] == ["a1@example.com", "a2@example.com"]
    assert events(request, "message_received")[0]["reason"].startswith("replies to message")
    assert inbound(request)[1]["authentication"]["dmarc"] == "pass"
    # The reply's own verdicts beside its arrival on the timeline.
    assert [e["sender_check"] for e in events(request, "authenticated")] == [
        "verified", "verified"]
    assert dmarc_failed._value.get() - failed_before == 1  # intake_sender_auth_results


async def test_trust__results_below_the_second_received_are_not_believed(
        front: Gateway, engine: AsyncEngine) -> None:
    # Claims to come from our own domain, with a DMARC pass written by the
    # sender under their own Received: the front MTA wrote no results.
    claimed = (f"Authentication-Results: {MX}; dmarc=pass header.from=help.example;"
               " spf=pass smtp.mailfrom=help.example; dkim=pass header.d=help.example")
    spoofed = await lmtp(front, mail(
        FRONT, sender="ceo@help.example", subject="Pay this invoice today",
        message_id="s1@evil.example", below=(SENDERS_HOP, claimed)), "ceo@help.example")
    await processed(engine, 1)
    request = await request_of(engine, spoofed)
    [message] = inbound(request)
    verdicts = message["authentication"]
    assert verdicts["source"] == "trusted" and verdicts["authserv_id"] is None
    assert (verdicts["dmarc"], verdicts["spf"], verdicts["dkim"]) == ("none", "none", "none")
    assert verdicts["ignored"] == [MX]
    # Treated as unauthenticated: the rule for our own domain holds it.
    assert request["status"] == "quarantined" and request["queue"] == "review"
    assert events(request, "routed")[0]["matched"] == ["internal but unauthenticated"]
    [said] = events(request, "authenticated")
    assert f"not believed: {MX}" in said["summary"]


async def test_trust__rule_holds_unauthenticated_mail_claiming_our_domain(
        front: Gateway, engine: AsyncEngine) -> None:
    internal_pass = (f"Authentication-Results: {MX}; dmarc=pass (p=reject dis=none) "
                     "header.from=help.example")
    held = await lmtp(front, mail(FRONT, sender="it@help.example", subject="Password reset",
                                  message_id="h1@evil.example"), "it@help.example")
    genuine = await lmtp(front, mail(FRONT, internal_pass, sender="it@help.example",
                                     subject="Password reset", message_id="h2@help.example"),
                         "it@help.example")
    await processed(engine, 2)
    first, second = await request_of(engine, held), await request_of(engine, genuine)
    assert (first["status"], first["queue"]) == ("quarantined", "review")
    assert (second["status"], second["queue"]) == ("new", "general")
    assert events(second, "routed")[0]["matched"] == []


async def test_trust__forged_from_quarantine_holds_a_quarantined_request(
        db_url: str, engine: AsyncEngine) -> None:
    quarantine = (f"Authentication-Results: {MX}; dmarc=fail (p=quarantine dis=quarantine) "
                  "header.from=example.com")
    async with running(db_url, **sections(forged_from="quarantine")) as gateway:
        ref = await lmtp(gateway, mail(FRONT, quarantine, message_id="q1@evil.example"),
                         "bounce@evil.example")
        await processed(engine, 1)
    request = await request_of(engine, ref)
    assert request["status"] == "quarantined"
    [routed] = events(request, "routed")
    assert routed["quarantine"] is True
    assert routed["sources"]["quarantine"] == "sender_auth:forged_from"
    assert events(request, "acknowledgement") == [{"send": False, "reason": FORGED_FROM,
                                                    "template": None}]
    assert "is quarantined" in events(request, "authenticated")[0]["summary"]
    assert await count_rows(engine, outbox, outbox.c.kind == "email") == 0


async def test_trust__spam_score_routes_when_spam_headers_on(
        front: Gateway, engine: AsyncEngine) -> None:
    spamd = ("X-Spamd-Result: default: True [7.40 / 15.00];\r\n\tBAYES_SPAM(5.10)[99.9%];\r\n"
             "\tR_SPF_FAIL(1.00)[-all]")
    by_lmtp = await lmtp(front, mail(FRONT, PASS, spamd, message_id="x1@example.com"))
    # The SMTP listener trusts the same front MTA but reads no spam headers.
    by_smtp = await smtp(front, mail(FRONT, PASS, spamd, message_id="x2@example.com"))
    # A filter's header the sender wrote is no verdict.
    forged = await lmtp(front, mail(FRONT, PASS, message_id="x3@example.com",
                                    below=(SENDERS_HOP, "X-Spam-Score: 99")))
    await processed(engine, 3)
    spammy = await request_of(engine, by_lmtp)
    assert spammy["queue"] == "spam"
    assert inbound(spammy)[0]["spam"] == {"score": 7.4, "flag": True, "filter": "rspamd"}
    assert "spam filter (rspamd): score 7.4, flagged as spam" in (
        events(spammy, "authenticated")[0]["summary"])
    for ref in (by_smtp, forged):
        plain = await request_of(engine, ref)
        assert plain["queue"] == "general" and inbound(plain)[0]["spam"] is None
        assert inbound(plain)[0]["authentication"]["dmarc"] == "pass"


async def test_trust__agents_api_shows_the_verdicts(
        front: Gateway, engine: AsyncEngine) -> None:
    _, token = await create_token(engine, name="agent tool", role="admin", queues=[])
    ref = await lmtp(front, mail(FRONT, FAIL_REJECT, "X-Spam-Flag: YES",
                                 message_id="v1@evil.example"), "bounce@evil.example")
    await processed(engine, 1)
    async with aiohttp.ClientSession(base_url=front.http_url) as http:
        async with http.get(f"/v1/requests/{ref}", headers=auth(token)) as resp:
            assert resp.status == 200
            body = await resp.json()
        async with http.get("/v1/openapi.json") as resp:
            document = await resp.json()
    # As the published document describes a request (verdicts and spam included).
    Draft202012Validator({"$ref": "#/components/schemas/Request",
                          "components": document["components"]}).validate(body)
    [message] = inbound(body)
    assert message["authentication"] == {
        "source": "trusted", "spf": "pass", "spf_domain": "evil.example", "dkim": "none",
        "dkim_domains": [], "dmarc": "fail", "dmarc_policy": "reject",
        "from_domain": "example.com", "arc": "none", "authserv_id": MX, "ignored": []}
    assert message["spam"] == {"score": None, "flag": True, "filter": "spamassassin"}
    [ack] = [e for e in body["timeline"] if e["kind"] == "acknowledgement"]
    assert ack["data"]["reason"] == FORGED_FROM
    kinds = [e["kind"] for e in body["timeline"]]
    assert kinds.index("parsed") < kinds.index("authenticated") < kinds.index("classified")


async def test_trust__reroute_decides_with_the_verdicts_stored(
        front: Gateway, engine: AsyncEngine, capsys: pytest.CaptureFixture[str]) -> None:
    """`intake reroute` decides again with the verdicts of when the mail came,
    not as if nothing had been checked."""
    ref = await lmtp(front, mail(FRONT, PASS, message_id="r1@example.com"))
    await processed(engine, 1)
    assert (await request_of(engine, ref))["queue"] == "general"
    rules = RULES + [{"name": "authenticated customers", "when": {"auth.dmarc": "pass"},
                      "then": {"queue": "billing"}}]
    config = build_config(front.config.model_dump(exclude={"source"}) | {
        "rule": rules, "queue": QUEUES}, "t", {})
    args = argparse.Namespace(references=[ref], queue=None, all_open=False, dry_run=False)
    assert await _reroute(config, args) == 0
    assert f"{ref}: queue general -> billing" in capsys.readouterr().out
    assert (await request_of(engine, ref))["queue"] == "billing"
