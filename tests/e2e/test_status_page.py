"""The customer's status page over real HTTP, on both backends: HTML for a
browser and JSON for an API client, nothing private on it, posts from it
(reply with files, resolve, reopen) and what refuses them.

The HTTP app alone (no listeners or workers): mail is stored as the SMTP
handler stores it and the pipeline is drained inline where a test needs it.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.http.shared import WRITER
from gateway.pipeline.worker import Pipeline
from storage import queries
from storage.engine import utcnow
from storage.inbox import NewItem
from storage.models import inbox_items, messages, requests
from tests.helpers import AppClient, auth, count_rows, delivery_report

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
           "Accept-Language": "en-GB,en;q=0.8"}
JSON = {"Accept": "application/json"}
TOKEN_FIELD = re.compile(r'name="_form_token" value="([^"]+)"')
TAGS = re.compile(r"<[^>]+>")


def _mail(message_id: str, *, sender: str = "Ann <ann@example.com>", subject: str = "Printer",
          body: str = "It is on fire.", headers: dict[str, str] | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "support@localhost"
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes()


async def _deliver(app: web.Application, raw: bytes, envelope_from: str = "ann@example.com"
                   ) -> str:
    """As the SMTP handler stores a mail: the reference its 250 answer names."""
    accepted = await app[WRITER].submit(NewItem("smtp", raw, {
        "mail_from": envelope_from, "rcpt_tos": ["support@localhost"],
        "peer": ["127.0.0.1", 25000]}))
    return accepted.reference


async def _request(engine: AsyncEngine, reference: str) -> dict[str, Any]:
    found = await queries.get_request(engine, reference)
    assert found is not None, reference
    return found


async def _new_request(app: web.Application, pipeline: Pipeline, engine: AsyncEngine,
                       message_id: str = "<p1@example.com>", **mail: Any) -> dict[str, Any]:
    reference = await _deliver(app, _mail(message_id, **mail))
    await pipeline.drain()
    return await _request(engine, reference)


def _text(page: str) -> str:
    """What a person reads on the page: the text between the tags, unescaped."""
    return html.unescape(TAGS.sub(" ", page))


async def _page(client: AppClient, token: str, **headers: str) -> tuple[str, str]:
    """The page's HTML and the token its forms carry."""
    async with client.get(f"/v1/status/{token}", headers=BROWSER | headers) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        page = await resp.text()
    found = TOKEN_FIELD.search(page)
    assert found is not None
    return page, html.unescape(found.group(1))


def _origin(client: AppClient) -> dict[str, str]:
    url = client.make_url("/")
    return {"Origin": f"{url.scheme}://{url.host}:{url.port}"}


async def _post(client: AppClient, path: str, fields: dict[str, Any],
                headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    for name, value in fields.items():
        for one in value if isinstance(value, list) else [value]:
            if isinstance(one, tuple):
                form.add_field(name, one[1], filename=one[0], content_type=one[2])
            else:
                form.add_field(name, one)
    return await client.post(path, data=form, allow_redirects=False,
                             headers=BROWSER | _origin(client) | (headers or {}))


async def test_status_page__html_for_a_browser_json_for_a_client(
        app: web.Application, app_client: AppClient, engine: AsyncEngine,
        pipeline: Pipeline) -> None:
    request = await _new_request(app, pipeline, engine)
    token = request["status_token"]
    page, _ = await _page(app_client, token)
    async with app_client.get(f"/v1/status/{token}", headers=BROWSER) as resp:
        policy = resp.headers["Content-Security-Policy"]
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["Referrer-Policy"] == "same-origin"
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "script" not in page.lower() and "http://" not in page and "https://" not in page
    assert re.search(r'<html lang="en"', page)
    assert "<main>" in page and "<h1>" in page and 'for="input-message"' in page
    text = _text(page)
    assert request["reference"] in text and "Received" in text
    assert "It is on fire." in text and "We will answer you as soon as we can." in text
    # An API client, and one that says nothing (*/*), keep the JSON.
    for headers in (JSON, {"Accept": "*/*"}, {}):
        async with app_client.get(f"/v1/status/{token}", headers=headers) as resp:
            assert resp.status == 200 and resp.content_type == "application/json"
            data = await resp.json()
        assert data["reference"] == request["reference"] and data["status"] == "new"
        assert [m["from"] for m in data["messages"]] == ["you"]
    # An unknown link: a clear page, or the problem document it always was.
    async with app_client.get("/v1/status/no-such-link", headers=BROWSER) as resp:
        assert resp.status == 404 and resp.content_type == "text/html"
        assert "This link is not valid" in await resp.text()  # with the lookup form
    async with app_client.get("/v1/status/no-such-link") as resp:
        assert resp.status == 404 and resp.content_type == "application/problem+json"


async def test_status_page__in_the_language_the_request_was_written_in(
        app: web.Application, app_client: AppClient, engine: AsyncEngine,
        pipeline: Pipeline) -> None:
    # The customer wrote German: that beats the browser's English.
    request = await _new_request(
        app, pipeline, engine, subject="Drucker brennt",
        body="Guten Tag, mein Drucker im zweiten Stock brennt seit heute Morgen. Können Sie "
             "bitte schnell jemanden schicken? Vielen Dank und freundliche Grüße")
    async with app_client.get(f"/v1/status/{request['status_token']}",
                              headers=BROWSER) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Language"] == "de"
        assert '<html lang="de">' in await resp.text()


async def test_status_page__no_note_automatic_mail_or_other_address_is_shown(
        app: web.Application, app_client: AppClient, engine: AsyncEngine,
        pipeline: Pipeline, admin_token: str) -> None:
    request = await _new_request(app, pipeline, engine, headers={"Cc": "Bob <bob@example.com>"})
    ref = request["reference"]
    [ack] = [m for m in request["messages"] if m["direction"] == "out"]
    assert ack["flags"]["kind"] == "acknowledgement"
    async with app_client.post(f"/v1/requests/{ref}/notes", headers=auth(admin_token),
                               json={"body": "INTERNAL: she is a VIP"}) as resp:
        assert resp.status == 201
    async with app_client.post(f"/v1/requests/{ref}/replies", headers=auth(admin_token),
                               json={"body": "Try turning it off and on.",
                                     "cc": ["carol@example.com"]}) as resp:
        assert resp.status == 201
        reply_id = (await resp.json())["message_id"]
    # Bob, whom Ann copied, answers; Ann's mailbox answers by itself; our reply bounces.
    await _deliver(app, _mail("<b1@example.com>", sender="Bob <bob@example.com>",
                              subject="Re: Printer", body="Mine too.",
                              headers={"In-Reply-To": "<p1@example.com>"}), "bob@example.com")
    await _deliver(app, _mail("<ooo@example.com>", subject="Out of office", body="AWAY-TEXT",
                              headers={"In-Reply-To": f"<{reply_id}>",
                                       "Auto-Submitted": "auto-replied"}))
    await _deliver(app, _bounce(reply_id), "")
    # A stranger's mail that named the request stays out of it.
    await _deliver(app, _mail("<m1@evil.example>", sender="Mallory <mallory@evil.example>",
                              subject="Re: Printer", body="STRANGER-TEXT",
                              headers={"In-Reply-To": "<p1@example.com>"}),
                   "mallory@evil.example")
    await pipeline.drain()
    stored = await _request(engine, ref)
    flags = [m["flags"] or {} for m in stored["messages"]]
    assert any(f.get("auto_reply") for f in flags) and any(f.get("bounce") for f in flags)
    assert any(m["from"]["address"] == "bob@example.com" for m in stored["messages"])
    page, _ = await _page(app_client, request["status_token"])
    text = _text(page)
    assert "Try turning it off and on." in text and "Mine too." in text
    assert "Bob (copied by you)" in text and "It is on fire." in text
    for private in ("VIP", "AWAY-TEXT", "STRANGER-TEXT", "could not be delivered",
                    "Thank you", "@", "carol", "mallory", "support@localhost"):
        assert private not in text, private
    assert "bob@example.com" not in page and ack["text"][:40] not in page
    # The JSON leaves out the automatic mail too (our acknowledgement included).
    async with app_client.get(f"/v1/status/{request['status_token']}") as resp:
        shown = [m["text"] for m in (await resp.json())["messages"]]
    assert shown == ["It is on fire.", "Try turning it off and on.", "Mine too."]


def _bounce(original_id: str) -> bytes:
    return delivery_report(original_id)


async def test_status_page__cross_site_posts_are_refused_and_change_nothing(
        app: web.Application, app_client: AppClient, engine: AsyncEngine,
        pipeline: Pipeline) -> None:
    request = await _new_request(app, pipeline, engine)
    other = await _new_request(app, pipeline, engine, "<p2@example.com>", subject="Other")
    token = request["status_token"]
    _, own_token = await _page(app_client, token)
    _, others_token = await _page(app_client, other["status_token"])
    items = await count_rows(engine, inbox_items)
    attempts: list[tuple[dict[str, Any], dict[str, str]]] = [
        ({}, {}),                                             # no page token
        ({"_form_token": others_token}, {}),                  # another request's page
        ({"_form_token": own_token + "x"}, {}),               # tampered with
        ({"_form_token": own_token}, {"Origin": "https://evil.example"}),
        ({"_form_token": own_token}, {"Origin": "null"}),
    ]
    for fields, headers in attempts:
        for action in ("resolve", "replies"):
            body = fields | ({"message": "Send the invoices to me."} if action == "replies"
                             else {})
            resp = await _post(app_client, f"/v1/status/{token}/{action}", body, headers)
            assert resp.status == 403, (action, fields, headers)
            assert resp.content_type == "text/html"
            assert "We could not accept this" in await resp.text()
    # Without an Origin, a Referer from another site is refused as well.
    resp = await app_client.post(f"/v1/status/{token}/resolve", allow_redirects=False,
                                 data={"_form_token": own_token},
                                 headers={"Referer": "https://evil.example/page"})
    assert resp.status == 403
    await pipeline.drain()
    assert await count_rows(engine, inbox_items) == items
    after = await _request(engine, request["reference"])
    assert after["status"] == "new" and after["version"] == request["version"]
    assert len(after["messages"]) == len(request["messages"])
    # The page's own token from our own origin goes through.
    resp = await _post(app_client, f"/v1/status/{token}/resolve", {"_form_token": own_token})
    assert resp.status == 303


async def test_status_page__reply_with_files_lands_on_the_request_byte_identical(
        app: web.Application, app_client: AppClient, engine: AsyncEngine,
        pipeline: Pipeline, admin_token: str) -> None:
    request = await _new_request(app, pipeline, engine)
    ref, token = request["reference"], request["status_token"]
    # We ask something and wait for the answer.
    async with app_client.post(f"/v1/requests/{ref}/replies", headers=auth(admin_token),
                               json={"body": "Which model is it?", "status": "waiting"}) as resp:
        assert resp.status == 201
    _, page_token = await _page(app_client, token)
    small, large = b"model: LX-9\n", os.urandom(700_000)  # one spooled to disk
    resp = await _post(app_client, f"/v1/status/{token}/replies", {
        "_form_token": page_token, "message": "It is the LX-9.",
        "attachments": [("model.txt", small, "text/plain"),
                        ("photo.png", large, "image/png")]})
    assert resp.status == 303
    assert resp.headers["Location"] == f"/v1/status/{token}?done=replied"
    # Stored before the answer: the item is in the inbox, its files with it.
    assert await count_rows(engine, inbox_items, inbox_items.c.state == "pending") == 1
    # The same page sent twice is one reply.
    again = await _post(app_client, f"/v1/status/{token}/replies",
                        {"_form_token": page_token, "message": "It is the LX-9."})
    assert again.status == 409
    await pipeline.drain()
    async with app_client.get(f"/v1/requests/{ref}", headers=auth(admin_token)) as resp:
        found = await resp.json()
    assert found["status"] == "open"  # the customer answered: back to us
    [mine] = [m for m in found["messages"] if m["flags"].get("via") == "status_page"]
    assert (mine["direction"], mine["from"]["address"]) == ("in", "ann@example.com")
    assert mine["text"] == "It is the LX-9."
    files = {a["filename"]: a["id"] for a in mine["attachments"]}
    assert set(files) == {"model.txt", "photo.png"}
    for name, content in (("model.txt", small), ("photo.png", large)):
        async with app_client.get(f"/v1/requests/{ref}/attachments/{files[name]}",
                                  headers=auth(admin_token)) as resp:
            assert hashlib.sha256(await resp.read()).digest() == hashlib.sha256(
                content).digest()
        async with app_client.get(f"/v1/status/{token}/attachments/{files[name]}") as resp:
            assert resp.status == 200 and await resp.read() == content
            assert resp.headers["Content-Security-Policy"] == "sandbox"
    page, _ = await _page(app_client, token, )
    assert "It is the LX-9." in _text(page) and "photo.png" in page
    # Threaded on the request: not a new one, and not acknowledged again.
    assert await count_rows(engine, requests) == 1
    assert len([m for m in found["messages"] if m["direction"] == "out"]) == 2


async def test_status_page__files_of_others_are_listed_not_downloadable(
        app: web.Application, app_client: AppClient, engine: AsyncEngine,
        pipeline: Pipeline) -> None:
    request = await _new_request(app, pipeline, engine, headers={"Cc": "Bob <bob@example.com>"})
    other = await _new_request(app, pipeline, engine, "<p2@example.com>")
    bob = EmailMessage()
    bob["From"], bob["To"], bob["Subject"] = "Bob <bob@example.com>", "support@localhost", "Re"
    bob["Message-ID"], bob["In-Reply-To"] = "<b1@example.com>", "<p1@example.com>"
    bob.set_content("See attached.")
    bob.add_attachment(b"bob's file", maintype="application", subtype="pdf",
                       filename="bob.pdf")
    await _deliver(app, bob.as_bytes(), "bob@example.com")
    await pipeline.drain()
    stored = await _request(engine, request["reference"])
    [bobs] = [a["id"] for m in stored["messages"] for a in m["attachments"]]
    page, _ = await _page(app_client, request["status_token"])
    assert "bob.pdf" in page and "attachments/" not in page
    for token in (request["status_token"], other["status_token"]):
        async with app_client.get(f"/v1/status/{token}/attachments/{bobs}") as resp:
            assert resp.status == 404


async def _set_resolved(engine: AsyncEngine, reference: str, days_ago: float) -> None:
    async with engine.begin() as conn:
        await conn.execute(update(requests).where(requests.c.reference == reference).values(
            status="resolved", resolved_at=utcnow() - timedelta(days=days_ago)))


async def test_status_page__resolve_then_reopen_within_and_past_the_window(
        app: web.Application, app_client: AppClient, engine: AsyncEngine,
        pipeline: Pipeline) -> None:
    request = await _new_request(app, pipeline, engine)
    ref, token = request["reference"], request["status_token"]
    _, page_token = await _page(app_client, token)
    resp = await _post(app_client, f"/v1/status/{token}/resolve", {"_form_token": page_token})
    assert (resp.status, resp.headers["Location"]) == (303, f"/v1/status/{token}?done=resolved")
    found = await _request(engine, ref)
    assert found["status"] == "resolved" and found["resolved_at"] is not None
    [event] = [e for e in found["timeline"] if e["kind"] == "status_changed"]
    assert event["actor"] == "requester" and event["data"]["to"] == "resolved"
    page, page_token = await _page(app_client, token, **{"Accept-Language": "en"})
    assert "Reopen my request" in page and "Mark as resolved" not in page
    resp = await _post(app_client, f"/v1/status/{token}/reopen", {"_form_token": page_token})
    assert resp.status == 303
    found = await _request(engine, ref)
    assert (found["status"], found["reopened_count"]) == ("reopened", 1)
    assert [e["actor"] for e in found["timeline"] if e["kind"] == "reopened"] == ["requester"]
    # Resolved again: a reply from the page reopens it, as a mail would.
    await _set_resolved(engine, ref, days_ago=2)
    resp = await _post(app_client, f"/v1/status/{token}/replies",
                       {"_form_token": page_token, "message": "Still broken."})
    assert resp.status == 303
    await pipeline.drain()
    found = await _request(engine, ref)
    assert (found["status"], found["reopened_count"]) == ("reopened", 2)
    assert found["messages"][-1]["text"] == "Still broken."
    # Finished longer ago than the queue's window (14 days): not reopened; a reply
    # makes a new request that follows it, acknowledged with its own link.
    await _set_resolved(engine, ref, days_ago=20)
    page, page_token = await _page(app_client, token)  # a new page: a new reply token
    assert "Reopen my request" not in page and "can no longer be reopened" in page
    resp = await _post(app_client, f"/v1/status/{token}/reopen", {"_form_token": page_token})
    assert resp.status == 409 and "too long ago" in await resp.text()
    assert (await _request(engine, ref))["status"] == "resolved"
    resp = await _post(app_client, f"/v1/status/{token}/replies",
                       {"_form_token": page_token, "message": "It is broken again."})
    assert resp.status == 303
    await pipeline.drain()
    async with engine.connect() as conn:
        rows = (await conn.execute(select(requests.c.reference, requests.c.linked_from_id,
                                          requests.c.status).order_by(requests.c.id))).all()
    assert len(rows) == 2 and rows[1].linked_from_id is not None and rows[1].status == "new"
    follow_up = await _request(engine, rows[1].reference)
    assert [m["direction"] for m in follow_up["messages"]] == ["in", "out"]  # acknowledged
    assert (await _request(engine, ref))["status"] == "resolved"


async def test_status_page__limits_size_count_and_rate(
        app: web.Application, app_client: AppClient, engine: AsyncEngine,
        pipeline: Pipeline) -> None:
    request = await _new_request(app, pipeline, engine)
    token = request["status_token"]
    _, page_token = await _page(app_client, token)
    items = await count_rows(engine, inbox_items)
    too_large = await _post(app_client, f"/v1/status/{token}/replies", {
        "_form_token": page_token, "message": "Big",
        "attachments": [("big.pdf", b"x" * (10 * 1024 * 1024 + 1), "application/pdf")]})
    assert too_large.status == 413 and too_large.content_type == "text/html"
    assert "is larger than the limit of 10 MB" in await too_large.text()
    too_many = await _post(app_client, f"/v1/status/{token}/replies", {
        "_form_token": page_token, "message": "Many",
        "attachments": [(f"{n}.txt", b"x", "text/plain") for n in range(4)]})
    assert too_many.status == 422 and "at most 3 files" in (await too_many.text()).lower()
    wrong_type = await _post(app_client, f"/v1/status/{token}/replies", {
        "_form_token": page_token, "message": "Exe",
        "attachments": [("run.exe", b"MZ", "application/x-msdownload")]})
    assert wrong_type.status == 422
    empty = await _post(app_client, f"/v1/status/{token}/replies",
                        {"_form_token": page_token, "message": "  "})
    assert empty.status == 422 and "write a message" in (await empty.text()).lower()
    long_text = await _post(app_client, f"/v1/status/{token}/replies",
                            {"_form_token": page_token, "message": "x" * 20_001})
    assert long_text.status == 422
    assert await count_rows(engine, inbox_items) == items
    # Ten posts a minute per link (five were sent above), then 429 with Retry-After.
    statuses = []
    for _ in range(7):
        resp = await _post(app_client, f"/v1/status/{token}/resolve",
                           {"_form_token": page_token})
        statuses.append(resp.status)
    assert statuses[:5] == [303] * 5 and statuses[5:] == [429, 429]
    assert int(resp.headers["Retry-After"]) >= 1
    async with engine.connect() as conn:
        count = (await conn.execute(select(messages.c.id))).all()
    assert len(count) == 2  # the mail and its acknowledgement: nothing more stored
