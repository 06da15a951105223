"""Classification and routing rules, end to end over SMTP and HTTP."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import Gateway, start, stop
from gateway.config import Config, load_config
from storage import queries
from tests.helpers import wait_for

RULES = '''
[intake]
addresses = ["support@localhost", "billing@localhost"]

[pipeline]
workers = 1
poll_seconds = 0.2
linger_seconds = 0.01
reload_poll_seconds = 0.2

[[queue]]
name = "general"
[[queue]]
name = "billing"
[[queue]]
name = "ops"
[[queue]]
name = "complaints"
[[queue]]
name = "network"
[[queue]]
name = "review"

[routing.lists]
blocked = ["@spam.example"]

[[component]]
name = "vpn"
aliases = ["vpn", "remote access", "anyconnect"]
queue = "network"

[[rule]]
name = "blocked senders"
when = { on_list = "blocked" }
then = { quarantine = true, queue = "review" }
stop = true

[[rule]]
name = "billing address"
when = { recipient = "billing@localhost" }
then = { queue = "billing" }

[[rule]]
name = "outage"
when.any = [{ subject.matches = "(?i)\\\\b(outage|down)\\\\b" }, { body.contains = "urgent" }]
then = { type = "incident", priority = "P1", queue = "ops" }
stop = true

[[rule]]
name = "complaints desk"
when = { class.type = "complaint" }
then = { queue = "complaints", tags = ["complaint"] }

[[rule]]
name = "urgent reply"
applies_to = "replies"
when = { body.contains = "urgent" }
then = { priority = "P1" }
'''

def inbound(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The customer's messages (acknowledgements and replies are ours)."""
    return [m for m in request["messages"] if m["direction"] == "in"]


def write_config(path: Path, text: str = RULES) -> Path:
    path.write_text(text)
    return path


def config_for(path: Path, db_url: str) -> Config:
    return load_config(path, env={"INTAKE_DATABASE_URL": db_url,
                                  "INTAKE_SMTP_LISTEN": "127.0.0.1:0",
                                  "INTAKE_HTTP_LISTEN": "127.0.0.1:0"})


@pytest.fixture
async def routed(db_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    gateway = await start(config_for(write_config(tmp_path / "intake.toml"), db_url))
    yield gateway
    await stop(gateway, grace=3)


async def send(gateway: Gateway, *, to: str = "support@localhost", subject: str, body: str,
               sender: str = "carol@example.com", extra: str = "") -> str:
    data = (f"From: Carol <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n{extra}"
            f"Message-ID: <{abs(hash((subject, body, sender)))}@example.com>\r\n\r\n"
            f"{body}\r\n").encode()

    def session() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=10) as client:
            client.ehlo()
            client.mail(sender)
            client.rcpt(to)
            return client.data(data)

    code, reply = await asyncio.to_thread(session)
    assert code == 250, reply
    return reply.split()[-1].decode()


async def landed(engine: AsyncEngine, reference: str) -> dict[str, Any]:
    async def get() -> dict[str, Any] | None:
        found = await queries.get_request(engine, reference)
        return found if found and found.get("status") != "received" else None

    return await wait_for(get)


def routed_event(request: dict[str, Any]) -> dict[str, Any]:
    return [e for e in request["timeline"] if e["kind"] == "routed"][-1]["data"]


async def test_routing__billing_address_goes_to_billing(
        routed: Gateway, engine: AsyncEngine) -> None:
    ref = await send(routed, to="billing@localhost", subject="Invoice 42",
                     body="Please send me a copy of invoice 42.")
    request = await landed(engine, ref)
    assert request["queue"] == "billing"
    decision = routed_event(request)
    assert decision["matched"] == ["billing address"]
    assert "billing@localhost" in decision["rules"][0]["reason"]


async def test_routing__outage_is_p1_incident_for_ops(
        routed: Gateway, engine: AsyncEngine) -> None:
    ref = await send(routed, subject="Website down since 9am",
                     body="Nobody can log in to the portal.")
    request = await landed(engine, ref)
    assert (request["queue"], request["priority"], request["type"]) == ("ops", "P1", "incident")
    assert routed_event(request)["stopped_by"] == "outage"


async def test_routing__complaint_over_http(routed: Gateway, engine: AsyncEngine,
                                            admin_token: str) -> None:
    body = {"requester": {"email": "dan@example.com"}, "subject": "Very disappointed",
            "body": "This is unacceptable. I want to make a formal complaint about the service."}
    async with aiohttp.ClientSession(base_url=routed.http_url) as http:
        async with http.post("/v1/requests", json=body,
                             headers={"Authorization": f"Bearer {admin_token}"}) as resp:
            assert resp.status == 201
            ref = (await resp.json())["reference"]
    request = await landed(engine, ref)
    assert (request["type"], request["queue"]) == ("complaint", "complaints")
    assert request["tags"] == ["complaint"]
    classified = [e for e in request["timeline"] if e["kind"] == "classified"][0]["data"]
    assert classified["classification"]["type"]["cues"]


async def test_routing__component_catalogue_sends_to_owning_queue(
        routed: Gateway, engine: AsyncEngine) -> None:
    ref = await send(routed, subject="AnyConnect keeps dropping",
                     body="My remote access drops every ten minutes.")
    request = await landed(engine, ref)
    assert (request["component"], request["queue"]) == ("vpn", "network")


async def test_routing__quarantine_held_visible_releasable(
        routed: Gateway, engine: AsyncEngine, admin_token: str) -> None:
    ref = await send(routed, subject="Cheap watches", body="Buy now", sender="x@spam.example")
    request = await landed(engine, ref)
    assert request["status"] == "quarantined"
    ack = [e for e in request["timeline"] if e["kind"] == "acknowledgement"][0]["data"]
    assert ack["send"] is False
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with aiohttp.ClientSession(base_url=routed.http_url) as http:
        async with http.get("/v1/quarantine", headers=headers) as resp:
            assert [i["reference"] for i in (await resp.json())["items"]] == [ref]
        async with http.post(f"/v1/quarantine/{ref}/release", headers=headers) as resp:
            assert resp.status == 200
            assert (await resp.json())["queue"] == "review"
        async with http.post(f"/v1/quarantine/{ref}/release", headers=headers) as resp:
            assert resp.status == 409
        async with http.get("/v1/quarantine", headers=headers) as resp:
            assert (await resp.json())["items"] == []
    released = await queries.get_request(engine, ref)
    assert released is not None and released["status"] == "new"
    assert released["timeline"][-1]["kind"] == "released"


async def test_routing__reply_not_rerouted_unless_a_reply_rule_says_so(
        routed: Gateway, engine: AsyncEngine) -> None:
    ref = await send(routed, to="billing@localhost", subject="Invoice 7", body="Copy please.")
    first = await landed(engine, ref)
    assert (first["queue"], first["priority"]) == ("billing", "P3")
    # A reply mentioning an outage would match "outage", a rule for new requests only.
    mid = inbound(first)[0]["message_id"]
    await send(routed, subject=f"Re: [#{ref}] Invoice 7 - site down?", body="Is the site down?",
               extra=f"In-Reply-To: <{mid}>\r\n")

    async def two_messages() -> dict[str, Any] | None:
        found = await queries.get_request(engine, ref)
        return found if found and len(inbound(found)) == 2 else None

    after = await wait_for(two_messages)
    assert (after["queue"], after["priority"], after["type"]) == ("billing", "P3",
                                                                  first["type"])
    # "urgent reply" applies to replies: it raises the priority, and says why.
    await send(routed, subject=f"Re: [#{ref}] Invoice 7", body="This is urgent now.",
               extra=f"In-Reply-To: <{mid}>\r\n")

    async def three_messages() -> dict[str, Any] | None:
        found = await queries.get_request(engine, ref)
        return found if found and len(inbound(found)) == 3 else None

    last = await wait_for(three_messages)
    assert (last["queue"], last["priority"]) == ("billing", "P1")
    rerouted = [e for e in last["timeline"] if e["kind"] == "rerouted"]
    assert rerouted[0]["data"]["changes"] == {"priority": "P1"}
    assert rerouted[0]["data"]["decision"]["matched"] == ["urgent reply"]


async def test_routing__reload_changes_next_message_broken_reload_changes_nothing(
        db_url: str, engine: AsyncEngine, tmp_path: Path, admin_token: str) -> None:
    path = write_config(tmp_path / "intake.toml")
    gateway = await start(config_for(path, db_url))
    headers = {"Authorization": f"Bearer {admin_token}"}
    try:
        before = await landed(engine, await send(gateway, subject="Printer jam",
                                                 body="The printer is jammed."))
        assert before["queue"] == "general"

        path.write_text(RULES + '''
[[rule]]
name = "printers"
when = { subject.contains = "printer" }
then = { queue = "ops" }
''')

        async def reloaded() -> bool:
            return len(gateway.pipeline.rules.rules.rules) == 6

        await wait_for(reloaded)
        after = await landed(engine, await send(gateway, subject="Printer jam again",
                                                body="Still jammed."))
        assert after["queue"] == "ops"

        # A broken file: the rules in force stay, and the admin endpoint says why.
        path.write_text(RULES + '''
[[rule]]
name = "broken regex"
when = { subject.matches = "(unclosed" }
then = { queue = "nowhere" }
''')

        async def refused() -> dict[str, Any] | None:
            async with aiohttp.ClientSession(base_url=gateway.http_url) as http:
                async with http.get("/v1/admin/rules", headers=headers) as resp:
                    status = await resp.json()
            last = status["last_reload"]
            return status if last and not last["ok"] else None

        status = await wait_for(refused)
        errors = " ".join(status["last_reload"]["errors"])
        assert "broken regex" in errors and str(path) in errors
        assert status["rules"] == 6
        still = await landed(engine, await send(gateway, subject="Printer jam third",
                                                body="Jammed."))
        assert still["queue"] == "ops"
    finally:
        await stop(gateway, grace=3)
