"""The web form in a real browser (headless Chromium): fill, attach, submit, see.

What a person does on `GET /forms/{id}`, end to end against the in-process
gateway: the post lands as a request in the form's queue with the file intact;
errors show on the field they are about; a filled honeypot stores nothing; the
keyboard reaches every field in order. Screenshots are kept as artifacts.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import struct
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Page, Response
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import Gateway
from gateway.config import Config
from storage.models import inbox_items, requests
from tests.browser import PNG_SIGNATURE, assert_png, chromium, new_page, screenshot
from tests.helpers import auth, count_rows, make_config, wait_for

FORM_ID = "support"
MIN_FILL_SECONDS = 1.0
HONEYPOT = "website"
REFERENCE = re.compile(r"^[0-9A-Z]{4}-[0-9A-Z]{4}$")
FIELDS: list[dict[str, Any]] = [
    {"name": "name", "label": "Your name", "kind": "text", "max_length": 200},
    {"name": "email", "label": "Your email address", "kind": "email", "required": True},
    {"name": "subject", "label": "Subject", "kind": "text", "required": True},
    {"name": "message", "label": "Message", "kind": "textarea", "required": True},
    {"name": "attachments", "label": "Files", "kind": "file"},
]
FORM: dict[str, Any] = {
    "id": FORM_ID, "title": "Contact support", "intro": "Tell us what went wrong.",
    # Not the default queue (general): shows the form's own queue is applied.
    "queue": "billing",
    "min_fill_seconds": MIN_FILL_SECONDS,
    "max_files": 3, "max_file_bytes": 1_000_000, "max_body_bytes": 4_000_000,
    "file_types": ["image/*", "application/pdf", "text/plain"],
    "honeypot": HONEYPOT,
    "field": FIELDS,
}
# The order Tab must take from the first field: every other field, then Send.
TAB_ORDER = [f"input-{f['name']}" for f in FIELDS[1:]] + ["button:submit"]
FOCUSED_JS = """() => {
    const e = document.activeElement;
    if (!e || e === document.body) return {key: "body", name: null};
    const key = e.tagName === "BUTTON" ? "button:" + e.type : (e.id || e.tagName.toLowerCase());
    return {key: key, name: e.getAttribute("name")};
}"""


@pytest.fixture
def config(db_url: str) -> Config:
    return make_config(db_url, form=[FORM])


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with chromium() as browser, new_page(browser) as page:
        yield page


@pytest.fixture
async def api(gateway: Gateway) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=gateway.http_url,
                                     timeout=aiohttp.ClientTimeout(total=15)) as session:
        yield session


def random_png(width: int, height: int) -> bytes:
    """A valid PNG of random pixels: incompressible, so about width*height*3 bytes,
    and a real PNG whether the gateway trusts the browser's type or sniffs the bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + os.urandom(width * 3) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 1))
            + chunk(b"IEND", b""))


async def open_form(page: Page, gateway: Gateway) -> float:
    """Load the form page; returns when, so the submit can wait out min_fill_seconds."""
    response = await page.goto(f"{gateway.http_url}/forms/{FORM_ID}")
    assert response is not None and response.status == 200
    await page.locator("#intake-form").wait_for(state="visible")
    return time.monotonic()


async def fill(page: Page, values: dict[str, str]) -> None:
    for name, value in values.items():
        await page.fill(f"#input-{name}", value)


async def submit(page: Page, issued_at: float) -> Response:
    """Click Send once the form's token is old enough; the response the page ends on."""
    # A post faster than min_fill_seconds is refused as a bot: wait it out, with margin.
    await asyncio.sleep(max(0.0, issued_at + MIN_FILL_SECONDS + 0.3 - time.monotonic()))
    async with page.expect_navigation() as navigation:
        await page.click("#intake-form button[type=submit]")
    response = await navigation.value
    assert response is not None
    return response


async def processed(api: aiohttp.ClientSession, token: str, ref: str) -> dict[str, Any]:
    async def fetch() -> dict[str, Any] | None:
        async with api.get(f"/v1/requests/{ref}", headers=auth(token)) as resp:
            if resp.status != 200:
                return None
            data: dict[str, Any] = await resp.json()
            return data if data.get("status") == "new" else None
    result: dict[str, Any] = await wait_for(fetch, timeout=15)
    return result


async def landed_reference(page: Page, response: Response) -> str:
    """The success page after a 303 from the post: its #reference, checked against the URL."""
    assert response.status == 200, response.status
    post = response.request.redirected_from
    assert post is not None and post.method == "POST", "the post should redirect (303)"
    redirect = await post.response()
    assert redirect is not None and redirect.status == 303
    assert urlsplit(page.url).path == f"/forms/{FORM_ID}/thanks"
    reference = (await page.locator("#reference").inner_text()).strip()
    assert REFERENCE.match(reference), reference
    assert parse_qs(urlsplit(page.url).query)["reference"] == [reference]
    return reference


async def test_form_browser__file_reaches_the_queue_byte_identical(
        page: Page, gateway: Gateway, api: aiohttp.ClientSession, admin_token: str,
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    upload = tmp_path / "screenshot.png"
    upload.write_bytes(random_png(300, 300))  # ~270 KB
    digest = hashlib.sha256(upload.read_bytes()).hexdigest()
    subject = "Printer on floor 3 shows error E-42"

    issued_at = await open_form(page, gateway)
    form = page.locator("#intake-form")
    assert await form.get_attribute("action") == f"/v1/forms/{FORM_ID}"
    assert (await form.get_attribute("method") or "").lower() == "post"
    assert await form.get_attribute("enctype") == "multipart/form-data"
    # Filled through the labels: proves each label is tied to its input.
    await page.get_by_label("Your name").fill("Ann Example")
    await page.get_by_label("Your email address").fill("ann@example.com")
    await page.get_by_label("Subject").fill(subject)
    await page.get_by_label("Message").fill("It jams after every page.\nSee the photo.")
    await page.set_input_files("#input-attachments", upload)
    form_shot = await screenshot(page, request.node.name, "form")

    reference = await landed_reference(page, await submit(page, issued_at))
    success_shot = await screenshot(page, request.node.name, "success")

    found = await processed(api, admin_token, reference)
    assert (found["channel"], found["queue"], found["subject"]) == ("form", "billing", subject)
    assert found["requester"]["email"] == "ann@example.com"
    assert "It jams after every page." in found["messages"][0]["text"]
    [attachment] = [a for a in found["messages"][0]["attachments"]
                    if a["filename"] == upload.name]
    assert attachment["size"] == upload.stat().st_size
    assert attachment["sha256"] == digest
    assert attachment["content_type"] == "image/png"
    async with api.get(f"/v1/requests/{reference}/attachments/{attachment['id']}",
                       headers=auth(admin_token)) as resp:
        assert resp.status == 200
        assert hashlib.sha256(await resp.read()).hexdigest() == digest
    for shot in (form_shot, success_shot):
        assert_png(shot)


async def test_form_browser__missing_required_field_is_shown_on_that_field(
        page: Page, gateway: Gateway, api: aiohttp.ClientSession, engine: AsyncEngine,
        admin_token: str, request: pytest.FixtureRequest) -> None:
    issued_at = await open_form(page, gateway)
    await fill(page, {"name": "Bob", "email": "bob@example.com", "message": "No subject here"})
    response = await submit(page, issued_at)

    assert response.status == 422
    error_shot = await screenshot(page, request.node.name, "error")
    error = page.locator("#field-subject #error-subject")
    await error.wait_for(state="visible")
    assert re.search(r"required|missing|empty", await error.inner_text(), re.I)
    subject = page.locator("#input-subject")
    assert await subject.get_attribute("aria-invalid") == "true"
    assert "error-subject" in (await subject.get_attribute("aria-describedby") or "").split()
    assert await page.locator("#input-email").get_attribute("aria-invalid") != "true"
    summary = page.locator("#error-summary")
    assert await summary.get_attribute("role") == "alert"
    assert await summary.is_visible()
    # Away from the field, the summary must say which field it means.
    assert "Subject" in await summary.inner_text()
    # What the person typed is still there: only the missing part needs typing.
    assert await page.locator("#input-email").input_value() == "bob@example.com"
    assert await page.locator("#input-message").input_value() == "No subject here"
    assert_png(error_shot)

    # Fixing the field and sending again works, and is the only request stored:
    # once it is processed, anything the refused post left would be there too.
    issued_at = time.monotonic()  # the re-rendered page may carry a fresh token
    await fill(page, {"subject": "Now with a subject"})
    reference = await landed_reference(page, await submit(page, issued_at))
    await processed(api, admin_token, reference)
    assert await count_rows(engine, requests) == 1
    assert await count_rows(engine, inbox_items) == 1


async def test_form_browser__filled_honeypot_is_refused_and_nothing_stored(
        page: Page, gateway: Gateway, engine: AsyncEngine,
        request: pytest.FixtureRequest) -> None:
    subject = "Cheap watches"
    issued_at = await open_form(page, gateway)
    honeypot = page.locator(f"#intake-form [name={HONEYPOT}]")
    assert await honeypot.count() == 1
    hidden = page.locator(f"#intake-form .hp:has([name={HONEYPOT}])")
    assert await hidden.get_attribute("aria-hidden") == "true"
    await fill(page, {"email": "bot@example.com", "subject": subject, "message": "Buy now"})
    # A bot fills every input; a person never sees this one (set it as a script would).
    await honeypot.evaluate("(input, value) => { input.value = value; }", "http://spam.example")
    response = await submit(page, issued_at)

    assert response.status == 422
    # Said on the page, whether as the form's error summary or a page of its own.
    said = page.locator("[role=alert]").first
    await said.wait_for(state="visible")
    assert (await said.inner_text()).strip()
    assert_png(await screenshot(page, request.node.name, "honeypot"))
    # Accepted input is committed before the answer; give the pipeline time to show
    # anything it might still create (several poll intervals).
    await asyncio.sleep(1.0)
    assert await count_rows(engine, inbox_items) == 0
    assert await count_rows(engine, requests, requests.c.subject == subject) == 0


async def test_form_browser__tab_reaches_fields_in_order_never_the_honeypot(
        page: Page, gateway: Gateway) -> None:
    await open_form(page, gateway)
    await page.focus(f"#input-{FIELDS[0]['name']}")
    order: list[str] = []
    for _ in TAB_ORDER:
        await page.keyboard.press("Tab")
        order.append((await page.evaluate(FOCUSED_JS))["key"])
    assert order == TAB_ORDER

    # Round the whole page both ways: the honeypot never takes the focus.
    names: list[str | None] = []
    for key in ["Tab"] * 15 + ["Shift+Tab"] * 30:
        await page.keyboard.press(key)
        names.append((await page.evaluate(FOCUSED_JS))["name"])
    assert HONEYPOT not in names
    assert "email" in names  # the loop did move through the form


async def test_form_browser__pages_pass_the_axe_accessibility_rules(
        page: Page, gateway: Gateway) -> None:
    """axe-core's WCAG 2.x A and AA rules on the form, its error state and the
    success page: no violations at all."""
    axe = Axe()
    options = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a",
                                                      "wcag21aa", "best-practice"]}}

    async def violations() -> list[str]:
        results = await axe.run(page, options=options)
        return [f"{v['id']}: {v['help']} ({len(v['nodes'])})"
                for v in results.response["violations"]]

    # The checker works here (CSP, headless): an unlabelled input is caught.
    await page.set_content("<!doctype html><html lang=en><title>t</title>"
                           "<main><input type=text></main></html>")
    assert any(v.startswith("label:") for v in await violations())

    found: dict[str, list[str]] = {}
    issued_at = await open_form(page, gateway)
    found["form"] = await violations()
    await fill(page, {"email": "not an address", "message": "x"})
    assert (await submit(page, issued_at)).status == 422
    found["errors"] = await violations()
    issued_at = time.monotonic()
    await fill(page, {"email": "ann@example.com", "subject": "Fine now"})
    await landed_reference(page, await submit(page, issued_at))
    found["success"] = await violations()
    assert found == {"form": [], "errors": [], "success": []}
