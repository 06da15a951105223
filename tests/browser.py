"""Browser tests' shared pieces: Debian's Chromium driven by Playwright, screenshots.

Playwright's own browser builds cannot be downloaded here, so the tests drive
the system's /usr/bin/chromium (.ci/run installs it). Outside CI a missing
Chromium skips with the reason shown; in CI (CI=true) it fails, as a missing
PostgreSQL does in conftest.py.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
IN_CI = os.environ.get("CI") == "true"
REPO = Path(__file__).resolve().parent.parent
# Headless in containers: no sandbox (root), no GPU, /dev/shm is small, and
# nothing phones home or loads extensions while a test runs.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-extensions"]
LAUNCH_TIMEOUT_MS = 30_000
ACTION_TIMEOUT_MS = 10_000
NAVIGATION_TIMEOUT_MS = 15_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def require_chromium() -> None:
    if os.access(CHROMIUM, os.X_OK):
        return
    message = f"{CHROMIUM} not found: install Debian's chromium package"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium for one test (closed even when the test fails)."""
    require_chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            timeout=LAUNCH_TIMEOUT_MS)
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def new_page(browser: Browser) -> AsyncIterator[Page]:
    """A page in a fresh context, every wait bounded so a hang is a failure, not a stall."""
    context = await browser.new_context(viewport={"width": 1000, "height": 900})
    try:
        page = await context.new_page()
        page.set_default_timeout(ACTION_TIMEOUT_MS)
        page.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
        yield page
    finally:
        await context.close()


def screenshot_dir() -> Path:
    """INTAKE_ARTIFACTS_DIR if set (CI collects it), else <repo>/artifacts/screenshots/."""
    configured = os.environ.get("INTAKE_ARTIFACTS_DIR")
    directory = Path(configured) if configured else REPO / "artifacts" / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


async def screenshot(page: Page, test_name: str, label: str) -> Path:
    """A full-page PNG named after the test (backend included) and what it shows."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", test_name).strip("-") + f"-{label}"
    path = screenshot_dir() / f"{stem}.png"
    await page.screenshot(path=str(path), full_page=True, timeout=ACTION_TIMEOUT_MS)
    return path


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    with path.open("rb") as file:
        head = file.read(len(PNG_SIGNATURE))
    assert path.stat().st_size > len(PNG_SIGNATURE) and head == PNG_SIGNATURE, path
