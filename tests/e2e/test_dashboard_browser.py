"""The dashboard in a real browser (headless Chromium), against the running
gateway: log in with a token through the form, see the charts drawn, follow a
breach to its request, log out; axe-core finds no violation on any page.
Screenshots are kept as artifacts (tests/browser.py `screenshot_dir`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Page
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import Gateway
from gateway.http.dashboard_session import SESSION_COOKIE
from storage.engine import utcnow
from storage.models import requests
from tests.browser import assert_png, chromium, new_page, screenshot
from tests.helpers import auth, wait_for

AXE_OPTIONS = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a",
                                                      "wcag21aa", "best-practice"]}}
CHARTS = ("created-resolved", "backlog", "sla-queue", "first-response")
# What each chart draws for the desk below, at least: points, bars.
MARKS = {"created-resolved": "circle", "backlog": "rect[height]:not([height='0.0'])",
         "sla-queue": "rect > title", "first-response": "rect[height]:not([height='0.0'])"}


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with chromium() as browser, new_page(browser) as page:
        yield page


@pytest.fixture
async def api(gateway: Gateway) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=gateway.http_url,
                                     timeout=aiohttp.ClientTimeout(total=15)) as session:
        yield session


async def _desk(api: aiohttp.ClientSession, engine: AsyncEngine, token: str) -> list[str]:
    """Three requests: two past their first-response target (general, billing),
    one answered and resolved, with met targets."""
    refs = []
    for subject in ("Printer jams", "Invoice sent twice", "Scanner offline"):
        async with api.post("/v1/requests", headers=auth(token), json={
                "requester": {"email": "ann@example.com"}, "subject": subject,
                "body": "please help"}) as resp:
            assert resp.status == 201
            refs.append((await resp.json())["reference"])

    async def processed() -> bool:
        for ref in refs:
            async with api.get(f"/v1/requests/{ref}", headers=auth(token)) as resp:
                if (await resp.json()).get("status") != "new":
                    return False
        return True

    await wait_for(processed, timeout=15)
    now = utcnow()
    async with engine.begin() as conn:
        await conn.execute(update(requests).where(requests.c.reference == refs[1])
                           .values(queue="billing"))
        await conn.execute(update(requests).where(requests.c.reference.in_(refs[:2]))
                           .values(first_response_due_at=now - timedelta(hours=3)))
        await conn.execute(update(requests).where(requests.c.reference == refs[2])
                           .values(first_response_due_at=now + timedelta(hours=1),
                                   resolution_due_at=now + timedelta(hours=8)))
    async with api.post(f"/v1/requests/{refs[2]}/replies", headers=auth(token),
                        json={"body": "Fixed.", "status": "resolved"}) as resp:
        assert resp.status == 201, await resp.text()
    return refs


async def _violations(axe: Axe, page: Page) -> list[str]:
    # Open the data tables too, so their markup is checked as well.
    await page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")
    results = await axe.run(page, options=AXE_OPTIONS)
    return [f"{v['id']}: {v['help']} ({len(v['nodes'])})"
            for v in results.response["violations"]]


async def _chart_size(page: Page, chart: str) -> dict[str, Any]:
    return await page.evaluate("""(id) => {
        const svg = document.getElementById(id);
        const box = svg.getBoundingClientRect();
        return {width: box.width, height: box.height, role: svg.getAttribute("role"),
                name: svg.querySelector("title").textContent};
    }""", chart)


async def test_dashboard_browser__log_in_see_the_charts_follow_a_breach_log_out(
        page: Page, gateway: Gateway, api: aiohttp.ClientSession, engine: AsyncEngine,
        admin_token: str, request: pytest.FixtureRequest) -> None:
    refs = await _desk(api, engine, admin_token)
    axe = Axe()
    found: dict[str, list[str]] = {}
    # The checker works here (CSP, headless): an unlabelled input is caught.
    await page.set_content("<!doctype html><html lang=en><title>t</title>"
                           "<main><input type=text></main></html>")
    assert any(v.startswith("label:") for v in await _violations(axe, page))

    response = await page.goto(f"{gateway.http_url}/dashboard")
    assert response is not None and response.status == 200
    assert urlsplit(page.url).path == "/dashboard/login"
    found["login"] = await _violations(axe, page)
    assert_png(await screenshot(page, request.node.name, "login"))

    # A wrong token first: said on the page, beside the field.
    await page.get_by_label("API token").fill("itk_wrong")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Log in").click()
    assert await page.locator("#login-error[role=alert]").is_visible()
    assert await page.get_by_label("API token").get_attribute("aria-invalid") == "true"
    found["login error"] = await _violations(axe, page)
    assert_png(await screenshot(page, request.node.name, "login-error"))

    await page.get_by_label("API token").fill(admin_token)
    async with page.expect_navigation():
        await page.get_by_role("button", name="Log in").click()
    assert urlsplit(page.url).path == "/dashboard"
    assert admin_token not in page.url
    # HttpOnly: the page's script cannot read the session.
    assert SESSION_COOKIE not in await page.evaluate("() => document.cookie")
    [cookie] = [c for c in await page.context.cookies() if c["name"] == SESSION_COOKIE]
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (
        True, "Strict", "/dashboard")

    for chart in CHARTS:
        size = await _chart_size(page, chart)
        assert size["width"] > 300 and size["height"] > 100, (chart, size)
        assert size["role"] == "img" and size["name"], (chart, size)
        drawn = await page.locator(f"#{chart} {MARKS[chart]}").count()
        assert drawn > 0, chart
    breaches = page.locator("#breaches tbody tr")
    assert await breaches.count() == 2
    assert_png(await screenshot(page, request.node.name, "dashboard"))
    found["dashboard"] = await _violations(axe, page)
    assert_png(await screenshot(page, request.node.name, "dashboard-tables"))

    async with page.expect_navigation():
        await page.get_by_role("link", name=refs[0]).click()
    assert urlsplit(page.url).path == f"/dashboard/requests/{refs[0]}"
    assert await page.get_by_role("heading", name=f"Request {refs[0]}").is_visible()
    found["request"] = await _violations(axe, page)
    assert_png(await screenshot(page, request.node.name, "request"))

    async with page.expect_navigation():
        await page.get_by_role("button", name="Log out").click()
    assert urlsplit(page.url).path == "/dashboard/login"
    assert [c for c in await page.context.cookies() if c["name"] == SESSION_COOKIE] == []
    response = await page.goto(f"{gateway.http_url}/dashboard")
    assert response is not None and urlsplit(page.url).path == "/dashboard/login"
    assert found == {"login": [], "login error": [], "dashboard": [], "request": []}
