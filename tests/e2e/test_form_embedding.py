"""The README's ways to embed a form in another site, run in headless Chromium.

A second web server plays the customer's site (another origin). It serves the
README's own snippets (taken from README.md, with the desk's address put in),
so the documentation cannot drift from what works: the iframe, the plain HTML
form and the fetch example each end with the person seeing a reference. A
site the form does not list can neither frame the form nor post to it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Page

from gateway.app import Gateway
from gateway.config import Config
from tests.browser import chromium, new_page
from tests.helpers import make_config

README = Path(__file__).resolve().parents[2] / "README.md"
DESK = "https://desk.example.com"
REFERENCE = re.compile(r"[0-9A-Z]{4}-[0-9A-Z]{4}")
MIN_FILL_SECONDS = 1.0
FIELDS = [
    {"name": "email", "label": "Your email address", "kind": "email", "required": True},
    {"name": "subject", "label": "Subject", "required": True},
    {"name": "message", "label": "How can we help?", "kind": "textarea", "required": True},
    {"name": "attachments", "label": "Attachments", "kind": "file"},
]


def readme_block(language: str, containing: str) -> str:
    """The README's fenced block in `language` that contains `containing`."""
    blocks = re.findall(rf"```{language}\n(.*?)```", README.read_text(), re.S)
    found = [b for b in blocks if containing in b]
    assert len(found) == 1, f"README should have one {language} block with {containing!r}"
    return found[0]


class Site:
    """Another origin serving pages that embed the desk's form."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        self.runner: web.AppRunner | None = None
        self.origin = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{name}", self._page)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.origin = f"http://127.0.0.1:{port}"

    async def _page(self, request: web.Request) -> web.Response:
        body = self.pages.get(request.match_info["name"])
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(text=body, content_type="text/html")


def host_page(body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>Shop</title>"
            f"</head><body><h1>Our shop</h1>{body}</body></html>")


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    shop = Site()
    await shop.start()
    yield shop
    assert shop.runner is not None
    await shop.runner.cleanup()


@pytest.fixture
async def stranger() -> AsyncIterator[Site]:
    other = Site()
    await other.start()
    yield other
    assert other.runner is not None
    await other.runner.cleanup()


@pytest.fixture
def config(db_url: str, site: Site) -> Config:
    common = {"field": FIELDS, "allowed_origins": [site.origin]}
    return make_config(db_url, form=[
        {"id": "support", "title": "Contact support", "min_fill_seconds": MIN_FILL_SECONDS,
         **common},
        # A form written into another site's HTML carries no fresh token.
        {"id": "plain", "title": "Contact support", "min_fill_seconds": 0, **common}])


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with chromium() as browser, new_page(browser) as page:
        yield page


async def fill_in(scope: Page | object, subject: str) -> None:
    # A Page or a Frame: both fill by label.
    await scope.get_by_label("Your email address").fill("ann@example.com")  # type: ignore[attr-defined]
    await scope.get_by_label("Subject").fill(subject)  # type: ignore[attr-defined]
    await scope.get_by_label("How can we help?").fill("Order 17 never came.")  # type: ignore[attr-defined]


async def test_form_embedding__iframe(page: Page, gateway: Gateway, site: Site,
                                      stranger: Site) -> None:
    snippet = readme_block("html", "<iframe").replace(DESK, gateway.http_url)
    site.pages["contact"] = stranger.pages["contact"] = host_page(snippet)
    await page.goto(f"{site.origin}/contact")
    frame = page.frame_locator("iframe")
    await frame.locator("#intake-form").wait_for(state="visible")
    shown = time.monotonic()
    await fill_in(frame, "Framed")
    await asyncio.sleep(max(0.0, shown + MIN_FILL_SECONDS + 0.3 - time.monotonic()))
    await frame.get_by_role("button", name="Send").click()
    reference = await frame.locator("#reference").inner_text(timeout=15_000)
    assert REFERENCE.fullmatch(reference.strip())

    # A site the form does not list: the page arrives, and the browser refuses
    # to show it in the frame (CSP frame-ancestors).
    async with page.expect_response(lambda r: r.url.endswith("/forms/support")) as framed:
        await page.goto(f"{stranger.origin}/contact")
    assert (await framed.value).status == 200
    await page.wait_for_timeout(500)
    child = next(f for f in page.frames if f is not page.main_frame)
    assert await child.locator("#intake-form").count() == 0


async def test_form_embedding__plain_html_form(page: Page, gateway: Gateway, site: Site,
                                               stranger: Site) -> None:
    snippet = readme_block("html", "<form method=\"post\"").replace(
        f"{DESK}/v1/forms/support", f"{gateway.http_url}/v1/forms/plain")
    site.pages["contact"] = stranger.pages["contact"] = host_page(snippet)
    await page.goto(f"{site.origin}/contact")
    await fill_in(page, "Plain form")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Send").click()
    assert page.url.startswith(f"{gateway.http_url}/forms/plain/thanks?reference=")
    assert REFERENCE.fullmatch((await page.locator("#reference").inner_text()).strip())

    # The same form on a site the form does not list is refused, and says why.
    await page.goto(f"{stranger.origin}/contact")
    await fill_in(page, "From elsewhere")
    async with page.expect_navigation() as navigation:
        await page.get_by_role("button", name="Send").click()
    response = await navigation.value
    assert response is not None and response.status == 403
    assert stranger.origin in await page.locator("#error-summary").inner_text()


async def test_form_embedding__fetch_example(page: Page, gateway: Gateway,
                                             site: Site) -> None:
    form = readme_block("html", "<form method=\"post\"").replace(
        "<form ", '<form id="support-form" ', 1)
    script = readme_block("js", "fetch(").replace(DESK, gateway.http_url)
    site.pages["contact"] = host_page(f'{form}<script type="module">{script}</script>')
    await page.goto(f"{site.origin}/contact")
    await fill_in(page, "Sent by script")
    await page.wait_for_timeout(int((MIN_FILL_SECONDS + 0.3) * 1000))
    await page.get_by_role("button", name="Send").click()
    said = page.get_by_text("Thank you. Your reference is")
    await said.wait_for(timeout=15_000)
    assert REFERENCE.search(await said.inner_text())
    assert page.url == f"{site.origin}/contact"  # the script answered in place
