"""Web forms over HTTP: the page, the post, CORS, and the spam defences.

A post is read as it streams (form_post.py) and nothing is written to the
database until every check passed; then the larger files go to storage in
pieces (storage/uploads.py) and the submission becomes an inbox item like any
email, its commit carrying the small files. Only after that commit does the
client hear "received": a browser is sent 303 to the success page with the
reference, a JSON client gets 201.

Refused posts get a clear answer (the form again with errors beside the
fields, or a problem document) and are counted per form and reason.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from domain.lifecycle import Status
from gateway import i18n, logs, metrics
from gateway.config import Config
from gateway.http import form_pages
from gateway.http.auth import ADMINS, require_role
from gateway.http.form_pages import origin_of
from gateway.http.form_post import SPOOL_IN_MEMORY, Post, Refused, read_post
from gateway.http.form_tokens import SpentTokens
from gateway.http.limits import Buckets, client_key
from gateway.http.problems import RETRY_AFTER_SECONDS, Problem
from gateway.http.shared import CONFIG, ENGINE, WRITER, json_response
from gateway.http.validation import shown
from parsers.forms import (
    TOKEN_FIELD,
    FormSpec,
    FormSubmission,
    check_token,
    check_values,
    issue_token,
    issued_at,
    submission_json,
)
from storage.errors import StorageUnavailable
from storage.inbox import Accepted, NewItem
from storage.uploads import store_upload

log = logging.getLogger("intake.forms")


@dataclass
class FormDesk:
    """What the form handlers share: the forms, the token key, limits, counts."""

    forms: dict[str, FormSpec]
    secret: bytes
    buckets: dict[str, Buckets] = field(default_factory=dict)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    spent: SpentTokens = field(default_factory=SpentTokens)

    @classmethod
    def from_config(cls, config: Config) -> FormDesk:
        secret = (config.http.form_secret.encode() if config.http.form_secret
                  else secrets.token_bytes(32))
        forms = config.forms
        buckets = {f.id: Buckets(f.rate_limit_per_minute / 60, max(1.0, f.rate_limit_per_minute))
                   for f in forms.values()}
        return cls(forms=forms, secret=secret, buckets=buckets)

    def token(self, spec: FormSpec, request: web.Request) -> str:
        """A fresh fill-time token for the form, good only from this client's address."""
        return issue_token(self.secret, spec.id, time.time(), client_key(request.remote),
                           nonce=secrets.token_urlsafe(9))


FORMS = web.AppKey("forms", FormDesk)


# --- origins and CORS -------------------------------------------------------------


def _own_origins(request: web.Request) -> set[str]:
    return {origin_of(request.app[CONFIG].public_url),
            f"{request.scheme}://{request.host}".lower()}


def _cross_origin(request: web.Request, spec: FormSpec) -> str | None:
    """The Origin to echo in CORS headers when it is one the form allows."""
    origin = request.headers.get("Origin", "").lower()
    return origin if origin and origin in spec.allowed_origins else None


def _cors(request: web.Request, spec: FormSpec) -> dict[str, str]:
    origin = _cross_origin(request, spec)
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin else {}


def _check_origin(request: web.Request, spec: FormSpec) -> None:
    origin = request.headers.get("Origin")
    # No Origin: not a browser's cross-site post (curl, a server); the other
    # defences still apply.
    if origin is None:
        return
    origin = origin.lower()
    if origin in spec.allowed_origins or origin in _own_origins(request):
        return
    raise Refused(403, "origin", f"posts from {shown(origin)} are not allowed for this form")


# --- pages and the description ------------------------------------------------------


def _spec(request: web.Request) -> FormSpec | None:
    return request.app[FORMS].forms.get(request.match_info["form_id"])


def _known_spec(request: web.Request) -> FormSpec:
    spec = _spec(request)
    if spec is None:
        raise Problem(404, "no form with this id")
    return spec


def _wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


async def form_page(request: web.Request) -> web.Response:
    spec = _spec(request)
    if spec is None:
        return form_pages.not_found_page(form_pages.page_language(request))
    return form_pages.form_page(spec, request.app[FORMS].token(spec, request),
                                language=form_pages.page_language(request, spec.queue))


async def thanks_page(request: web.Request) -> web.Response:
    spec = _spec(request)
    if spec is None:
        return form_pages.not_found_page(form_pages.page_language(request))
    return form_pages.thanks_page(spec, request.query.get("reference", ""),
                                  form_pages.page_language(request, spec.queue))


def describe(spec: FormSpec, token: str) -> dict[str, Any]:
    return {
        "id": spec.id, "title": spec.title, "intro": spec.intro,
        "fields": [{"name": f.name, "label": f.label, "kind": f.kind, "required": f.required,
                    "max_length": f.max_length, "hint": f.hint, "options": list(f.options)}
                   for f in spec.fields],
        "limits": {"max_files": spec.max_files, "max_file_bytes": spec.max_file_bytes,
                   "file_types": list(spec.file_types), "max_body_bytes": spec.max_body_bytes,
                   "min_fill_seconds": spec.min_fill_seconds},
        "token_field": TOKEN_FIELD, "token": token, "honeypot": spec.honeypot,
    }


async def form_description(request: web.Request) -> web.Response:
    spec = _known_spec(request)
    # Fetched afresh for every fill: never cached, since it carries a new token.
    return json_response(describe(spec, request.app[FORMS].token(spec, request)),
                         headers={"Cache-Control": "no-store"} | _cors(request, spec))


async def preflight(request: web.Request) -> web.Response:
    spec = _known_spec(request)
    origin = _cross_origin(request, spec)
    method = request.headers.get("Access-Control-Request-Method", "")
    if origin is None or method not in ("POST", "GET"):
        request.app[FORMS].counts[(spec.id, "origin")] += 1
        raise Problem(403, "this origin may not use this form")
    return web.Response(status=204, headers={
        "Access-Control-Allow-Origin": origin, "Vary": "Origin",
        "Access-Control-Allow-Methods": "POST, GET",
        "Access-Control-Allow-Headers": "Content-Type, Accept",
        "Access-Control-Max-Age": "600",
    })


# --- the post ---------------------------------------------------------------------


def _with_reference(url: str, **params: str) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


def _check_honeypot(spec: FormSpec, post: Post) -> None:
    if any(v.strip() for v in post.values.get(spec.honeypot, [])):
        raise Refused(422, "honeypot", "the form was refused: a field meant to stay "
                      "empty was filled in (this catches automated posts)")


def _spend_token(request: web.Request, spec: FormSpec, post: Post) -> str | None:
    """Check the post's fill-time token (signed for this form and this client's
    address, old enough, young enough) and spend it: the token, to give back if
    the post is refused later; None when the form takes no token."""
    tokens = post.values.get(TOKEN_FIELD, [])
    token = tokens[0] if tokens else None
    desk, now = request.app[FORMS], time.time()
    why = check_token(desk.secret, spec, token, now, client_key(request.remote))
    if why is not None:
        raise Refused(422, "token", why)
    if spec.min_fill_seconds <= 0 or token is None:
        return None
    issued = issued_at(token) or 0
    if not desk.spent.spend(token, issued=issued,
                            expires=issued + spec.max_token_age_seconds, now=now):
        raise Refused(422, "token", "this page was sent already; reload the page to "
                      "send the form again")
    return token


def _checked(spec: FormSpec, post: Post) -> FormSubmission:
    """The post's values, once its fields pass."""
    checked = check_values(spec, post.values, [s.uploaded() for s in post.files])
    if isinstance(checked, list):
        raise Refused(422, "invalid", "the form has invalid fields", checked)
    return checked


async def _store(request: web.Request, spec: FormSpec, post: Post,
                 checked: FormSubmission) -> Accepted:
    """Commit the files, then the submission; returns once both are durable."""
    try:
        return await store_post(request, post, checked, form_id=spec.id)
    except StorageUnavailable as exc:
        # Answered here rather than by the middleware: a browser gets the form
        # again with "send it again", not a bare 503.
        log.warning("form %s: storage unavailable: %s", spec.id, exc)
        raise Refused(503, "unavailable", "we could not take your request just now; "
                      "please send it again in a minute",
                      headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None


async def store_post(request: web.Request, post: Post, submission: FormSubmission, *,
                     form_id: str, extra: dict[str, Any] | None = None) -> Accepted:
    """A checked post as a `form` inbox item: large files committed first, small
    ones with the item, in its (shared) commit; returns once all are durable.
    `extra`: more of the item's meta (a status page reply names its request).
    StorageUnavailable is the caller's to answer."""
    small: list[tuple[str, bytes]] = []
    for spooled in post.files:
        if spooled.size <= SPOOL_IN_MEMORY:
            spooled.spool.seek(0)
            small.append((spooled.sha256, spooled.spool.read()))
        else:
            await store_upload(request.app[ENGINE], spooled.spool,
                               sha256=spooled.sha256, size=spooled.size)
    meta = {"content_type": request.content_type, "remote": request.remote,
            "origin": request.headers.get("Origin"),
            "user_agent": request.headers.get("User-Agent"), "form_id": form_id,
            # The pipeline writes the acknowledgement in it (gateway/i18n).
            "accept_language": _accept_language(request), **(extra or {})}
    return await request.app[WRITER].submit(
        NewItem("form", submission_json(submission), meta, tuple(small)))


def _accept_language(request: web.Request) -> str | None:
    """The post's Accept-Language, as far as choosing a language reads it."""
    value = request.headers.get("Accept-Language")
    return value[:i18n.MAX_ACCEPT_LANGUAGE] if value else None


def _check_rate(request: web.Request, spec: FormSpec) -> None:
    wait = request.app[FORMS].buckets[spec.id].take(client_key(request.remote))
    if wait > 0:
        raise Refused(429, "rate_limited", "too many posts from your address; "
                      "wait a minute and send again",
                      headers={"Retry-After": str(max(1, math.ceil(wait)))})


def _refused(request: web.Request, spec: FormSpec, refused: Refused,
             values: dict[str, list[str]]) -> web.Response:
    """Count and log a refusal. A JSON client gets its problem document (raised on
    to the middleware); a browser the failure page, or the form with the errors."""
    desk = request.app[FORMS]
    desk.counts[(spec.id, refused.reason)] += 1
    log.info("form %s: refused (%s) from %s: %s", spec.id, refused.reason, request.remote,
             refused.detail)
    logs.item("refused", reference=None, channel="form", queue=spec.queue,
              outcome=f"{refused.status} {refused.reason}")
    metrics.intake("form").answered(refused.status)
    refused.headers.update(_cors(request, spec))
    if _wants_json(request):
        raise refused
    if spec.failure_url:
        return web.Response(status=303, headers=refused.headers | {
            "Location": _with_reference(spec.failure_url, error=refused.reason)})
    return form_pages.refused_page(spec, refused, desk.token(spec, request), values,
                                   refused.headers,
                                   form_pages.page_language(request, spec.queue))


async def submit_form(request: web.Request) -> web.Response:
    spec = _known_spec(request)
    post: Post | None = None
    spent: str | None = None
    try:
        _check_origin(request, spec)
        _check_rate(request, spec)
        post = await read_post(request, spec)
        _check_honeypot(spec, post)
        spent = _spend_token(request, spec, post)
        accepted = await _store(request, spec, post, _checked(spec, post))
    except Refused as refused:
        if spent is not None:
            # Refused for something else (a field, storage down): the same page
            # may be sent again once that is put right.
            request.app[FORMS].spent.give_back(spent)
        return _refused(request, spec, refused, post.values if post else {})
    finally:
        if post is not None:
            post.close()
    request.app[FORMS].counts[(spec.id, "accepted")] += 1
    logs.item("accepted", reference=accepted.reference, channel="form", queue=spec.queue,
              outcome="replayed" if accepted.replayed else "201")
    metrics.intake("form").accepted(request.content_length or 0, replayed=accepted.replayed)
    cors = _cors(request, spec)
    if _wants_json(request):
        return json_response({"reference": accepted.reference, "status": Status.RECEIVED},
                             status=201, headers=cors)
    target = spec.success_url or f"/forms/{spec.id}/thanks"
    return web.Response(status=303, headers=cors | {
        "Location": _with_reference(target, reference=accepted.reference)})


async def form_counts(request: web.Request) -> web.Response:
    """Posts accepted and refused per form and reason, since this process started."""
    await require_role(request, ADMINS)
    desk = request.app[FORMS]
    items = []
    for spec in desk.forms.values():
        refused = {reason: n for (form_id, reason), n in sorted(desk.counts.items())
                   if form_id == spec.id and reason != "accepted"}
        items.append({"id": spec.id, "title": spec.title, "queue": spec.queue,
                      "accepted": desk.counts[(spec.id, "accepted")], "refused": refused})
    return json_response({"items": items})


def add_routes(app: web.Application) -> None:
    app[FORMS] = FormDesk.from_config(app[CONFIG])
    app.router.add_get("/forms/{form_id}", form_page)
    app.router.add_get("/forms/{form_id}/thanks", thanks_page)
    app.router.add_get("/v1/forms/{form_id}", form_description)
    app.router.add_post("/v1/forms/{form_id}", submit_form)
    app.router.add_route("OPTIONS", "/v1/forms/{form_id}", preflight)
    app.router.add_get("/v1/admin/forms", form_counts)
