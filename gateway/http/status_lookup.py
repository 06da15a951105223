"""Reaching a request's status page without its link: the lookup page, the
one-time access links it mails, and the rotation of a request's status link.

GET /status is a form taking a reference and an email address. When they
belong to one request, POST /status mails its requester a one-time link
(never shown on the page); the answer is the same page whatever was asked,
after the same queries and no sooner than a fixed floor, so neither the page
nor its timing tells whether a reference or an address exists. A request
gets at most `LINKS_PER_HOUR` links an hour (past that: the same answer, no
mail); an address may look up `LOOKUPS_PER_HOUR` times an hour (then 429).
The form carries a token signed with the forms' secret, bound to the
client's address, and a post from another origin is refused, as the web
forms do, under the same Content-Security-Policy.

GET /status/access/{key} answers a page with one button, and only its POST
spends the link: mail scanners that fetch every link in a message must not
use it up before the person clicks. The POST sends the browser on to the
status page (303). A used, expired, replaced or unknown link gets a page
that says which, in words, with the lookup form.

POST /v1/requests/{reference}/status-link/rotate (agents) and `intake
status-link rotate` give a request a new status token and mail it to the
requester; the old link then answers "replaced" (`gone_page`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import math
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from domain.lifecycle import Outcome
from gateway import i18n
from gateway.delivery.status_links import access_mail, rotate_link
from gateway.http.access import Acting, Changed, authorise, etag
from gateway.http.audit import audited
from gateway.http.auth import actor
from gateway.http.form_pages import origin_of
from gateway.http.forms import FORMS
from gateway.http.limits import Buckets, client_key
from gateway.http.problems import RETRY_AFTER_SECONDS, Problem
from gateway.http.shared import CONFIG, ENGINE, RULES, json_response
from parsers.addresses import mailbox_or_none
from parsers.forms import TOKEN_FIELD
from storage import status_links
from storage.engine import utcnow
from storage.errors import StorageUnavailable
from storage.reference import canonical
from storage.status_links import Access, Holder

# The answer comes no sooner than this after the post: longer than the
# lookup's work takes, so its time does not depend on what was found.
FLOOR_SECONDS = 0.4
LINKS_PER_HOUR = 3
LOOKUPS_PER_HOUR = 20
# Opening links (a page, then its button): generous, but not a key-guessing engine.
OPENS_PER_MINUTE = 60
TOKEN_AGE_SECONDS = 2 * 3600
MAX_POST_BYTES = 2048
MAX_REFERENCE = 40
# secrets.token_urlsafe(32): 43 URL-safe characters.
_KEY = re.compile(r"^[A-Za-z0-9_-]{43}$")
# The same compare runs when nothing was found: against this, which no
# address equals (a real address has an @).
_NOBODY = hashlib.sha256(b"\x00no requester").digest()
# What the no-match lookup composes, so both ways do the same work.
_PLACEHOLDER = Holder(id=0, reference="0000-0000", requester_email="nobody@example.com",
                      requester_name=None, queue="", subject="", status_token=None,
                      version=0)

_HEADERS = {
    # As the web forms: no script, nothing from elsewhere, posts only to us, and
    # never framed. Referrer-Policy same-origin: a no-referrer page's posts
    # would carry `Origin: null`, which the origin check refuses.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store"}

_TEMPLATES = i18n.prepare(Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=select_autoescape(default=True), trim_blocks=True, lstrip_blocks=True))


@dataclass
class StatusLinkDesk:
    """The lookup's limits and its answer's floor (one per app)."""

    floor_seconds: float = FLOOR_SECONDS
    links_per_hour: int = LINKS_PER_HOUR
    lookups: Buckets = field(default_factory=lambda: Buckets(
        LOOKUPS_PER_HOUR / 3600, LOOKUPS_PER_HOUR))
    opens: Buckets = field(default_factory=lambda: Buckets(
        OPENS_PER_MINUTE / 60, OPENS_PER_MINUTE))


STATUS_LINKS = web.AppKey("status_links", StatusLinkDesk)


# --- pages ---------------------------------------------------------------------------


def _language(request: web.Request) -> str:
    return i18n.choose(accept_language=request.headers.get("Accept-Language"),
                       desk=request.app[RULES].config.desk.language)


def _page(template: str, language: str, status: int = 200,
          headers: dict[str, str] | None = None, **values: Any) -> web.Response:
    text = _TEMPLATES.get_template(template).render(**values,
                                                    **i18n.template_functions(language))
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8",
                        headers=_HEADERS | {"Content-Language": language} | (headers or {}))


def _form_page(request: web.Request, language: str, template: str = "status_lookup.html",
               status: int = 200, *, errors: list[dict[str, str]] | None = None,
               values: dict[str, str] | None = None, headers: dict[str, str] | None = None,
               **extra: Any) -> web.Response:
    """A page holding the lookup form, with a fresh token."""
    errors = errors or []
    return _page(template, language, status, headers, token=_issue(request),
                 token_field=TOKEN_FIELD, errors=errors, values=values or {},
                 field_errors={e["field"]: e["detail"] for e in errors if e.get("field")},
                 minutes=request.app[CONFIG].http.status_link_minutes, **extra)


def _problem_page(request: web.Request, language: str, status: int, detail: str,
                  headers: dict[str, str] | None = None) -> web.Response:
    return _form_page(request, language, status=status, headers=headers,
                      errors=[{"field": "", "detail": detail}])


def _invalid_page(request: web.Request, language: str, why: Access | str) -> web.Response:
    """A link that does not lead anywhere (any more), saying why."""
    t = i18n.translations(language)
    if why == Access.USED:
        status, title, detail = 410, t.gettext("This link was used already"), t.gettext(
            "Each link we email opens the status page once. Ask for a new one below.")
    elif why == Access.EXPIRED:
        status, title, detail = 410, t.gettext("This link has expired"), t.gettext(
            "The links we email work for a limited time. Ask for a new one below.")
    elif why == "replaced":
        status, title, detail = 410, t.gettext("This link was replaced"), t.gettext(
            "We replaced the link to this request's status page and emailed the new one "
            "to the requester. Use the newest link, or ask for one below.")
    else:
        status, title, detail = 404, t.gettext("This link is not valid"), t.gettext(
            "We do not know this link. Check that it was copied whole, or ask for a new "
            "one below.")
    return _form_page(request, language, "status_link_invalid.html", status,
                      title=title, detail=detail)


async def gone_page(request: web.Request, token: str) -> web.Response:
    """The page for a status link that finds no request: replaced by a rotation
    (410) or never one (404). For the status page's handler to answer browsers."""
    try:
        replaced = await status_links.was_replaced(request.app[ENGINE], token)
    except StorageUnavailable:
        replaced = False
    return _invalid_page(request, _language(request), "replaced" if replaced else "unknown")


# --- the page's token and origin ------------------------------------------------------


def _mac(secret: bytes, message: str) -> str:
    digest = hmac.new(secret, f"status-lookup|{message}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def page_token(secret: bytes, client: str, now: float) -> str:
    """A token for one page: when it was issued and a nonce, signed with the
    client's address (the forms' secret: every process behind a balancer knows it)."""
    issued, nonce = str(int(now)), secrets.token_urlsafe(9)
    return f"{issued}.{nonce}.{_mac(secret, f'{issued}|{nonce}|{client}')}"


def token_good(secret: bytes, client: str, token: str | None, now: float) -> bool:
    """Whether `token` was issued by us to `client`, at most TOKEN_AGE_SECONDS ago."""
    parts = (token or "").split(".")
    if len(parts) != 3 or not (parts[0].isascii() and parts[0].isdigit()
                               and len(parts[0]) <= 12):
        return False
    issued, nonce, mac = parts
    expected = _mac(secret, f"{issued}|{nonce}|{client}")
    if not hmac.compare_digest(mac.encode("utf-8", "surrogatepass"), expected.encode()):
        return False
    return 0 <= now - int(issued) <= TOKEN_AGE_SECONDS


def _issue(request: web.Request) -> str:
    return page_token(request.app[FORMS].secret, client_key(request.remote), time.time())


def _own_origin(request: web.Request) -> bool:
    """A post with no Origin (not a browser's cross-site post) or one of ours."""
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        return False
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    ours = {origin_of(request.app[CONFIG].public_url), f"{request.scheme}://{request.host}"}
    return origin.lower() in {o.lower() for o in ours}


def _slow_down(wait: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(wait)))}


# --- the lookup ------------------------------------------------------------------------


class _Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


async def _read_form(request: web.Request, language: str) -> dict[str, str]:
    """The post's fields (the first of each), bounded; _Refused otherwise."""
    t = i18n.translations(language)
    if request.content_type != "application/x-www-form-urlencoded":
        raise _Refused(415, t.gettext("Please send the form from this page."))
    if request.content_length is not None and request.content_length > MAX_POST_BYTES:
        raise _Refused(413, t.gettext("What was sent is too long."))
    raw = bytearray()
    while chunk := await request.content.read(MAX_POST_BYTES):
        raw += chunk
        if len(raw) > MAX_POST_BYTES:
            raise _Refused(413, t.gettext("What was sent is too long."))
    try:
        pairs = parse_qsl(bytes(raw).decode("ascii"), keep_blank_values=True,
                          encoding="utf-8", errors="strict", max_num_fields=16)
    except (UnicodeDecodeError, ValueError):
        raise _Refused(400, t.gettext("The form could not be read. Please send it "
                                      "again.")) from None
    values: dict[str, str] = {}
    for name, value in pairs:
        values.setdefault(name, value)
    return values


def _checked(values: dict[str, str], language: str
             ) -> tuple[str | None, str | None, list[dict[str, str]]]:
    """The canonical reference and the address, or what is wrong with them."""
    t = i18n.translations(language)
    errors = []
    typed = values.get("reference", "").strip().strip("[]#").strip()
    reference = canonical(typed) if len(typed) <= MAX_REFERENCE else None
    if reference is None:
        errors.append({"field": "reference", "detail": t.gettext(
            "Enter the reference as we wrote it, for example 7PY9-9T9S.")})
    mailbox = _address(values.get("email", ""))
    if mailbox is None:
        errors.append({"field": "email", "detail": t.gettext(
            "Enter an email address, for example name@example.com.")})
    return reference, mailbox, errors


def _address(text: str) -> str | None:
    """The address as the project stores and compares it (parsers/addresses.py)."""
    found = mailbox_or_none(text.strip())
    return found.addr_spec if found is not None else None


def _digest(address: str | None) -> bytes:
    return hashlib.sha256(address.encode()).digest() if address else _NOBODY


async def _send_link(request: web.Request, reference: str, address: str) -> None:
    """Mail a one-time link when `address` is the request's requester. The same
    queries, compare and composing either way; only the writes differ."""
    config, engine = request.app[RULES].config, request.app[ENGINE]
    found = await status_links.holder(engine, reference)
    stored = _address(found.requester_email or "") if found is not None else None
    same = hmac.compare_digest(_digest(address), _digest(stored))
    match = found if same and found is not None and found.status_token else None
    key = secrets.token_urlsafe(32)
    minutes = request.app[CONFIG].http.status_link_minutes
    mail = access_mail(config, found or _PLACEHOLDER, f"{config.public_url}/status/access/{key}")
    await status_links.issue_access(
        engine, request_id=match.id if match is not None else None, key=key,
        expires_at=utcnow() + timedelta(minutes=minutes),
        mail=mail if match is not None else None,
        per_hour=request.app[STATUS_LINKS].links_per_hour)


async def lookup_page(request: web.Request) -> web.Response:
    return _form_page(request, _language(request))


async def lookup(request: web.Request) -> web.Response:
    loop = asyncio.get_running_loop()
    started = loop.time()
    language = _language(request)
    t = i18n.translations(language)
    desk = request.app[STATUS_LINKS]
    if not _own_origin(request):
        return _problem_page(request, language, 403, t.gettext(
            "This form can only be sent from our own page. Please send it from here."))
    wait = desk.lookups.take(client_key(request.remote))
    if wait > 0:
        return _problem_page(request, language, 429, t.gettext(
            "Too many lookups from your address. Please wait a while and try again."),
            headers=_slow_down(wait))
    try:
        values = await _read_form(request, language)
    except _Refused as refused:
        return _problem_page(request, language, refused.status, refused.detail)
    if not token_good(request.app[FORMS].secret, client_key(request.remote),
                      values.get(TOKEN_FIELD), time.time()):
        return _problem_page(request, language, 403, t.gettext(
            "This page has expired or came from another site. Please send the form "
            "again from here."))
    reference, address, errors = _checked(values, language)
    if errors or reference is None or address is None:
        return _form_page(request, language, status=422, errors=errors, values={
            k: values.get(k, "")[:300] for k in ("reference", "email")})
    try:
        await _send_link(request, reference, address)
    except StorageUnavailable:
        return _problem_page(request, language, 503, t.gettext(
            "We could not look this up just now. Please try again in a minute."),
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    await asyncio.sleep(max(0.0, started + desk.floor_seconds - loop.time()))
    return _form_page(request, language, "status_lookup_sent.html")


# --- one-time access links ----------------------------------------------------------


def _opening(request: web.Request, language: str) -> web.Response | None:
    """A page to answer at once (too many opens, a key that cannot be one), or None."""
    wait = request.app[STATUS_LINKS].opens.take(client_key(request.remote))
    if wait > 0:
        t = i18n.translations(language)
        return _problem_page(request, language, 429, t.gettext(
            "Too many links opened from your address. Please wait a minute and try again."),
            headers=_slow_down(wait))
    if not _KEY.match(request.match_info["key"]):
        return _invalid_page(request, language, Access.UNKNOWN)
    return None


async def access_page(request: web.Request) -> web.Response:
    """The link's page: a button that opens the status page (spends the link)."""
    language = _language(request)
    early = _opening(request, language)
    if early is not None:
        return early
    key = request.match_info["key"]
    state = await status_links.peek_access(request.app[ENGINE], key)
    if state != Access.OPEN:
        return _invalid_page(request, language, state)
    return _page("status_link_open.html", language, action=f"/status/access/{key}")


async def open_access(request: web.Request) -> web.Response:
    language = _language(request)
    if not _own_origin(request):
        t = i18n.translations(language)
        return _problem_page(request, language, 403, t.gettext(
            "This link can only be opened from our own page."))
    early = _opening(request, language)
    if early is not None:
        return early
    opened = await status_links.use_access(request.app[ENGINE], request.match_info["key"])
    if opened.state != Access.OPEN or opened.status_token is None:
        return _invalid_page(request, language, opened.state)
    return web.Response(status=303, headers=_HEADERS | {
        "Location": f"/v1/status/{opened.status_token}"})


# --- rotation (agents) ----------------------------------------------------------------


async def rotate(request: web.Request) -> web.Response:
    """A new status link for the request, mailed to its requester; the old one
    stops working. Agents and admins, within their queues."""
    acting = await authorise(request)

    async def attempt(now: Acting) -> status_links.Rotation:
        done = await rotate_link(request.app[ENGINE], request.app[RULES].config,
                                 now.reference, actor=actor(now.token),
                                 audit=audited(request, now.token),
                                 expected_version=now.version)
        if done.outcome == Outcome.STALE:
            raise Changed
        if done.outcome == Outcome.MISSING:
            raise Problem(409, "this request has no status link: its personal data "
                               "was removed")
        return done

    done = await acting.perform(request, attempt)
    assert done.version is not None
    return json_response({"reference": acting.reference, "version": done.version,
                          "mailed": done.mailed}, headers={"ETag": etag(done.version)})


def add_routes(app: web.Application) -> None:
    app[STATUS_LINKS] = StatusLinkDesk()
    app.router.add_get("/status", lookup_page)
    app.router.add_post("/status", lookup)
    app.router.add_get("/status/access/{key}", access_page)
    app.router.add_post("/status/access/{key}", open_access)
    app.router.add_post("/v1/requests/{reference}/status-link/rotate", rotate)
