"""The customer's status page at the link in their acknowledgement, and what
they may do from it.

GET /v1/status/{token} answers a browser (one that asks for text/html) with
an HTML page, server-rendered with the web forms' base template and CSP, no
script: the reference, the status in plain words, what happens next, the
public conversation (storage/status_view.py decides what is public) with the
customer's own and our replies' files to download
(/v1/status/{token}/attachments/{id}). Any other client keeps the JSON it had.

From the page (plain POST forms; each answered 303 back to the page):
- a reply with text and files, read by the forms' streaming parser under the
  same kind of limits and stored as a form post in the inbox before the
  answer; the pipeline threads it onto the request as the requester's message
  (gateway/pipeline/building.py `status_reply_request`), so it reopens a
  resolved request within its reopen window and makes a new linked request
  after it, as a mail would, and is acknowledged by the usual rules;
- mark resolved, and reopen within the queue's reopen window
  (storage/customer_actions.py).
Every post needs the page's token and our own origin, and is rate limited
(status_guard.py). Every word the customer reads is in the catalogues.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web
from babel.numbers import format_decimal
from jinja2 import Environment, FileSystemLoader, select_autoescape

from domain.lifecycle import DEFAULT_REOPEN_DAYS, DONE
from gateway import i18n, logs, metrics
from gateway.delivery.outbound import new_message_id
from gateway.http import status_lookup, status_text
from gateway.http.form_post import Post, Refused, read_post, size_text
from gateway.http.forms import store_post
from gateway.http.problems import RETRY_AFTER_SECONDS, Problem
from gateway.http.shared import (
    CONFIG,
    ENGINE,
    RULES,
    json_response,
    send_stored_file,
    small_int,
)
from gateway.http.status_guard import StatusDesk, foreign_origin
from gateway.http.status_text import Words
from gateway.pipeline.building import STATUS_FORM_ID, STATUS_REPLY
from gateway.pipeline.service_levels import describe
from parsers.addresses import mailbox_or_none
from parsers.api_request import FieldProblem
from parsers.forms import (
    TOKEN_FIELD,
    FormField,
    FormSpec,
    FormSubmission,
    check_values,
)
from storage import actions, customer_actions
from storage.customer_actions import Done
from storage.engine import utcnow
from storage.errors import StorageUnavailable
from storage.retention import DROPPED_SHA256
from storage.status_view import StatusView, as_json, read_view

log = logging.getLogger("intake.status")

STATUS = web.AppKey("status_page", StatusDesk)
# What a reply from the page may carry: the defaults of a web form.
MAX_REPLY_CHARS = 20_000
REPLY = FormSpec(
    id=STATUS_FORM_ID, title="status page", min_fill_seconds=0, max_files=3,
    max_file_bytes=10 * 1024 * 1024, max_body_bytes=3 * 10 * 1024 * 1024 + 1024 * 1024,
    fields=(FormField("message", "message", kind="textarea", role="body",
                      max_length=MAX_REPLY_CHARS),
            FormField("attachments", "attachments", kind="file")))
# Resolve and reopen carry the page token alone.
ACTION = FormSpec(id=STATUS_FORM_ID, title="status page", fields=(), min_fill_seconds=0,
                  max_files=0, max_body_bytes=8 * 1024)
# The lookup page (gateway/http/status_lookup.py) sends a new link to the requester.
LOOKUP_URL = "/status"
# An Accept header is read this far, its first 50 entries at most (a browser's is
# a few entries long): a hostile one costs no more.
MAX_ACCEPT = 1000

_TEMPLATES = i18n.prepare(Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=select_autoescape(default=True), trim_blocks=True, lstrip_blocks=True))
_TEMPLATES.filters["sentence"] = lambda text: text[:1].upper() + text[1:]


# --- content negotiation, language, rendering -----------------------------------------


def _quality(accept: str, wanted: tuple[str, ...]) -> float:
    """The highest q the Accept header gives one of `wanted` by name (no wildcards)."""
    best = 0.0
    for entry in accept[:MAX_ACCEPT].split(",")[:50]:
        kind, *params = (part.strip() for part in entry.split(";"))
        if kind.lower() not in wanted:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(1.0, max(0.0, float(value.strip()[:5])))
                except ValueError:
                    q = 0.0
        best = max(best, q)
    return best


def wants_html(request: web.Request) -> bool:
    """A browser's request: it names text/html, and prefers it to JSON. A client
    that names neither (`*/*`, no Accept) gets the JSON it always had."""
    accept = request.headers.get("Accept", "")
    html = _quality(accept, ("text/html", "application/xhtml+xml"))
    return html > 0 and html >= _quality(accept, ("application/json",))


def _detected(view: StatusView | None) -> str | None:
    """The language the classifier found in the request (None: it could not tell,
    or was unsure: gateway/i18n judges)."""
    guess = view.language_guess if view is not None else None
    if not guess:
        return None
    return i18n.detected(guess.get("value"), guess.get("score"), guess.get("source"))


def _words(request: web.Request, view: StatusView | None) -> Words:
    """The page's language: the request's detected one, the browser's, the queue's,
    the desk's ([desk] and [[queue]] language)."""
    config = request.app[RULES].config
    queue = next((q for q in config.queue if view is not None and q.name == view.queue), None)
    language = i18n.choose(detected=_detected(view),
                           accept_language=request.headers.get("Accept-Language"),
                           queue=queue.language if queue is not None else None,
                           desk=config.desk.language)
    return Words(i18n.translations(language), language, config.desk.timezone)


def _problem_text(text: str, words: Words) -> str:
    """A problem the forms' checks worded in English (form_post.py), as the
    customer reads it, where gateway/i18n knows its wording."""
    return i18n.customer_text(text, words.language)


def _headers(words: Words) -> dict[str, str]:
    # No script, style only inline, posts only to us, never framed; the link in
    # the address bar is the key to the request: never sent to another site.
    return {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                       "base-uri 'none'; form-action 'self'; "
                                       "frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
            "Cache-Control": "no-store", "Vary": "Accept, Accept-Language",
            "Content-Language": words.language}


def _html(template: str, words: Words, status: int = 200,
          headers: dict[str, str] | None = None, **values: Any) -> web.Response:
    # The language's gettext functions given to this render alone (not installed
    # on the shared environment), so renders never mix their languages.
    page = _TEMPLATES.get_template(template).render(
        **values, **i18n.template_functions(words.language))
    return web.Response(text=page, status=status, content_type="text/html", charset="utf-8",
                        headers=_headers(words) | (headers or {}))


def _link(token: str, *rest: str) -> str:
    return "/".join(("/v1/status", quote(token, safe=""), *rest))


def _problem_page(words: Words, status: int, title: str, detail: str, *,
                  token: str | None = None, lookup: bool = False,
                  headers: dict[str, str] | None = None) -> web.Response:
    return _html("status_problem.html", words, status, headers, title=title, detail=detail,
                 page_url=_link(token) if token else None,
                 lookup_url=LOOKUP_URL if lookup else None)


async def _gone(request: web.Request, token: str) -> web.Response:
    """The page for a link that finds no request: replaced by a newer one (410,
    "this link was replaced") or never one (404), both offering the lookup
    page that mails the newest (gateway/http/status_lookup.py)."""
    return await status_lookup.gone_page(request, token)


def _unavailable(words: Words, token: str | None) -> web.Response:
    _ = words.t.gettext
    return _problem_page(words, 503, _("Please try again in a minute"),
                         _("We could not do this just now. Nothing was changed or sent; "
                           "please try again in a minute."), token=token,
                         headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def _reopen_days(request: web.Request, queue: str) -> int:
    spec = next((q for q in request.app[RULES].config.queue if q.name == queue), None)
    return spec.reopen_days if spec is not None else DEFAULT_REOPEN_DAYS


def _messages(view: StatusView, token: str, words: Words) -> list[dict[str, Any]]:
    _ = words.t.gettext
    return [{"author": status_text.author(m, words), "when": words.when(m.at), "text": m.text,
             "files": [{"name": f.filename or _("file"), "size": status_text.size(f.size),
                        "removed": f.removed,
                        "url": _link(token, "attachments", str(f.id)) if f.downloadable
                        else None} for f in m.files]}
            for m in view.messages]


def _page(request: web.Request, view: StatusView, token: str, words: Words, *,
          status: int = 200, errors: list[dict[str, str]] | None = None, typed: str = "",
          headers: dict[str, str] | None = None) -> web.Response:
    _ = words.t.gettext
    now = utcnow()
    days = _reopen_days(request, view.queue)
    sla = describe(view.sla, request.app[RULES].sla, now) if view.status not in DONE else None
    errors = errors or []
    return _html(
        "status.html", words, status, headers,
        reference=view.reference, subject=view.subject,
        status_label=status_text.status_label(view.status, words),
        created=words.when(view.created_at),
        next_steps=status_text.next_steps(view, sla, words, reopen_days=days, now=now),
        messages=_messages(view, token, words),
        notice=status_text.notice(request.query.get("done"), words) if not errors else None,
        errors=errors, field_errors={e["field"]: e["detail"] for e in errors if e["field"]},
        typed=typed, can_reply=mailbox_or_none(view.requester_email) is not None,
        can_resolve=status_text.can_resolve(view),
        can_reopen=status_text.can_reopen(view, reopen_days=days, now=now),
        token=request.app[STATUS].page_token(token), token_field=TOKEN_FIELD,
        actions={"reply": _link(token, "replies"), "resolve": _link(token, "resolve"),
                 "reopen": _link(token, "reopen")},
        hint=_("At most %(count)s characters.") % {
            "count": format_decimal(MAX_REPLY_CHARS, locale=words.language)},
        max_length=MAX_REPLY_CHARS, max_files=REPLY.max_files,
        max_file_size=size_text(REPLY.max_file_bytes), accept=",".join(REPLY.file_types))


# --- reading -------------------------------------------------------------------------


async def show(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    if not wants_html(request):
        view = await read_view(request.app[ENGINE], token)
        if view is None:
            raise Problem(404, "no request for this status link")
        return json_response(as_json(view), headers={"Cache-Control": "no-store",
                                                     "Vary": "Accept"})
    known = await _known(request)
    if isinstance(known, web.Response):
        return known
    token, view, words = known
    return _page(request, view, token, words)


async def download(request: web.Request) -> web.StreamResponse:
    """A file of the customer's own messages or of our replies, by the status link."""
    token = request.match_info["token"]
    number = small_int(request.match_info["attachment_id"])
    view = await read_view(request.app[ENGINE], token)
    shown = view.public_file(number) if view is not None and number is not None else None
    item = None if shown is None or view is None else await actions.attachment(
        request.app[ENGINE], view.reference, shown.id)
    if shown is None or item is None or item["sha256"] == DROPPED_SHA256:
        raise Problem(404, "no such file on this page")
    return await send_stored_file(request, item, fallback=f"attachment-{shown.id}",
                                  headers={"Cache-Control": "no-store",
                                           "Referrer-Policy": "no-referrer"})


# --- posts ---------------------------------------------------------------------------


def _guard(request: web.Request, token: str, words: Words) -> None:
    """Refuse a post from another site, or past the rate limits."""
    _ = words.t.gettext
    if foreign_origin(request, request.app[CONFIG].public_url):
        raise Refused(403, "origin", _("This form was sent from another website. Open your "
                                       "request from the link we sent you and try again."))
    wait = request.app[STATUS].wait(request, token)
    if wait:
        raise Refused(429, "rate_limited", _("You have sent this page many times in a short "
                                             "while. Please wait a minute and try again."),
                      headers={"Retry-After": str(wait)})


def _page_token(request: web.Request, token: str, post: Post, words: Words) -> str:
    _ = words.t.gettext
    given = post.values.get(TOKEN_FIELD, [])
    page_token = given[0] if len(given) == 1 else None
    if not request.app[STATUS].valid(token, page_token):
        raise Refused(403, "token", _("This page has expired or did not come from us. Go "
                                      "back to your request, reload it and try again."))
    assert page_token is not None
    return page_token


def _refused(request: web.Request, view: StatusView, token: str, words: Words,
             refused: Refused, typed: str = "") -> web.Response:
    """A page for a refused post: a problem page for what the page itself cannot
    put right (another site, storage down), else the page again with the errors."""
    log.info("status page: refused (%s) from %s: %s", refused.reason, request.remote,
             refused.detail)
    _ = words.t.gettext
    if refused.status == 403:
        return _problem_page(words, 403, _("We could not accept this"), refused.detail or "",
                             token=token, headers=refused.headers)
    if refused.status == 503:
        return _unavailable(words, token)
    errors = [{"field": p.pointer.lstrip("/"), "detail": _problem_text(p.detail, words)}
              for p in refused.problems]
    return _page(request, view, token, words, status=refused.status, typed=typed,
                 errors=errors or [{"field": "", "detail": _problem_text(refused.detail or "",
                                                                         words)}],
                 headers=refused.headers)


def _checked(post: Post, words: Words) -> FormSubmission:
    _ = words.t.gettext
    checked = check_values(REPLY, post.values, [s.uploaded() for s in post.files])
    if isinstance(checked, list):
        raise Refused(422, "invalid", _("The reply cannot be sent as it is."), checked)
    if not checked.body and not checked.files:
        raise Refused(422, "invalid", _("The reply cannot be sent as it is."), [FieldProblem(
            "/message", _("write a message, or choose a file to send"))])
    return checked


async def _store(request: web.Request, view: StatusView, post: Post,
                 checked: FormSubmission) -> str:
    """Commit the files, then the reply as a form post naming the request; the
    inbox item's reference, once both are durable."""
    submission = FormSubmission(
        form_id=STATUS_FORM_ID, requester_email=view.requester_email,
        requester_name=view.requester_name, subject=view.subject, body=checked.body,
        files=checked.files)
    try:
        accepted = await store_post(request, post, submission, form_id=STATUS_FORM_ID, extra={
            STATUS_REPLY: {"reference": view.reference, "queue": view.queue,
                           "parent": view.last_message_id,
                           "message_id": new_message_id(request.app[CONFIG])}})
    except StorageUnavailable as exc:
        log.warning("status page %s: storage unavailable: %s", view.reference, exc)
        raise Refused(503, "unavailable", "storage unavailable",  # the page says it
                      headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
    return accepted.reference


def _back(token: str, done: str) -> web.Response:
    """Post, redirect, get: the page again, saying what was done (if anything)."""
    return web.Response(status=303, headers={
        "Location": f"{_link(token)}?done={done}" if done else _link(token),
        "Cache-Control": "no-store"})


async def _known(request: web.Request) -> tuple[str, StatusView, Words] | web.Response:
    """The link's request and the page's language; or the page to answer
    instead: storage unavailable, or a link that finds no request."""
    token = request.match_info["token"]
    try:
        view = await read_view(request.app[ENGINE], token)
        await request.app[STATUS].ready(request.app[ENGINE])
    except StorageUnavailable:
        return _unavailable(_words(request, None), None)
    if view is None:
        return await _gone(request, token)
    return token, view, _words(request, view)


async def reply(request: web.Request) -> web.Response:
    known = await _known(request)
    if isinstance(known, web.Response):
        return known
    token, view, words = known
    desk = request.app[STATUS]
    post: Post | None = None
    spent: str | None = None
    try:
        _guard(request, token, words)
        post = await read_post(request, REPLY)
        page_token = _page_token(request, token, post, words)
        if mailbox_or_none(view.requester_email) is None:
            raise Refused(409, "invalid", words.t.gettext(
                "Replies cannot be sent from this page: the request has no email address."))
        checked = _checked(post, words)
        if not desk.spend(page_token):
            raise Refused(409, "token", words.t.gettext(
                "This reply was sent already. Reload the page to write another one."))
        spent = page_token
        stored = await _store(request, view, post, checked)
    except Refused as refused:
        if spent is not None:
            desk.give_back(spent)  # not stored: the same page may send it again
        metrics.intake("form").answered(refused.status)  # a reply is a form post
        typed = (post.values.get("message") or [""])[0] if post is not None else ""
        return _refused(request, view, token, words, refused, typed)
    finally:
        if post is not None:
            post.close()
    logs.item("accepted", reference=stored, channel="form", queue=view.queue,
              outcome="303 status page reply")
    metrics.intake("form").accepted(request.content_length or 0)
    return _back(token, "replied")


async def _act(request: web.Request, act: str) -> web.Response:
    """Resolve or reopen, from the page's form."""
    known = await _known(request)
    if isinstance(known, web.Response):
        return known
    token, view, words = known
    _ = words.t.gettext
    post: Post | None = None
    try:
        _guard(request, token, words)
        post = await read_post(request, ACTION)
        _page_token(request, token, post, words)
        engine = request.app[ENGINE]
        if act == "resolved":
            done = await customer_actions.resolve(engine, token)
        else:
            windows = {q.name: q.reopen_days for q in request.app[RULES].config.queue}
            done = await customer_actions.reopen(engine, token, windows)
    except Refused as refused:
        return _refused(request, view, token, words, refused)
    except StorageUnavailable:
        return _unavailable(words, token)
    finally:
        if post is not None:
            post.close()
    if done.outcome == Done.MISSING:
        return await _gone(request, token)
    if done.outcome == Done.TOO_LATE:
        return _refused(request, view, token, words, Refused(409, "too_late", _(
            "This request was finished too long ago to be reopened. Write to us below and "
            "we open a new request that follows it.")))
    if done.outcome == Done.NOT_NOW:
        # Done already (a second click), or no longer possible: the page says where it stands.
        return _back(token, "")
    log.info("status page %s: %s by the customer", view.reference, act)
    return _back(token, act)


async def resolve(request: web.Request) -> web.Response:
    return await _act(request, "resolved")


async def reopen(request: web.Request) -> web.Response:
    return await _act(request, "reopened")


def add_routes(app: web.Application) -> None:
    app[STATUS] = StatusDesk()
    app.router.add_get("/v1/status/{token}", show)
    app.router.add_get("/v1/status/{token}/attachments/{attachment_id}", download)
    app.router.add_post("/v1/status/{token}/replies", reply)
    app.router.add_post("/v1/status/{token}/resolve", resolve)
    app.router.add_post("/v1/status/{token}/reopen", reopen)

