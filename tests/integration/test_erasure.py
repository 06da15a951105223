"""Right to erasure, on both backends: one person seeded across every channel,
erased, then every column of every table (reflected from the live database,
so a table added later is searched too) searched for them.

Zelda opens a request by mail with an attachment, copying Olaf; both reply on
it (so it is shared: anonymised, not deleted). Olaf opens one copying Zelda and
she replies there. She also posts over the API (with an Idempotency-Key) and
through a form with a file, and one of her mails is dead-lettered. Her
acknowledgements are in the outbox.
"""

from __future__ import annotations

import base64
import email.policy
import json
import warnings
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import aiohttp
import pytest
from sqlalchemy import MetaData, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Config
from gateway.erasure import run_pass, run_to_end
from gateway.pipeline.worker import Pipeline
from storage.audit import Audit
from storage.engine import utcnow
from storage.erasing import work_step
from storage.erasures import address_hash, claim, start
from storage.inbox import NewItem, accept_many
from storage.models import erasures, inbox_items, messages, outbox, requests
from storage.tokens import create_token
from tests.helpers import AppClient, auth, count_rows, make_config

ZELDA, NAME, MARKER = "Zelda.Q@erase.example", "Zelda Quixote", "ZQMARK7731"
OLAF, OLAF_NAME, OLAF_TEXT = "olaf@other.example", "Olaf Other", "The toner is replaced"
# Her address, and as the acknowledgement limits count it (dots and +tags folded).
NEEDLES = (ZELDA.lower(), "zeldaq@erase.example", NAME, MARKER)
FORM = {"id": "contact", "title": "Contact", "min_fill_seconds": 0,
        "rate_limit_per_minute": 1000, "file_types": ["text/*"],
        "field": [{"name": "name", "label": "Your name"},
                  {"name": "email", "label": "Email", "kind": "email", "required": True},
                  {"name": "subject", "label": "Subject", "required": True},
                  {"name": "message", "label": "Message", "kind": "textarea",
                   "required": True},
                  {"name": "attachments", "label": "Files", "kind": "file"}]}


@pytest.fixture
def config(db_url: str) -> Config:
    return make_config(db_url, form=[FORM], http={
        "listen": "127.0.0.1:0", "max_body_bytes": 100_000, "shutdown_seconds": 3.0,
        "form_secret": "form-secret-for-the-tests-0123456789"})


def mail(sender: tuple[str, str], subject: str, body: str, message_id: str, *,
         cc: list[tuple[str, str]] = (), in_reply_to: str | None = None,  # type: ignore[assignment]
         attachment: bytes | None = None, filename: str = "notes.txt") -> bytes:
    msg = EmailMessage()
    msg["From"] = f"{sender[0]} <{sender[1]}>"
    msg["To"] = "Support <support@localhost>"
    if cc:
        msg["Cc"] = ", ".join(f"{name} <{address}>" for name, address in cc)
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content(body, cte="7bit")
    if attachment is not None:
        msg.add_attachment(attachment, maintype="text", subtype="plain", filename=filename)
    return msg.as_bytes(policy=email.policy.SMTP)


async def _deliver(engine: AsyncEngine, pipeline: Pipeline, sender: str, raw: bytes,
                   sent: list[bytes] | None = None) -> int:
    if sent is not None and sender == ZELDA:
        sent.append(raw)
    [item] = await accept_many(engine, [NewItem("smtp", raw, {
        "mail_from": sender, "rcpt_tos": ["support@localhost"], "peer": ["127.0.0.1", 1],
        "helo": "client.example"})])
    await pipeline.drain()
    return item


async def seed(engine: AsyncEngine, http: AppClient, pipeline: Pipeline,
               sent: list[bytes] | None = None) -> dict[str, Any]:
    """Her (and Olaf's) requests by subject: their references. `sent`: her mails,
    as delivered, are added to it."""
    zelda, olaf = (NAME, ZELDA), (OLAF_NAME, OLAF)
    await _deliver(engine, pipeline, ZELDA, sent=sent, raw=mail(
        zelda, "Printer jammed", f"The printer jams. {MARKER} Call me, {NAME}.",
        "<z1@erase.example>", cc=[olaf], attachment=f"notes {MARKER}\n".encode()))
    await _deliver(engine, pipeline, ZELDA, sent=sent, raw=mail(
        zelda, "Re: Printer jammed", f"Still jammed {MARKER}.", "<z2@erase.example>",
        in_reply_to="<z1@erase.example>"))
    await _deliver(engine, pipeline, OLAF, raw=mail(
        olaf, "Re: Printer jammed", f"{OLAF_TEXT} on the second floor.",
        "<o1@other.example>", cc=[zelda], in_reply_to="<z1@erase.example>"))
    await _deliver(engine, pipeline, OLAF, raw=mail(
        olaf, "VPN down", "The VPN is down for the whole team.", "<o2@other.example>",
        cc=[zelda]))
    await _deliver(engine, pipeline, ZELDA, sent=sent, raw=mail(
        zelda, "Re: VPN down", f"Same here {MARKER}.", "<z3@erase.example>", cc=[olaf],
        in_reply_to="<o2@other.example>"))
    await _deliver(engine, pipeline, OLAF, raw=mail(
        olaf, "Re: VPN down", "It works again, thank you.", "<o3@other.example>",
        cc=[zelda], in_reply_to="<o2@other.example>"))
    _, intake = await create_token(engine, name="intake", role="intake", queues=[])
    async with http.post("/v1/requests", json={
            "requester": {"email": ZELDA, "name": NAME}, "subject": "Laptop",
            "body": f"My laptop is slow {MARKER}", "custom_fields": {"desk": "4.12"}},
            headers=auth(intake) | {"Idempotency-Key": "zelda-laptop"}) as resp:
        assert resp.status == 201, await resp.text()
    form = aiohttp.FormData()
    for key, value in {"name": NAME, "email": ZELDA, "subject": "Badge",
                       "message": f"My badge broke {MARKER}"}.items():
        form.add_field(key, value)
    form.add_field("attachments", f"badge photo {MARKER}".encode(), filename="badge.txt",
                   content_type="text/plain")
    async with http.post("/v1/forms/contact", data=form,
                         headers={"Accept": "application/json"}) as resp:
        assert resp.status == 201, await resp.text()
    # A mail that never became a request: dead-lettered.
    [dead] = await accept_many(engine, [NewItem("smtp", mail(
        zelda, "Broken", f"Unreadable {MARKER}", "<z4@erase.example>"),
        {"mail_from": ZELDA, "rcpt_tos": ["support@localhost"]})])
    async with engine.begin() as conn:
        await conn.execute(update(inbox_items).where(inbox_items.c.id == dead).values(
            state="dead", last_error="parse failed", attempts=3))
    await pipeline.drain()
    async with engine.connect() as conn:
        found = {row.subject: row.reference for row in await conn.execute(
            select(requests.c.subject, requests.c.reference))}
    return found


def _encodings(needle: str) -> list[bytes]:
    """The needle as it would stand in base64 at any alignment (its stable middle)."""
    raw = needle.encode()
    out = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw)
        out.append(encoded[4 if shift else 0:-4])
    return [e for e in out if len(e) >= 8]


def _hit(value: Any, needle: str) -> bool:
    low = needle.lower()
    if value is None:
        return False
    if isinstance(value, bytes | memoryview):
        data = bytes(value)
        return low.encode() in data.lower() or any(e in data for e in _encodings(needle))
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False)
    return low in str(value).lower()


async def scan(engine: AsyncEngine) -> set[tuple[str, str, str]]:
    """(table, column, needle) wherever a needle stands, in every table."""
    found = set()
    async with engine.connect() as conn:
        meta = MetaData()
        with warnings.catch_warnings():  # SQLite: expression indexes are not reflected
            warnings.simplefilter("ignore")
            await conn.run_sync(meta.reflect)
        for table in meta.sorted_tables:
            for row in await conn.execute(select(table)):
                for column, value in row._mapping.items():
                    for needle in NEEDLES:
                        if _hit(value, needle):
                            found.add((table.name, column, needle))
    return found


async def _erase(engine: AsyncEngine) -> dict[str, Any]:
    started, new = await start(engine, ZELDA, audit=Audit("cli"))
    assert new
    return await run_to_end(engine, started["id"], audit=Audit("cli"))


async def test_erasure__no_trace_left_and_others_intact(
        app_client: AppClient, engine: AsyncEngine, pipeline: Pipeline,
        admin_token: str) -> None:
    refs = await seed(engine, app_client, pipeline)
    assert set(refs) >= {"Printer jammed", "VPN down", "Laptop", "Badge"}
    before = await scan(engine)
    # The seed put her everywhere the test then looks (else it could not fail).
    for where in [("inbox_items", "raw"), ("messages", "text"), ("blobs", "content"),
                  ("requests", "requester_email"), ("outbox", "recipient"),
                  ("inbox_items", "idempotency_key")]:
        assert any(hit[:2] == where for hit in before) or where[1] == "idempotency_key", where
    assert {n for _, _, n in before} == set(NEEDLES)

    done = await _erase(engine)

    assert await scan(engine) == set()
    assert done["state"] == "done"
    assert set(done["references"]) == set(refs.values())
    assert done["counts"]["requests_deleted"] == 2  # the API and form requests
    assert done["counts"]["requests_anonymised"] == 1  # Olaf wrote on hers
    assert done["counts"]["blobs_deleted"] == 2
    async with engine.connect() as conn:
        row = (await conn.execute(select(erasures))).one()
        assert row.terms is None and row.claim_token is None
        assert row.address_hash == await address_hash(engine, ZELDA.upper())
        left = {r.subject: r for r in await conn.execute(select(requests))}
        olafs = (await conn.execute(select(messages.c.request_id, messages.c.text).where(
            messages.c.from_address == OLAF))).all()
        assert await count_rows(engine, outbox, outbox.c.recipient == ZELDA.lower()) == 0
    # Her own requests with no one else in them are gone; the shared ones stay.
    assert set(left) == {"Printer jammed", "VPN down"}
    assert left["Printer jammed"].requester_email is None
    assert len(olafs) == 3 and all(OLAF_TEXT in t or "VPN" in t or "works again" in t
                                   for _, t in olafs)
    # Olaf's requests read as before over the API, his messages whole, hers tombstones.
    for subject in ("Printer jammed", "VPN down"):
        async with app_client.get(f"/v1/requests/{refs[subject]}",
                                  headers=auth(admin_token)) as resp:
            assert resp.status == 200, await resp.text()
            text = await resp.text()
        assert OLAF in text
    async with app_client.get(f"/v1/requests/{refs['Laptop']}",
                              headers=auth(admin_token)) as resp:
        assert resp.status == 404

    # Twice is harmless: a second erasure finds nothing and changes nothing.
    again = await _erase(engine)
    assert again["references"] == [] and not any(again["counts"].values())
    assert await count_rows(engine, messages, messages.c.from_address == OLAF) == 3


async def test_erasure__http_starts_it_and_a_scheduler_pass_finishes_it(
        app_client: AppClient, engine: AsyncEngine, pipeline: Pipeline,
        admin_token: str) -> None:
    await seed(engine, app_client, pipeline)
    async with app_client.post("/v1/admin/erasures", json={"requester": ZELDA},
                               headers=auth(admin_token)) as resp:
        assert resp.status == 202, await resp.text()
        body = await resp.json()
        assert resp.headers["Location"].endswith(f"/v1/admin/erasures/{body['id']}")
    assert ZELDA.lower() not in json.dumps(body).lower()
    async with app_client.post("/v1/admin/erasures", json={"requester": ZELDA.upper()},
                               headers=auth(admin_token)) as resp:
        assert (await resp.json())["id"] == body["id"]  # the same one, unfinished
    for _ in range(20):  # bounded: a pass works for about two seconds
        await run_pass(engine)
        async with app_client.get(f"/v1/admin/erasures/{body['id']}",
                                  headers=auth(admin_token)) as resp:
            state = await resp.json()
        if state["state"] == "done":
            break
    assert state["state"] == "done", state
    assert await scan(engine) == set()


async def test_erasure__admin_only_and_address_checked(
        app_client: AppClient, engine: AsyncEngine) -> None:
    _, agent = await create_token(engine, name="agent", role="agent", queues=[])
    async with app_client.post("/v1/admin/erasures", json={"requester": ZELDA},
                               headers=auth(agent)) as resp:
        assert resp.status == 403
    _, admin = await create_token(engine, name="admin", role="admin", queues=[])
    async with app_client.post("/v1/admin/erasures", json={"requester": "not an address"},
                               headers=auth(admin)) as resp:
        assert resp.status == 422
        assert (await resp.json())["errors"][0]["pointer"] == "/requester"
    async with app_client.get("/v1/admin/erasures/999", headers=auth(admin)) as resp:
        assert resp.status == 404
    assert await count_rows(engine, erasures) == 0


async def test_erasure__one_holder_at_a_time_and_a_lost_claim_commits_nothing(
        engine: AsyncEngine) -> None:
    started, _ = await start(engine, ZELDA, audit=Audit("cli"))
    first = await claim(engine, lease_seconds=30)
    assert first is not None and first.id == started["id"]
    assert await claim(engine, lease_seconds=30) is None  # held: no second worker
    # Its lease runs out (the process died): another takes it over...
    later = utcnow() + timedelta(seconds=31)
    second = await claim(engine, lease_seconds=30, now=later)
    assert second is not None and second.token != first.token
    # ...and a step under the old claim is refused, changing nothing.
    assert await work_step(engine, first, lease_seconds=30, audit=None) is None
    outcome = await work_step(engine, second, lease_seconds=30, audit=None)
    assert outcome is not None and outcome.task.phase == "inbox"
