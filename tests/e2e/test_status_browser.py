"""The customer's side in a real browser (headless Chromium), end to end.

A mail comes in by SMTP to a running gateway; its acknowledgement goes out
through a relay on 127.0.0.1 (tests/e2e/test_outbound.py `Relay`), and the
status link is read from that mail's text, as the customer reads it. In the
browser the customer sees the conversation, replies with a file, marks the
request resolved; the agents' API sees the same. German and French customers
get their acknowledgement and their page in their language. The lookup page
mails a one-time link that opens the status page once; a rotated status link
gives the clear "replaced" page and the new one mailed works. axe-core finds no
WCAG 2 A/AA violation on any state of these pages; screenshots are kept as
artifacts (tests/browser.py `screenshot_dir`).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import smtplib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Page, Response

from gateway import i18n
from gateway.app import Gateway, start, stop
from tests.browser import assert_png, chromium, new_page, screenshot
from tests.e2e.test_form_browser import random_png
from tests.e2e.test_outbound import Relay, received_count
from tests.helpers import auth, make_config, wait_for
from tests.process import free_port

AXE_OPTIONS = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a",
                                                      "wcag21aa", "best-practice"]}}
STATUS_PHRASE = "You can follow its status here: %(status_url)s"
GREETING = "Hello %(name)s,"
ACCESS_LINK = re.compile(r"https?://\S+/status/access/[A-Za-z0-9_-]{43}")
# The time the pipeline may take to thread a reply onto its request (it polls
# every 0.2 s in tests/helpers.make_config).
PROCESSED_SECONDS = 15.0


@dataclass
class Desk:
    gateway: Gateway
    relay: Relay
    api: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return self.gateway.http_url


@pytest.fixture
async def desk(db_url: str) -> AsyncIterator[Desk]:
    """A running gateway whose mail goes to a relay we read. Its HTTP port is
    chosen before it starts, so the links it writes into mail (its public URL)
    are the ones the browser opens."""
    relay = Relay()
    await relay.up()
    config = make_config(
        db_url, http={"listen": f"127.0.0.1:{free_port()}"},
        outbound={"relay": f"127.0.0.1:{relay.port}", "backoff_initial_seconds": 0.05,
                  "backoff_max_seconds": 0.2},
        desk={"timezone": "Europe/Berlin"})
    gateway = await start(config)
    try:
        assert gateway.config.public_url == gateway.http_url
        async with aiohttp.ClientSession(base_url=gateway.http_url,
                                         timeout=aiohttp.ClientTimeout(total=15)) as api:
            yield Desk(gateway, relay, api)
    finally:
        await stop(gateway, grace=3)
        await relay.down()


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with chromium() as browser, new_page(browser) as page:
        yield page


# --- mail in, mail out ----------------------------------------------------------------


def mail_in(gateway: Gateway, *, sender: str, name: str, subject: str, body: str,
            message_id: str) -> str:
    """One mail by SMTP; the reference its 250 answer names."""
    message = EmailMessage()
    message["From"] = f"{name} <{sender}>"
    message["To"] = "support@localhost"
    message["Subject"] = subject
    message["Message-ID"] = f"<{message_id}>"
    message.set_content(body)
    with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=10) as client:
        client.ehlo()
        client.mail(sender)
        client.rcpt("support@localhost")
        code, reply = client.data(message.as_bytes(policy=SMTP_POLICY))
    assert code == 250, reply
    return reply.split()[-1].decode()


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert isinstance(part, EmailMessage)
    return str(part.get_content()).replace("\r\n", "\n")


async def acknowledgement(relay: Relay, address: str, *, count: int) -> EmailMessage:
    """The mail the relay holds for `address`, once `count` mails have come."""
    await received_count(relay, count, timeout=15)
    [ack] = [m for m in relay.received if m["To"].addresses[0].addr_spec == address
             and m["Auto-Submitted"] == "auto-replied"]
    return ack


def reference_in(ack: EmailMessage) -> str:
    found = re.search(r"\[#([0-9A-Z]{4}-[0-9A-Z]{4})\]", str(ack["Subject"]))
    assert found is not None, ack["Subject"]
    return found.group(1)


def status_link(ack: EmailMessage, language: str, desk: Desk) -> str:
    """The status link as the customer reads it: after the catalogue's own
    words for it in the mail's language."""
    lead = i18n.translations(language).gettext(STATUS_PHRASE).split("%(status_url)s")[0]
    text = text_of(ack)
    assert lead.strip() and lead in text, (lead, text)
    link = text.split(lead, 1)[1].split()[0]
    assert link.startswith(f"{desk.url}/v1/status/"), link
    return link


async def api_request(desk: Desk, token: str, reference: str,
                      ready: Callable[[dict[str, Any]], bool] | None = None
                      ) -> dict[str, Any]:
    """The request as the agents' API shows it, once `ready(found)` holds."""
    async def fetch() -> dict[str, Any] | None:
        async with desk.api.get(f"/v1/requests/{reference}", headers=auth(token)) as resp:
            if resp.status != 200:
                return None
            found: dict[str, Any] = await resp.json()
        return found if ready is None or ready(found) else None
    result: dict[str, Any] = await wait_for(fetch, timeout=PROCESSED_SECONDS)
    return result


# --- the browser -------------------------------------------------------------------------


async def violations(axe: Axe, page: Page) -> list[str]:
    results = await axe.run(page, options=AXE_OPTIONS)
    return [f"{v['id']}: {v['help']} ({len(v['nodes'])})"
            for v in results.response["violations"]]


def csp_watch(page: Page) -> list[str]:
    """What the page's Content-Security-Policy blocked (Chromium says so on the
    console): a style, a form's target or a redirect after a post."""
    blocked: list[str] = []
    page.on("console", lambda message: blocked.append(message.text)
            if "Content Security Policy" in message.text else None)
    return blocked


async def click_through(page: Page, selector: str) -> Response:
    """Click a form's button; the response the page ends on."""
    async with page.expect_navigation() as navigation:
        await page.click(selector)
    response = await navigation.value
    assert response is not None
    return response


async def redirected_by_post(response: Response) -> None:
    """The page came after a 303 from a POST (post, redirect, get)."""
    assert response.status == 200, response.status
    post = response.request.redirected_from
    assert post is not None and post.method == "POST"
    first = await post.response()
    assert first is not None and first.status == 303


async def conversation_shows(page: Page, text: str) -> bool:
    """Reload until the conversation holds `text` (the pipeline threads a reply
    a moment after the 303); bounded by wait_for."""
    async def shown() -> bool:
        response = await page.reload()
        assert response is not None and response.status == 200
        return text in await page.locator("#conversation").inner_text()
    return bool(await wait_for(shown, timeout=PROCESSED_SECONDS, interval=0.3))


async def test_status_browser__reply_with_a_file_then_resolve_seen_by_the_api(
        desk: Desk, page: Page, admin_token: str, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    axe = Axe()
    # The checker works here (CSP, headless): a page with an unlabelled input fails.
    await page.set_content("<!doctype html><html lang=en><title>t</title>"
                           "<main><input type=text></main></html>")
    assert any(v.startswith("label:") for v in await violations(axe, page))
    name = request.node.name
    blocked = csp_watch(page)
    shots: list[Path] = []
    found: dict[str, list[str]] = {}
    first_text = "The printer on floor 3 shows error E-42 after every page it prints."
    reference = await asyncio.to_thread(
        mail_in, desk.gateway, sender="ann@example.com", name="Ann Example",
        subject="Printer error E-42", body=first_text, message_id="browser-1@example.com")
    ack = await acknowledgement(desk.relay, "ann@example.com", count=1)
    assert reference_in(ack) == reference
    link = status_link(ack, "en", desk)

    # The conversation: the customer's first message, none of our automatic mail.
    response = await page.goto(link)
    assert response is not None and response.status == 200
    assert await page.locator("h1").inner_text() == f"Your request {reference}"
    conversation = await page.locator("#conversation").inner_text()
    assert first_text in conversation and "You can follow its status" not in conversation
    assert await page.locator("#status").inner_text() == "Received"
    found["conversation"] = await violations(axe, page)
    shots.append(await screenshot(page, name, "conversation"))
    # The watch works: an image the page's policy does not allow is refused, and said.
    await page.evaluate("() => { const probe = new Image(); probe.src = '/probe.png'; }")

    async def refused() -> bool:
        return bool(blocked)
    await wait_for(refused, timeout=5)
    blocked.clear()

    # An empty reply: said on the field and in the summary, nothing sent.
    response = await click_through(page, "#reply-form button[type=submit]")
    assert response.status == 422
    await page.locator("#error-summary").wait_for(state="visible")
    assert await page.locator("#input-message").get_attribute("aria-invalid") == "true"
    assert await page.locator("#error-message").is_visible()
    found["reply-error"] = await violations(axe, page)
    shots.append(await screenshot(page, name, "reply-error"))

    # A reply with text and a file.
    upload = tmp_path / "display.png"
    upload.write_bytes(random_png(200, 200))  # ~120 KB
    digest = hashlib.sha256(upload.read_bytes()).hexdigest()
    reply_text = "It happens on the LX-9 as well. A photo of its display is attached."
    await page.get_by_label("Your message").fill(reply_text)
    await page.set_input_files("#input-attachments", upload)
    response = await click_through(page, "#reply-form button[type=submit]")
    await redirected_by_post(response)
    assert urlsplit(page.url).query == "done=replied"
    assert await page.locator("#notice").is_visible()
    assert await conversation_shows(page, reply_text)
    assert upload.name in await page.locator("#conversation").inner_text()
    found["replied"] = await violations(axe, page)
    shots.append(await screenshot(page, name, "replied"))

    # The agents' API: the reply on the same request, its file byte for byte.
    shown = await api_request(desk, admin_token, reference, lambda r: any(
        m["text"] == reply_text for m in r["messages"]))
    [mine] = [m for m in shown["messages"] if m["text"] == reply_text]
    assert (mine["direction"], mine["from"]["address"]) == ("in", "ann@example.com")
    [attachment] = mine["attachments"]
    assert (attachment["filename"], attachment["size"]) == (upload.name, upload.stat().st_size)
    assert attachment["sha256"] == digest
    async with desk.api.get(f"/v1/requests/{reference}/attachments/{attachment['id']}",
                            headers=auth(admin_token)) as resp:
        assert resp.status == 200
        assert hashlib.sha256(await resp.read()).hexdigest() == digest

    # Marked resolved from the page; the API says so too.
    response = await click_through(page, "#resolve-form button[type=submit]")
    await redirected_by_post(response)
    assert urlsplit(page.url).query == "done=resolved"
    assert await page.locator("#status").inner_text() == "Resolved"
    assert await page.locator("#reopen-form").is_visible()
    found["resolved"] = await violations(axe, page)
    shots.append(await screenshot(page, name, "resolved"))
    resolved = await api_request(desk, admin_token, reference)
    assert resolved["status"] == "resolved"
    # A reply joins its request unacknowledged (the acknowledgement is stored
    # with what it answers, so none can follow later).
    assert [m["flags"].get("kind") for m in resolved["messages"]
            if m["direction"] == "out"] == ["acknowledgement"]
    assert found == {"conversation": [], "reply-error": [], "replied": [], "resolved": []}
    assert blocked == []
    for shot in shots:
        assert_png(shot)


CUSTOMERS = {
    "de": {"sender": "anna@example.com", "name": "Anna Beispiel", "subject": "Drucker defekt",
           "body": "Hallo, der Drucker im zweiten Stock druckt seit gestern nicht mehr. "
                   "Können Sie bitte jemanden vorbeischicken? Vielen Dank!"},
    "fr": {"sender": "amelie@example.com", "name": "Amélie Exemple",
           "subject": "Imprimante en panne",
           "body": "Bonjour, l'imprimante du deuxième étage ne fonctionne plus depuis hier. "
                   "Pourriez-vous envoyer quelqu'un pour la réparer ? Merci beaucoup !"},
}


async def test_status_browser__german_and_french_customers_read_their_language(
        desk: Desk, page: Page, request: pytest.FixtureRequest) -> None:
    axe = Axe()
    blocked = csp_watch(page)
    references = {language: await asyncio.to_thread(
        mail_in, desk.gateway, message_id=f"lang-{language}@example.com", **customer)
        for language, customer in CUSTOMERS.items()}
    found: dict[str, list[str]] = {}
    for language, customer in CUSTOMERS.items():
        t = i18n.translations(language)
        # The catalogue has its own words for these: the test cannot pass on English.
        for message_id in (STATUS_PHRASE, GREETING, "Your request %(reference)s",
                           "Conversation"):
            assert t.gettext(message_id) != message_id, (language, message_id)
        ack = await acknowledgement(desk.relay, customer["sender"], count=len(CUSTOMERS))
        reference = references[language]
        assert reference_in(ack) == reference
        assert text_of(ack).startswith(t.gettext(GREETING) % {"name": customer["name"]})
        link = status_link(ack, language, desk)

        # The browser asks for English (Chromium's default): the request's language wins.
        response = await page.goto(link)
        assert response is not None and response.status == 200
        assert response.headers["content-language"] == language
        assert await page.locator("html").get_attribute("lang") == language
        assert await page.locator("h1").inner_text() == (
            t.gettext("Your request %(reference)s") % {"reference": reference})
        assert await page.locator("#conversation-title").inner_text() == t.gettext(
            "Conversation")
        assert customer["body"][:40] in await page.locator("#conversation").inner_text()
        assert await page.locator("label[for=input-message]").inner_text() == t.gettext(
            "Your message")
        found[language] = await violations(axe, page)
        assert_png(await screenshot(page, request.node.name, language))
    assert found == {language: [] for language in CUSTOMERS}
    assert blocked == []


async def test_status_browser__lookup_mails_a_link_that_opens_the_page_once(
        desk: Desk, page: Page, admin_token: str, request: pytest.FixtureRequest) -> None:
    axe = Axe()
    blocked = csp_watch(page)
    name = request.node.name
    shots: list[Path] = []
    found: dict[str, list[str]] = {}
    reference = await asyncio.to_thread(
        mail_in, desk.gateway, sender="ann@example.com", name="Ann", subject="VPN down",
        body="The VPN has not connected since nine.", message_id="lookup-1@example.com")
    assert reference_in(await acknowledgement(desk.relay, "ann@example.com", count=1)) \
        == reference

    response = await page.goto(f"{desk.url}/status")
    assert response is not None and response.status == 200
    assert await page.locator("h1").inner_text() == "Find your request"
    found["lookup"] = await violations(axe, page)
    shots.append(await screenshot(page, name, "lookup"))

    # What cannot be a reference or an address: said on the fields.
    await page.get_by_label("Reference").fill("not a reference")
    await page.get_by_label("Your email address").fill("nobody")
    response = await click_through(page, "#status-lookup button[type=submit]")
    assert response.status == 422
    await page.locator("#error-summary").wait_for(state="visible")
    assert await page.locator("#input-reference").get_attribute("aria-invalid") == "true"
    found["lookup-error"] = await violations(axe, page)
    shots.append(await screenshot(page, name, "lookup-error"))

    # The reference as a person might type it, the address in other capitals.
    await page.get_by_label("Reference").fill(reference.lower())
    await page.get_by_label("Your email address").fill("Ann@Example.com")
    response = await click_through(page, "#status-lookup button[type=submit]")
    assert response.status == 200
    assert await page.locator("h1").inner_text() == "Check your email"
    assert "/status/access/" not in await page.content()  # mailed, never shown
    found["lookup-sent"] = await violations(axe, page)
    shots.append(await screenshot(page, name, "lookup-sent"))

    await received_count(desk.relay, 2, timeout=15)
    mail = desk.relay.received[1]
    assert mail["To"].addresses[0].addr_spec == "ann@example.com"
    links = ACCESS_LINK.findall(text_of(mail))
    assert len(links) == 1 and links[0].startswith(f"{desk.url}/status/access/"), links
    link = links[0]

    # Opening the link shows a button; only its POST spends the link.
    for _ in range(2):
        response = await page.goto(link)
        assert response is not None and response.status == 200
        assert await page.get_by_role("button", name="Open the status page").is_visible()
    found["link-open"] = await violations(axe, page)
    shots.append(await screenshot(page, name, "link-open"))
    response = await click_through(page, "button[type=submit]")
    await redirected_by_post(response)
    assert urlsplit(page.url).path.startswith("/v1/status/")
    assert await page.locator("h1").inner_text() == f"Your request {reference}"
    assert "The VPN has not connected since nine." in await page.locator(
        "#conversation").inner_text()

    status_page = page.url

    # Once only: the link again is the clear page that says so, with the lookup form.
    response = await page.goto(link)
    assert response is not None and response.status == 410
    assert await page.locator("h1").inner_text() == "This link was used already"
    assert await page.locator("#status-lookup").is_visible()
    found["link-used"] = await violations(axe, page)
    shots.append(await screenshot(page, name, "link-used"))
    # A status link that leads nowhere: the same kind of page.
    response = await page.goto(f"{desk.url}/v1/status/no-such-link")
    assert response is not None and response.status == 404
    assert await page.locator("h1").inner_text() == "This link is not valid"
    found["link-unknown"] = await violations(axe, page)
    shots.append(await screenshot(page, name, "link-unknown"))

    # An agent rotates the status link: the page the customer had says it was
    # replaced, and the new link mailed to them opens the request.
    async with desk.api.post(f"/v1/requests/{reference}/status-link/rotate",
                             headers=auth(admin_token)) as resp:
        assert resp.status == 200, await resp.text()
    await received_count(desk.relay, 3, timeout=15)
    replaced_mail = desk.relay.received[2]
    assert replaced_mail["To"].addresses[0].addr_spec == "ann@example.com"
    new_links = re.findall(rf"{re.escape(desk.url)}/v1/status/[A-Za-z0-9_-]+",
                           text_of(replaced_mail))
    assert len(new_links) == 1 and new_links[0] != status_page, new_links
    response = await page.goto(status_page)
    assert response is not None and response.status == 410
    assert await page.locator("h1").inner_text() == "This link was replaced"
    found["link-replaced"] = await violations(axe, page)
    shots.append(await screenshot(page, name, "link-replaced"))
    response = await page.goto(new_links[0])
    assert response is not None and response.status == 200
    assert await page.locator("h1").inner_text() == f"Your request {reference}"
    assert found == {state: [] for state in (
        "lookup", "lookup-error", "lookup-sent", "link-open", "link-used", "link-unknown",
        "link-replaced")}
    assert blocked == []
    for shot in shots:
        assert_png(shot)
