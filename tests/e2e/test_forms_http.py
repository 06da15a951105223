"""Web forms over real HTTP, on both backends: posts, limits, spam defences, CORS.

What a browser does is in test_form_browser.py; here the edge cases are sent
byte for byte, including bodies no browser would send, to the HTTP app alone
(no SMTP, LMTP or workers; its pipeline drained inline where a test needs the
request processed).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Config
from gateway.pipeline.worker import Pipeline
from parsers.forms import issue_token
from storage.models import attachments, blob_chunks, blobs, inbox_items, outbox
from tests.helpers import AppClient, auth, count_rows, make_config, wait_for

SECRET = "form-secret-for-the-tests-0123456789"
ORIGIN = "https://www.example.com"
JSON = {"Accept": "application/json"}
FIELDS = [
    {"name": "name", "label": "Your name"},
    {"name": "email", "label": "Your email address", "kind": "email", "required": True},
    {"name": "subject", "label": "Subject", "required": True},
    {"name": "message", "label": "Message", "kind": "textarea", "required": True},
    {"name": "product", "label": "Product", "kind": "select", "options": ["VPN", "Mail"]},
    {"name": "attachments", "label": "Files", "kind": "file"},
]
FORMS = [
    {"id": "support", "title": "Contact support", "queue": "billing", "fields": None,
     "allowed_origins": [ORIGIN], "min_fill_seconds": 0, "max_files": 2,
     "max_file_bytes": 1_000_000, "max_body_bytes": 3_000_000,
     "file_types": ["image/*", "application/pdf"], "rate_limit_per_minute": 1000},
    {"id": "guarded", "title": "Guarded", "min_fill_seconds": 5, "fields": None,
     "rate_limit_per_minute": 1000},
    {"id": "limited", "title": "Limited", "min_fill_seconds": 0, "rate_limit_per_minute": 3,
     "fields": None},
    {"id": "external", "title": "Shop contact", "min_fill_seconds": 0, "fields": None,
     "success_url": "https://www.example.com/thanks?from=desk",
     "failure_url": "https://www.example.com/sorry"},
    {"id": "anonymous", "title": "Feedback", "min_fill_seconds": 0,
     "field": [{"name": "message", "label": "Feedback", "kind": "textarea",
                "required": True}]},
]


def _forms() -> list[dict[str, Any]]:
    out = []
    for form in FORMS:
        form = dict(form)
        if form.pop("fields", "x") is None:
            form["field"] = FIELDS
        out.append(form)
    return out


@pytest.fixture
def config(db_url: str) -> Config:
    return make_config(db_url, form=_forms(), http={
        "listen": "127.0.0.1:0", "max_body_bytes": 100_000, "shutdown_seconds": 3.0,
        "form_secret": SECRET})


@pytest.fixture
def http(app_client: AppClient) -> AppClient:
    """Every test here talks to the HTTP app alone."""
    return app_client


async def _nothing_stored(engine: AsyncEngine) -> None:
    for table in (inbox_items, blobs, blob_chunks):
        assert await count_rows(engine, table) == 0, table.name


def _text(**overrides: str) -> dict[str, str]:
    return {"name": "Ann", "email": "Ann@Example.com", "subject": "Printer on fire",
            "message": "It started at nine.", "product": "VPN"} | overrides


def _multipart(values: dict[str, str],
               files: list[tuple[str, bytes, str]] = ()) -> aiohttp.FormData:  # type: ignore[assignment]
    data = aiohttp.FormData()
    for key, value in values.items():
        data.add_field(key, value)
    for filename, content, kind in files:
        data.add_field("attachments", content, filename=filename, content_type=kind)
    return data


async def _processed(http: AppClient, token: str, ref: str) -> dict[str, Any]:
    async def fetch() -> dict[str, Any] | None:
        async with http.get(f"/v1/requests/{ref}", headers=auth(token)) as resp:
            data = await resp.json()
            return data if data.get("status") == "new" else None
    return await wait_for(fetch)


async def _problem(resp: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/problem+json"
    return await resp.json()


def _pointers(problem: dict[str, Any]) -> dict[str, str]:
    return {e["pointer"]: e["detail"] for e in problem.get("errors", [])}


# --- accepted posts ---------------------------------------------------------------


async def test_forms__multipart_with_files_is_stored_routed_and_acknowledged(
        http: AppClient, engine: AsyncEngine, admin_token: str, pipeline: Pipeline) -> None:
    photo, scan = os.urandom(600_000), b"%PDF-1.7\n" + os.urandom(40_000)
    body = _multipart(_text(), [("photo.png", photo, "image/png"),
                                ("scan.pdf", scan, "application/pdf")])
    async with http.post("/v1/forms/support", data=body, headers=JSON) as resp:
        assert resp.status == 201, await resp.text()
        answer = await resp.json()
    assert answer["status"] == "received"
    await pipeline.drain()
    request = await _processed(http, admin_token, answer["reference"])
    assert (request["channel"], request["queue"]) == ("form", "billing")
    assert request["requester"] == {"email": "ann@example.com", "name": "Ann"}
    assert request["subject"] == "Printer on fire"
    assert request["custom_fields"] == {"product": "VPN"}
    stored = request["messages"][0]["attachments"]
    assert [(a["filename"], a["content_type"], a["size"]) for a in stored] == [
        ("photo.png", "image/png", len(photo)), ("scan.pdf", "application/pdf", len(scan))]
    for attachment, content in zip(stored, (photo, scan), strict=True):
        assert attachment["sha256"] == hashlib.sha256(content).hexdigest()
        async with http.get(f"/v1/requests/{answer['reference']}/attachments/"
                            f"{attachment['id']}", headers=auth(admin_token)) as resp:
            assert resp.status == 200
            assert await resp.read() == content
    # The big file is stored in 512 KiB pieces; the small one (within the 256 KiB
    # kept in memory) whole, in the same commit as the post.
    assert await count_rows(engine, blob_chunks) == 2
    async with engine.connect() as conn:
        inline = (await conn.execute(select(func.count()).select_from(blobs)
                                     .where(blobs.c.content.is_not(None)))).scalar_one()
        acks = (await conn.execute(select(outbox.c.payload).where(outbox.c.kind == "email"))
                ).scalars().all()
    assert inline == 1
    assert len(acks) == 1 and "ann@example.com" in str(acks[0])
    kinds = [e["kind"] for e in request["timeline"]]
    assert kinds[:3] == ["received", "classified", "routed"]
    assert request["timeline"][0]["data"]["form_id"] == "support"


async def test_forms__browser_post_redirects_to_the_success_page(
        http: AppClient) -> None:
    async with http.post("/v1/forms/support", data=_text(), allow_redirects=False) as resp:
        assert resp.status == 303
        location = resp.headers["Location"]
    assert location.startswith("/forms/support/thanks?reference=")
    reference = location.rsplit("=", 1)[1]
    async with http.get(location) as resp:
        assert resp.status == 200
        page = await resp.text()
    assert f'<strong id="reference" class="reference">{reference}</strong>' in page


async def test_forms__configured_success_and_failure_pages(
        http: AppClient, engine: AsyncEngine) -> None:
    async with http.post("/v1/forms/external", data=_text(), allow_redirects=False) as resp:
        assert resp.status == 303
        location = resp.headers["Location"]
    assert re.fullmatch(r"https://www\.example\.com/thanks\?from=desk&reference="
                        r"[0-9A-Z]{4}-[0-9A-Z]{4}", location), location
    async with http.post("/v1/forms/external", data=_text(email=""),
                         allow_redirects=False) as resp:
        assert resp.status == 303
        assert resp.headers["Location"] == "https://www.example.com/sorry?error=invalid"
    async with http.get("/forms/external") as resp:
        policy = resp.headers["Content-Security-Policy"]
    # The page's post may be redirected there: the policy lets the browser follow.
    assert "form-action 'self' https://www.example.com;" in policy
    # A JSON client is answered in JSON whatever the pages are.
    async with http.post("/v1/forms/external", data=_text(email=""), headers=JSON) as resp:
        await _problem(resp, 422)
    assert await count_rows(engine, inbox_items) == 1


async def test_forms__same_file_twice_is_stored_once(
        http: AppClient, engine: AsyncEngine, admin_token: str, pipeline: Pipeline) -> None:
    photo = os.urandom(100_000)
    for _ in range(2):
        body = _multipart(_text(), [("a.png", photo, "image/png")])
        async with http.post("/v1/forms/support", data=body, headers=JSON) as resp:
            assert resp.status == 201
            reference = (await resp.json())["reference"]
    await pipeline.drain()
    await _processed(http, admin_token, reference)
    assert await count_rows(engine, blobs) == 1
    assert await count_rows(engine, attachments) == 2


async def test_forms__a_form_without_email_is_not_acknowledged(
        http: AppClient, engine: AsyncEngine, admin_token: str, pipeline: Pipeline) -> None:
    async with http.post("/v1/forms/anonymous", data={"message": "Nice tool"},
                         headers=JSON) as resp:
        assert resp.status == 201
        reference = (await resp.json())["reference"]
    await pipeline.drain()
    request = await _processed(http, admin_token, reference)
    assert request["queue"] == "general" and request["subject"] == "Feedback"
    ack = next(e for e in request["timeline"] if e["kind"] == "acknowledgement")
    assert ack["data"] == {"send": False, "reason": "the form has no email", "template": None}
    async with engine.connect() as conn:
        mails = (await conn.execute(select(func.count()).select_from(outbox)
                                    .where(outbox.c.kind == "email"))).scalar_one()
    assert mails == 0


# --- multipart edge cases ------------------------------------------------------------


async def test_forms__file_over_the_limit_is_413_and_nothing_is_stored(
        http: AppClient, engine: AsyncEngine) -> None:
    body = _multipart(_text(), [("big.png", os.urandom(1_000_001), "image/png")])
    async with http.post("/v1/forms/support", data=body, headers=JSON) as resp:
        problem = await _problem(resp, 413)
    assert "big.png" in _pointers(problem)["/attachments"]
    await _nothing_stored(engine)


async def test_forms__whole_body_over_the_limit_is_413_before_reading(
        http: AppClient, engine: AsyncEngine) -> None:
    body = b"message=" + b"x" * 3_000_001
    async with http.post("/v1/forms/support", data=body, headers=JSON | {
            "Content-Type": "application/x-www-form-urlencoded"}) as resp:
        problem = await _problem(resp, 413)
    assert problem["reason"] == "too_large"
    await _nothing_stored(engine)


async def test_forms__disallowed_type_is_422_naming_the_field(
        http: AppClient, engine: AsyncEngine) -> None:
    body = _multipart(_text(), [("tool.exe", b"MZ" + os.urandom(100),
                                 "application/x-msdownload")])
    async with http.post("/v1/forms/support", data=body, headers=JSON) as resp:
        problem = await _problem(resp, 422)
    detail = _pointers(problem)["/attachments"]
    assert "application/x-msdownload" in detail and "not accepted" in detail
    await _nothing_stored(engine)


async def test_forms__too_many_files_is_422(http: AppClient,
                                            engine: AsyncEngine) -> None:
    files = [(f"{i}.png", os.urandom(1000), "image/png") for i in range(3)]
    async with http.post("/v1/forms/support", data=_multipart(_text(), files),
                         headers=JSON) as resp:
        problem = await _problem(resp, 422)
    assert _pointers(problem) == {"/attachments": "at most 2 files may be sent"}
    await _nothing_stored(engine)


@pytest.mark.parametrize("body, content_type", [
    (b"--other\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--other--\r\n",
     "multipart/form-data; boundary=expected"),
    (b"--b\r\nContent-Disposition: form-data; name=\"subject\"\r\n\r\nunfinished",
     "multipart/form-data; boundary=b"),
    (b"no boundary at all", "multipart/form-data"),
    (b"--b\r\nContent-Type: text/plain\r\n\r\nnameless\r\n--b--\r\n",
     "multipart/form-data; boundary=b"),
], ids=["wrong boundary", "truncated", "no boundary parameter", "part without a name"])
async def test_forms__broken_multipart_is_400(http: AppClient, engine: AsyncEngine,
                                              body: bytes, content_type: str) -> None:
    async with http.post("/v1/forms/support", data=body,
                         headers=JSON | {"Content-Type": content_type}) as resp:
        problem = await _problem(resp, 400)
    assert problem["reason"] == "broken"
    await _nothing_stored(engine)


async def test_forms__non_utf8_field_is_422_naming_the_field(
        http: AppClient, engine: AsyncEngine) -> None:
    latin1 = "Café au lait".encode("latin-1")
    multipart = (b"--b\r\nContent-Disposition: form-data; name=\"subject\"\r\n\r\n" + latin1
                 + b"\r\n--b--\r\n")
    async with http.post("/v1/forms/support", data=multipart, headers=JSON | {
            "Content-Type": "multipart/form-data; boundary=b"}) as resp:
        problem = await _problem(resp, 422)
    assert _pointers(problem) == {"/subject": "this field is not valid UTF-8 text"}
    async with http.post("/v1/forms/support", data=b"email=a%40b.c&subject=Caf%E9",
                         headers=JSON | {"Content-Type": "application/x-www-form-urlencoded"}
                         ) as resp:
        problem = await _problem(resp, 422)
    assert _pointers(problem) == {"/subject": "this field is not valid UTF-8 text"}
    await _nothing_stored(engine)


async def test_forms__other_content_types_are_415(http: AppClient) -> None:
    async with http.post("/v1/forms/support", json=_text(), headers=JSON) as resp:
        await _problem(resp, 415)


async def test_forms__field_problems_are_listed_by_field(http: AppClient,
                                                          engine: AsyncEngine) -> None:
    values = _text(email="not an address", subject="", product="Fax",
                   message="x" * 20_001)
    async with http.post("/v1/forms/support", data=values, headers=JSON) as resp:
        problem = await _problem(resp, 422)
    assert _pointers(problem) == {
        "/email": "this is not an email address", "/subject": "this field is required",
        "/product": "choose one of the options",
        "/message": "this field must be at most 20000 characters"}
    await _nothing_stored(engine)


async def test_forms__browser_errors_come_back_beside_their_fields(
        http: AppClient) -> None:
    async with http.post("/v1/forms/support", data=_text(email=""),
                         allow_redirects=False) as resp:
        assert resp.status == 422
        assert resp.content_type == "text/html"
        page = await resp.text()
    field = page.split('id="field-email"', 1)[1].split("</div>", 1)[0]
    assert '<p class="error" id="error-email">Error: This field is required</p>' in field
    assert 'aria-invalid="true"' in field and 'aria-describedby="error-email"' in field
    assert 'href="#input-email"' in page.split('id="error-summary"', 1)[1]
    # What was typed is kept, so only the mistake needs fixing.
    assert 'value="Printer on fire"' in page


# --- spam defences ---------------------------------------------------------------------


async def test_forms__honeypot_is_refused_and_counted(
        http: AppClient, engine: AsyncEngine, admin_token: str) -> None:
    async with http.post("/v1/forms/support", data=_text(website="http://spam.example"),
                         headers=JSON) as resp:
        problem = await _problem(resp, 422)
    assert problem["reason"] == "honeypot"
    await _nothing_stored(engine)
    async with http.get("/v1/admin/forms", headers=auth(admin_token)) as resp:
        counts = {f["id"]: f for f in (await resp.json())["items"]}
    assert counts["support"]["refused"] == {"honeypot": 1}
    assert counts["support"]["accepted"] == 0


async def test_forms__fill_time_token(http: AppClient, engine: AsyncEngine) -> None:
    secret = SECRET.encode()
    # Tokens are bound to the client's address: the test client's is 127.0.0.1.
    cases = [(None, "missing"), ("12.forged", "not valid"),
             (issue_token(secret, "support", time.time() - 60), "not valid"),  # other form
             (issue_token(secret, "guarded", time.time(), "127.0.0.1"), "too quickly"),
             (issue_token(secret, "guarded", time.time() - 90_000, "127.0.0.1"),
              "open too long")]
    for token, why in cases:
        values = _text() | ({"_form_token": token} if token else {})
        async with http.post("/v1/forms/guarded", data=values, headers=JSON) as resp:
            problem = await _problem(resp, 422)
        assert problem["reason"] == "token" and why in problem["detail"], (token, problem)
    await _nothing_stored(engine)
    values = _text(_form_token=issue_token(secret, "guarded", time.time() - 6, "127.0.0.1"))
    async with http.post("/v1/forms/guarded", data=values, headers=JSON) as resp:
        assert resp.status == 201, await resp.text()


async def test_forms__the_page_carries_a_token_that_works_once_old_enough(
        http: AppClient) -> None:
    async with http.get("/v1/forms/guarded") as resp:
        described = await resp.json()
    assert described["limits"]["min_fill_seconds"] == 5
    token = described["token"]
    issued = int(token.split(".", 1)[0])
    assert abs(issued - time.time()) < 5
    async with http.get("/forms/guarded") as resp:
        page = await resp.text()
    assert 'name="_form_token" value="' in page and 'name="website"' in page


async def test_forms__rate_limit_per_address_is_429(http: AppClient) -> None:
    statuses = []
    for _ in range(5):  # the form allows 3 a minute, a burst of 3
        async with http.post("/v1/forms/limited", data=_text(), headers=JSON) as resp:
            statuses.append(resp.status)
            retry_after = resp.headers.get("Retry-After")
    assert statuses == [201, 201, 201, 429, 429]
    assert retry_after is not None and int(retry_after) >= 1
    # Another form has its own budget.
    async with http.post("/v1/forms/support", data=_text(), headers=JSON) as resp:
        assert resp.status == 201


# --- origins and CORS -----------------------------------------------------------------


async def test_forms__post_from_a_disallowed_origin_is_403(
        http: AppClient, engine: AsyncEngine) -> None:
    async with http.post("/v1/forms/support", data=_text(), headers=JSON | {
            "Origin": "https://evil.example"}) as resp:
        problem = await _problem(resp, 403)
        assert "Access-Control-Allow-Origin" not in resp.headers
    assert "https://evil.example" in problem["detail"]
    await _nothing_stored(engine)


async def test_forms__allowed_and_own_origins_may_post(http: AppClient,
                                                      config: Config) -> None:
    async with http.post("/v1/forms/support", data=_text(), headers=JSON | {
            "Origin": ORIGIN}) as resp:
        assert resp.status == 201
        assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    async with http.post("/v1/forms/support", data=_text(), headers=JSON | {
            "Origin": config.public_url}) as resp:
        assert resp.status == 201
        assert "Access-Control-Allow-Origin" not in resp.headers  # same origin: not needed


async def test_forms__preflight_only_for_allowed_origins(http: AppClient) -> None:
    ask = {"Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "content-type, accept"}
    async with http.options("/v1/forms/support", headers=ask | {"Origin": ORIGIN}) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "POST" in resp.headers["Access-Control-Allow-Methods"]
        assert "Content-Type" in resp.headers["Access-Control-Allow-Headers"]
    async with http.options("/v1/forms/support",
                            headers=ask | {"Origin": "https://evil.example"}) as resp:
        assert resp.status == 403
        assert "Access-Control-Allow-Origin" not in resp.headers
    async with http.get("/v1/forms/support", headers={"Origin": ORIGIN}) as resp:
        assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN


async def test_forms__unknown_form_is_404(http: AppClient) -> None:
    async with http.post("/v1/forms/nope", data=_text(), headers=JSON) as resp:
        await _problem(resp, 404)
    async with http.get("/forms/nope") as resp:
        assert resp.status == 404 and resp.content_type == "text/html"


async def test_forms__pages_may_be_framed_only_by_allowed_origins(
        http: AppClient) -> None:
    async with http.get("/forms/support") as resp:
        policy = resp.headers["Content-Security-Policy"]
        assert resp.headers["Cache-Control"] == "no-store"  # each page has a fresh token
    assert f"frame-ancestors 'self' {ORIGIN}" in policy
    assert "form-action 'self'" in policy and "script-src" not in policy
    async with http.get("/forms/guarded") as resp:
        assert "frame-ancestors 'self';" in resp.headers["Content-Security-Policy"] + ";"
