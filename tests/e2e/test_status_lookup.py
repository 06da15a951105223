"""The status lookup page, one-time access links and status-link rotation, over
real HTTP against the app, with the outbox and on both databases.

The lookup answers the same page (byte for byte but its token) and in the same
time whatever was asked; a match queues exactly one mail to the requester with
a link that works once and not after it expires; a cross-site post is refused
and changes nothing; the limits hold. A rotated status link is refused with a
clear page, the new one works and is mailed, from the API and the command line.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import start, stop
from gateway.http.forms import FORMS
from gateway.http.limits import Buckets
from gateway.http.status_lookup import STATUS_LINKS, TOKEN_AGE_SECONDS, page_token
from gateway.pipeline.worker import Pipeline
from storage import queries
from storage.engine import utcnow
from storage.models import audit_events, events, outbox, requests, status_links
from storage.status_links import ROTATED, SENT, was_replaced
from storage.tokens import create_token
from tests.e2e.test_cli import intake
from tests.e2e.test_outbound import Relay, received_count, send
from tests.helpers import AppClient, auth, make_config, reference_of
from tests.process import write_config

REQUESTER = "ann@example.com"
_TOKEN = re.compile(r'name="_form_token" value="([^"]+)"')
_KEY = re.compile(r"/status/access/([A-Za-z0-9_-]{43})")
_STATUS_URL = re.compile(r"/v1/status/([A-Za-z0-9_-]+)")
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.fixture
async def tokens(engine: AsyncEngine) -> dict[str, str]:
    _, intake = await create_token(engine, name="intake", role="intake", queues=[])
    _, agent = await create_token(engine, name="agent", role="agent", queues=[])
    _, billing = await create_token(engine, name="billing", role="agent", queues=["billing"])
    return {"intake": intake, "agent": agent, "billing-agent": billing}


async def _request(client: AppClient, pipeline: Pipeline, token: str,
                   email: str = REQUESTER) -> str:
    body = {"requester": {"email": email, "name": "Ann"}, "subject": "VPN down",
            "body": "Cannot connect since nine."}
    async with client.post("/v1/requests", json=body, headers=auth(token)) as resp:
        assert resp.status == 201, await resp.text()
        reference = str((await resp.json())["reference"])
    await pipeline.drain()
    return reference


async def _page_token(client: AppClient) -> str:
    async with client.get("/status") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        found = _TOKEN.search(await resp.text())
    assert found is not None
    return found.group(1)


async def _lookup(client: AppClient, reference: str, email: str, *, token: str | None = None,
                  headers: dict[str, str] | None = None) -> tuple[int, str]:
    form = {"reference": reference, "email": email,
            "_form_token": token if token is not None else await _page_token(client)}
    async with client.post("/status", data=form, headers=headers or {}) as resp:
        return resp.status, await resp.text()


def _without_token(page: str) -> str:
    return _TOKEN.sub('name="_form_token" value=""', page)


async def _mails(engine: AsyncEngine, purpose: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.request_id, outbox.c.payload)
                                   .where(outbox.c.kind == "email")
                                   .order_by(outbox.c.id))).all()
    return [{"request_id": r.request_id, **r.payload["message"]} for r in rows
            if r.payload.get("purpose") == purpose]


async def _count(engine: AsyncEngine, table: Any, *where: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table)
                                       .where(*where))).scalar_one())


async def _request_id(engine: AsyncEngine, reference: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(requests.c.id)
                                       .where(requests.c.reference == reference))).scalar_one())


def _key(mail: dict[str, Any]) -> str:
    found = _KEY.search(mail["text"])
    assert found is not None, mail["text"]
    return found.group(1)


# --- the lookup --------------------------------------------------------------------


async def test_status_lookup__same_answer_whatever_is_asked_and_one_mail_on_a_match(
        app_client: AppClient, engine: AsyncEngine, pipeline: Pipeline,
        tokens: dict[str, str]) -> None:
    reference = await _request(app_client, pipeline, tokens["intake"])
    unknown = await reference_of(engine, 999_999)
    asked = {
        # Any case, without the hyphen: the project's reference and address forms.
        "known reference, right address": (reference.lower().replace("-", ""),
                                           "ANN@Example.com"),
        "known reference, wrong address": (reference, "bob@example.com"),
        "unknown reference": (unknown, REQUESTER),
    }
    answers = {}
    for name, (ref, email) in asked.items():
        status, page = await _lookup(app_client, ref, email)
        assert status == 200, (name, page)
        answers[name] = _without_token(page)
    assert len(set(answers.values())) == 1, "the answer tells what was asked"
    page = answers["unknown reference"]
    assert "Check your email" in page and "60 minutes" in page

    mails = await _mails(engine, "access_link")
    assert len(mails) == 1
    mail = mails[0]
    assert mail["request_id"] == await _request_id(engine, reference)
    assert [t["address"] for t in mail["to"]] == [REQUESTER]
    assert mail["auto_submitted"] == "auto-generated"
    assert reference in mail["subject"]
    key = _key(mail)
    assert all(key not in answer for answer in answers.values()), "the link is on the page"
    # Only its hash is stored; the timeline says a link went out, never the key.
    async with engine.connect() as conn:
        stored = (await conn.execute(select(status_links))).one()
        sent = (await conn.execute(select(events.c.data)
                                   .where(events.c.kind == SENT))).scalar_one()
    assert stored.kind == "access" and key not in str(tuple(stored))
    assert key not in str(sent) and sent["message_id"] == mail["message_id"]


async def test_status_lookup__same_time_within_noise(
        app: web.Application, app_client: AppClient, engine: AsyncEngine,
        pipeline: Pipeline, tokens: dict[str, str]) -> None:
    reference = await _request(app_client, pipeline, tokens["intake"])
    unknown = await reference_of(engine, 999_999)
    desk = app[STATUS_LINKS]
    # Every match mails (no cap reached) and no address limit stops the run.
    desk.links_per_hour = 1000
    desk.lookups = Buckets(1000.0, 1000.0)
    kinds = {"match": (reference, REQUESTER), "wrong address": (reference, "bob@example.com"),
             "unknown": (unknown, REQUESTER)}
    token = await _page_token(app_client)
    times: dict[str, list[float]] = {kind: [] for kind in kinds}

    async def one(kind: str) -> None:
        started = time.perf_counter()
        status, _ = await _lookup(app_client, *kinds[kind], token=token)
        times[kind].append(time.perf_counter() - started)
        assert status == 200

    # 30 of each, nine at a time (three of each kind, so each batch is alike).
    for _ in range(10):
        await asyncio.gather(*(one(kind) for kind in kinds for _ in range(3)))
    medians = {kind: statistics.median(found) for kind, found in times.items()}
    assert all(len(found) == 30 for found in times.values())
    assert min(min(found) for found in times.values()) >= desk.floor_seconds - 0.01
    assert max(medians.values()) - min(medians.values()) < 0.05, medians
    assert len(await _mails(engine, "access_link")) == 30


async def test_status_lookup__at_most_three_links_an_hour_then_the_same_answer(
        app_client: AppClient, engine: AsyncEngine, pipeline: Pipeline,
        tokens: dict[str, str]) -> None:
    reference = await _request(app_client, pipeline, tokens["intake"])
    token = await _page_token(app_client)
    pages = set()
    for _ in range(5):
        status, page = await _lookup(app_client, reference, REQUESTER, token=token)
        assert status == 200
        pages.add(_without_token(page))
    assert len(pages) == 1
    assert len(await _mails(engine, "access_link")) == 3


async def test_status_lookup__address_limit_answers_429(
        app: web.Application, app_client: AppClient, engine: AsyncEngine) -> None:
    app[STATUS_LINKS].lookups = Buckets(1 / 3600, 2)  # the same limiter, smaller
    unknown = await reference_of(engine, 999_999)
    token = await _page_token(app_client)
    assert (await _lookup(app_client, unknown, REQUESTER, token=token))[0] == 200
    assert (await _lookup(app_client, unknown, REQUESTER, token=token))[0] == 200
    form = {"reference": unknown, "email": REQUESTER, "_form_token": token}
    async with app_client.post("/status", data=form) as resp:
        assert resp.status == 429
        assert int(resp.headers["Retry-After"]) > 60
        assert "Too many lookups" in await resp.text()


async def test_status_lookup__cross_site_or_tokenless_post_refused_and_changes_nothing(
        app: web.Application, app_client: AppClient, engine: AsyncEngine,
        pipeline: Pipeline, tokens: dict[str, str]) -> None:
    reference = await _request(app_client, pipeline, tokens["intake"])
    token = await _page_token(app_client)
    secret = app[FORMS].secret
    now = time.time()
    refused: dict[str, dict[str, Any]] = {
        "another site's Origin": dict(token=token, headers={"Origin": "https://evil.example"}),
        "an opaque Origin": dict(token=token, headers={"Origin": "null"}),
        "a cross-site fetch": dict(token=token, headers={"Sec-Fetch-Site": "cross-site"}),
        "no token": dict(token=""),
        "a forged token": dict(token=token[:-4] + "AAAA"),
        "another address's token": dict(token=page_token(secret, "192.0.2.7", now)),
        "an expired token": dict(token=page_token(secret, "127.0.0.1",
                                                  now - TOKEN_AGE_SECONDS - 60)),
    }
    for name, how in refused.items():
        status, page = await _lookup(app_client, reference, REQUESTER, **how)
        assert status == 403, name
        assert "from here" in page or "own page" in page, name
    assert await _count(engine, status_links) == 0
    assert await _mails(engine, "access_link") == []
    # Our own origin is welcome.
    own = str(app_client.make_url("")).rstrip("/")
    assert (await _lookup(app_client, reference, REQUESTER, token=token,
                          headers={"Origin": own}))[0] == 200
    assert len(await _mails(engine, "access_link")) == 1


async def test_status_lookup__what_cannot_be_a_reference_or_address_is_shown(
        app_client: AppClient, engine: AsyncEngine) -> None:
    status, page = await _lookup(app_client, "not a ref", "nobody")
    assert status == 422
    assert 'aria-invalid="true"' in page and "There is a problem" in page
    assert "for example 7PY9-9T9S" in page and "name@example.com" in page
    async with app_client.post("/status", json={"reference": "x"}) as resp:
        assert resp.status == 415
    async with app_client.post("/status", data={"reference": "x" * 5000}) as resp:
        assert resp.status == 413
    assert await _count(engine, status_links) == 0


async def test_status_lookup__pages_carry_the_forms_policy(app_client: AppClient) -> None:
    async with app_client.get("/status", headers={"Accept-Language": "en"}) as resp:
        policy = resp.headers["Content-Security-Policy"]
        page = await resp.text()
    assert "default-src 'none'" in policy and "form-action 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert resp.headers["Cache-Control"] == "no-store"
    assert "<script" not in page and '<label for="input-reference">' in page
    assert '<html lang="' in page


# --- one-time access links -----------------------------------------------------------


async def test_access_link__works_once_not_twice_and_not_after_expiry(
        app: web.Application, app_client: AppClient, engine: AsyncEngine,
        pipeline: Pipeline, tokens: dict[str, str]) -> None:
    reference = await _request(app_client, pipeline, tokens["intake"])
    await _lookup(app_client, reference, REQUESTER)
    key = _key((await _mails(engine, "access_link"))[0])
    link = f"/status/access/{key}"

    # Fetching the page (as a mail scanner does) does not spend the link.
    for _ in range(2):
        async with app_client.get(link, headers=BROWSER) as resp:
            assert resp.status == 200
            page = await resp.text()
        assert f'action="{link}"' in page
    # A post from another site does not either.
    async with app_client.post(link, headers={"Origin": "https://evil.example"},
                               allow_redirects=False) as resp:
        assert resp.status == 403
    async with app_client.post(link, allow_redirects=False) as resp:
        assert resp.status == 303
        location = resp.headers["Location"]
    status_token = _STATUS_URL.fullmatch(location)
    assert status_token is not None
    async with app_client.get(location, headers={"Accept": "application/json"}) as resp:
        assert resp.status == 200
        assert (await resp.json())["reference"] == reference

    for method in ("GET", "POST"):
        async with app_client.request(method, link, allow_redirects=False) as resp:
            assert resp.status == 410, method
            page = await resp.text()
        assert "This link was used already" in page and 'name="_form_token"' in page

    # A second link, past its time.
    await _lookup(app_client, reference, REQUESTER)
    second = _key((await _mails(engine, "access_link"))[1])
    async with engine.begin() as conn:
        await conn.execute(update(status_links).where(status_links.c.used_at.is_(None))
                           .values(expires_at=utcnow() - timedelta(minutes=1)))
    for method in ("GET", "POST"):
        async with app_client.request(method, f"/status/access/{second}",
                                      allow_redirects=False) as resp:
            assert resp.status == 410, method
            assert "This link has expired" in await resp.text()

    # Never one of ours.
    for made_up in ("x" * 43, "short", "a" * 42 + "!"):
        async with app_client.get(f"/status/access/{made_up}") as resp:
            assert resp.status == 404
            assert "This link is not valid" in await resp.text()


# --- rotation ----------------------------------------------------------------------


async def _status_token(engine: AsyncEngine, reference: str) -> str:
    found = await queries.get_request(engine, reference, whole=False)
    assert found is not None
    return str(found["status_token"])


async def test_rotation__old_link_refused_new_one_works_and_is_mailed(
        app_client: AppClient, engine: AsyncEngine, pipeline: Pipeline,
        tokens: dict[str, str]) -> None:
    reference = await _request(app_client, pipeline, tokens["intake"])
    old = await _status_token(engine, reference)
    path = f"/v1/requests/{reference}/status-link/rotate"
    async with app_client.post(path) as resp:
        assert resp.status == 401
    for outside in ("intake", "billing-agent"):  # neither sees a request in general
        async with app_client.post(path, headers=auth(tokens[outside])) as resp:
            assert resp.status == 404, outside
    assert await _status_token(engine, reference) == old
    async with app_client.post(path, headers=auth(tokens["agent"])) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert resp.headers["ETag"] == f'"v{body["version"]}"'
    assert body["mailed"] is True and body["reference"] == reference
    new = await _status_token(engine, reference)
    assert new != old

    async with app_client.get(f"/v1/status/{old}",
                              headers={"Accept": "application/json"}) as resp:
        assert resp.status == 404
    async with app_client.get(f"/v1/status/{old}", headers=BROWSER) as resp:
        assert resp.status in (404, 410)
        assert resp.content_type == "text/html"
        assert "replaced" in await resp.text()
    assert await was_replaced(engine, old) and not await was_replaced(engine, new)
    async with app_client.get(f"/v1/status/{new}",
                              headers={"Accept": "application/json"}) as resp:
        assert resp.status == 200

    mails = await _mails(engine, "status_link")
    assert len(mails) == 1
    assert [t["address"] for t in mails[0]["to"]] == [REQUESTER]
    assert f"/v1/status/{new}" in mails[0]["text"] and old not in mails[0]["text"]
    request_id = await _request_id(engine, reference)
    assert await _count(engine, events, events.c.request_id == request_id,
                        events.c.kind == ROTATED) == 1
    assert await _count(engine, audit_events,
                        audit_events.c.action == "request.status_link_rotate",
                        audit_events.c.target == reference) == 1


async def test_rotation__a_request_without_a_link_is_a_conflict(
        app_client: AppClient, engine: AsyncEngine, pipeline: Pipeline,
        tokens: dict[str, str]) -> None:
    reference = await _request(app_client, pipeline, tokens["intake"])
    async with engine.begin() as conn:  # as retention leaves an anonymised request
        await conn.execute(update(requests).where(requests.c.reference == reference)
                           .values(status_token=None))
    async with app_client.post(f"/v1/requests/{reference}/status-link/rotate",
                               headers=auth(tokens["agent"])) as resp:
        assert resp.status == 409
    assert await _mails(engine, "status_link") == []


async def test_rotation__from_the_command_line(
        db_url: str, app_client: AppClient, engine: AsyncEngine, pipeline: Pipeline,
        tokens: dict[str, str], tmp_path: Path) -> None:
    reference = await _request(app_client, pipeline, tokens["intake"])
    old = await _status_token(engine, reference)
    config = write_config(tmp_path / "c.toml", db_url)
    done = await asyncio.to_thread(intake, "status-link", "rotate", reference.lower(),
                                   config=config)
    assert done.returncode == 0, done.stderr
    assert f"{reference}: rotated; the new link was mailed" in done.stdout
    assert await _status_token(engine, reference) != old
    assert await was_replaced(engine, old)
    assert len(await _mails(engine, "status_link")) == 1
    assert await _count(engine, audit_events, audit_events.c.actor == "cli",
                        audit_events.c.action == "request.status_link_rotate") == 1
    missing = await asyncio.to_thread(intake, "status-link", "rotate",
                                      await reference_of(engine, 999_999), config=config)
    assert missing.returncode == 1 and "no such request" in missing.stderr


# --- the whole way: SMTP in, the relay out ------------------------------------------


async def test_status_lookup__link_reaches_the_requester_through_the_relay(
        db_url: str, engine: AsyncEngine) -> None:
    relay = Relay()
    await relay.up()
    config = make_config(db_url, outbound={"relay": f"127.0.0.1:{relay.port}",
                                           "backoff_initial_seconds": 0.05,
                                           "backoff_max_seconds": 0.2})
    gateway = await start(config)
    try:
        reference = await asyncio.to_thread(
            send, gateway, subject="Printer on fire", body="It smokes.",
            message_id="lookup-e2e@example.com", sender="alice@example.com")
        await received_count(relay, 1)  # the acknowledgement
        async with aiohttp.ClientSession(base_url=gateway.http_url) as http:
            async with http.get("/status") as resp:
                token = _TOKEN.search(await resp.text())
            assert token is not None
            form = {"reference": reference, "email": "Alice@Example.com",
                    "_form_token": token.group(1)}
            async with http.post("/status", data=form) as resp:
                assert resp.status == 200
            await received_count(relay, 2)
            mail = relay.received[1]
            assert mail["To"].addresses[0].addr_spec == "alice@example.com"
            assert mail["Auto-Submitted"] == "auto-generated"
            assert reference in mail["Subject"]
            text = mail.get_body(("plain",)).get_content()
            found = _KEY.search(text)
            assert found is not None, text
            async with http.post(f"/status/access/{found.group(1)}",
                                 headers={"Accept": "application/json"}) as resp:
                assert resp.status == 200  # followed the 303 to the status page
                assert (await resp.json())["reference"] == reference
    finally:
        await stop(gateway, grace=3)
        await relay.down()
