"""The reference in the SMTP answer to a reply that threads onto an existing
request reads as that request (not "received" forever), on both databases."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.http.shared import WRITER
from gateway.pipeline.worker import Pipeline
from storage.inbox import NewItem
from storage.tokens import create_token
from tests.helpers import AppClient, auth


def _mail(message_id: str, subject: str, in_reply_to: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Ann <ann@example.com>"
    msg["To"] = "support@localhost"
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content("text of " + subject)
    return msg.as_bytes()


async def _deliver(app: web.Application, raw: bytes) -> str:
    """As the SMTP handler stores a mail: the reference its 250 answer names."""
    accepted = await app[WRITER].submit(NewItem("smtp", raw, {
        "mail_from": "ann@example.com", "rcpt_tos": ["support@localhost"],
        "peer": ["127.0.0.1", 25000], "helo": "client.example"}))
    return accepted.reference


async def test_reply_reference__reads_as_the_request_it_joined(
        app: web.Application, app_client: AppClient, engine: AsyncEngine,
        admin_token: str, pipeline: Pipeline) -> None:
    first = await _deliver(app, _mail("<first@example.com>", "Printer"))
    await pipeline.drain()
    reply = await _deliver(app, _mail("<second@example.com>", "Re: Printer",
                                      in_reply_to="<first@example.com>"))
    await pipeline.drain()
    async with app_client.get(f"/v1/requests/{reply}", headers=auth(admin_token)) as resp:
        assert resp.status == 200
        found: dict[str, Any] = await resp.json()
        assert resp.headers["Content-Location"].endswith(f"/v1/requests/{first}")
        assert resp.headers["ETag"] == f'"v{found["version"]}"'
    assert found["reference"] == first and found["input_reference"] == reply
    assert found["status"] == "new"
    assert [m["message_id"] for m in found["messages"] if m["direction"] == "in"] == [
        "first@example.com", "second@example.com"]
    # The request's own reference reads as before, without `input_reference`.
    async with app_client.get(f"/v1/requests/{first}", headers=auth(admin_token)) as resp:
        own = await resp.json()
        assert "Content-Location" not in resp.headers
    assert "input_reference" not in own and own["reference"] == first
    # Scope follows the request it joined: an agent of another queue sees neither.
    _, billing = await create_token(engine, name="b", role="agent", queues=["billing"])
    async with app_client.get(f"/v1/requests/{reply}", headers=auth(billing)) as resp:
        assert resp.status == 404
    # Actions by the reply's reference act on the request it joined.
    async with app_client.post(f"/v1/requests/{reply}/notes", json={"body": "seen"},
                               headers=auth(admin_token)) as resp:
        assert resp.status == 201
        assert (await resp.json())["reference"] == first


async def test_reply_reference__an_unprocessed_reply_is_still_received(
        app: web.Application, app_client: AppClient, admin_token: str,
        pipeline: Pipeline) -> None:
    await _deliver(app, _mail("<a@example.com>", "Hello"))
    await pipeline.drain()
    reply = await _deliver(app, _mail("<b@example.com>", "Re: Hello",
                                      in_reply_to="<a@example.com>"))
    async with app_client.get(f"/v1/requests/{reply}", headers=auth(admin_token)) as resp:
        found = await resp.json()
    assert (found["reference"], found["status"]) == (reply, "received")
