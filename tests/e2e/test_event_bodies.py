"""What webhook subscribers receive for a request's whole life, checked against
the OpenAPI document's `webhooks`: every change they would act on is sent
(the customer's messages, a note, `status_changed` from a reply that sets
`waiting` and from a customer's answer, the reopening), each body names the
requester and matches its documented schema."""

from __future__ import annotations

import asyncio
import smtplib
from typing import Any

import aiohttp
from jsonschema import Draft202012Validator

from domain.lifecycle import PublicEvent
from gateway.app import Gateway, start, stop
from tests.e2e.test_events import SECRET, Receiver, config_with
from tests.helpers import auth, wait_for


def mail(message_id: str, parent: str | None = None) -> bytes:
    threading = f"In-Reply-To: <{parent}>\r\n" if parent else ""
    return (f"From: Ann <ann@example.com>\r\nTo: support@localhost\r\nSubject: Scanner\r\n"
            f"Message-ID: <{message_id}>\r\n{threading}\r\nIt jams.\r\n").encode()


async def send(gateway: Gateway, data: bytes) -> str:
    def session() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=10) as client:
            client.ehlo()
            client.mail("ann@example.com")
            client.rcpt("support@localhost")
            return client.data(data)

    code, reply = await asyncio.to_thread(session)
    assert code == 250, reply
    return reply.split()[-1].decode()


def validator(document: dict[str, Any], event: str) -> Draft202012Validator:
    """The documented body of `event`, its references resolved in the document."""
    name = document["webhooks"][event]["post"]["requestBody"]["content"][
        "application/json"]["schema"]["$ref"]
    return Draft202012Validator({"$ref": name, "components": document["components"]})


async def test_event_bodies__a_requests_life_told_as_documented(
        db_url: str, admin_token: str) -> None:
    receiver = Receiver()
    url = await receiver.up()
    gateway = await start(config_with(db_url, webhook=[{
        "name": "crm", "url": url, "events": ["*"], "secret": SECRET, "allow_private": True,
        "timeout": 5}]))
    try:
        async with aiohttp.ClientSession(base_url=gateway.http_url,
                                         headers=auth(admin_token)) as http:
            ref = await send(gateway, mail("s1@example.com"))

            async def events() -> list[str]:
                return [c["event"] for c in receiver.accepted if c["body"]["reference"] == ref]

            await wait_for(lambda: _has(events, "routed"))
            async with http.post(f"/v1/requests/{ref}/notes", json={"body": "VIP"}) as resp:
                assert resp.status == 201
            async with http.post(f"/v1/requests/{ref}/replies",
                                 json={"body": "Which model?", "status": "waiting"}) as resp:
                assert resp.status == 201
            await wait_for(lambda: _has(events, "status_changed"))
            await send(gateway, mail("s2@example.com", parent="s1@example.com"))
            await wait_for(lambda: _has(events, "message_received"))
            async with http.get(f"/v1/requests/{ref}") as resp:
                etag = resp.headers["ETag"]
            async with http.patch(f"/v1/requests/{ref}", json={"status": "resolved"},
                                  headers={"If-Match": etag}) as resp:
                assert resp.status == 200
            await send(gateway, mail("s3@example.com", parent="s1@example.com"))
            await wait_for(lambda: _has(events, "reopened"))
            async with http.get("/v1/openapi.json") as resp:
                document = await resp.json()
    finally:
        await stop(gateway, grace=3)
        await receiver.down()
    mine = [c for c in receiver.accepted if c["body"]["reference"] == ref]
    statuses = [(c["body"]["data"]["from"], c["body"]["data"]["status"]) for c in mine
                if c["event"] == "status_changed"]
    assert statuses == [("new", "waiting"), ("waiting", "open"), ("open", "resolved"),
                        ("resolved", "reopened")]
    names = [c["event"] for c in mine]
    assert {"created", "routed", "note_added", "replied", "message_received",
            "reopened"} <= set(names)
    assert names.count("message_received") == 2
    for call in mine:
        assert call["verified"]
        assert call["body"]["requester"] == {"email": "ann@example.com", "name": "Ann"}
        errors = list(validator(document, call["event"]).iter_errors(call["body"]))
        assert errors == [], (call["event"], [e.message for e in errors])


async def _has(events: Any, name: str) -> bool:
    return name in await events()


def test_event_bodies__every_event_is_documented() -> None:
    from gateway.http.openapi import document

    webhooks = document("http://127.0.0.1")["webhooks"]
    assert set(webhooks) == {event.value for event in PublicEvent}
