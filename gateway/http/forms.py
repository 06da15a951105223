"""Web forms over HTTP: the page, the post, CORS, and the spam defences.

A post is streamed through a push parser (the `multipart` package), 64 KiB at
a time: each file goes into a spool (memory up to 256 KiB, then a temporary
file) while its sha256 and size are counted, and a file past its limit, of a
type the form does not take, or one too many is refused as soon as that is
known. Nothing is written to the database until every check passed; then the
larger files go to storage in pieces (storage/uploads.py) and the submission
becomes an inbox item like any email, its commit carrying the small files.
Only after that commit does the client hear "received": a browser is sent 303
to the success page with the reference, a JSON client gets 201.

Refused posts get a clear answer (the form again with errors beside the
fields, or a problem document) and are counted per form and reason.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import secrets
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote_to_bytes, urlencode, urlsplit

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape
from multipart import MultipartError, MultipartSegment, PushMultipartParser, parse_options_header

from gateway.config import Config
from gateway.http.limits import Buckets
from gateway.http.shared import (
    CONFIG,
    ENGINE,
    RETRY_AFTER_SECONDS,
    WRITER,
    authorised,
    json_response,
    problem,
)
from parsers.api_request import FieldProblem
from parsers.forms import (
    TOKEN_FIELD,
    FormSpec,
    FormSubmission,
    UploadedFile,
    check_token,
    check_values,
    issue_token,
    submission_json,
    too_long,
)
from storage.errors import StorageUnavailable
from storage.inbox import Accepted, NewItem
from storage.uploads import store_upload

log = logging.getLogger("intake.forms")

# Files stay in memory up to this size, then spill to a temporary file.
SPOOL_IN_MEMORY = 256 * 1024
READ_BYTES = 64 * 1024
# Text parts are read up to this many bytes per allowed character (UTF-8).
BYTES_PER_CHAR = 4
UNKNOWN_FIELD_BYTES = 4096
_REFERENCE = re.compile(r"^[0-9A-Z]{4}-[0-9A-Z]{4}$")
_TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).with_name("templates")),
                         autoescape=select_autoescape(default=True), trim_blocks=True,
                         lstrip_blocks=True)
# Problems read as clauses ("this field is required"); on the page, a sentence.
_TEMPLATES.filters["sentence"] = lambda text: text[:1].upper() + text[1:]


@dataclass
class FormDesk:
    """What the form handlers share: the forms, the token key, limits, counts."""

    forms: dict[str, FormSpec]
    secret: bytes
    buckets: dict[str, Buckets] = field(default_factory=dict)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    @classmethod
    def from_config(cls, config: Config) -> FormDesk:
        secret = (config.http.form_secret.encode() if config.http.form_secret
                  else secrets.token_bytes(32))
        forms = config.forms
        buckets = {f.id: Buckets(f.rate_limit_per_minute / 60, max(1.0, f.rate_limit_per_minute))
                   for f in forms.values()}
        return cls(forms=forms, secret=secret, buckets=buckets)


FORMS = web.AppKey("forms", FormDesk)


class Refused(Exception):
    """A post that is not taken, with the answer it gets."""

    def __init__(self, status: int, reason: str, detail: str,
                 problems: list[FieldProblem] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason  # the counter's name: invalid, honeypot, token, too_large, ...
        self.detail = detail
        self.problems = problems or []
        self.headers = headers or {}


_TITLES = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 413: "Content Too Large",
           415: "Unsupported Media Type", 422: "Unprocessable Content",
           429: "Too Many Requests", 503: "Service Unavailable"}


# --- origins and CORS -------------------------------------------------------------


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _own_origins(request: web.Request) -> set[str]:
    return {_origin_of(request.app[CONFIG].public_url),
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
    raise Refused(403, "origin", f"posts from {origin} are not allowed for this form")


# --- reading the post -------------------------------------------------------------


@dataclass
class _Spooled:
    field: str
    filename: str
    content_type: str
    spool: IO[bytes]
    size: int = 0
    sha256: str = ""

    def uploaded(self) -> UploadedFile:
        return UploadedFile(field=self.field, filename=self.filename,
                            content_type=self.content_type, size=self.size, sha256=self.sha256)


@dataclass
class _Post:
    values: dict[str, list[str]] = field(default_factory=dict)
    files: list[_Spooled] = field(default_factory=list)

    def close(self) -> None:
        for spooled in self.files:
            spooled.spool.close()


def _too_large(limit: int) -> Refused:
    return Refused(413, "too_large", f"the form data must be at most {limit} bytes in all")


def _text_limit(spec: FormSpec, name: str) -> int:
    found = spec.field_named(name)
    if found is not None:
        return found.max_length * BYTES_PER_CHAR + 16
    return UNKNOWN_FIELD_BYTES


def _kept(spec: FormSpec, name: str) -> bool:
    """A field of the form, or one of the two hidden ones the checks read."""
    return spec.field_named(name) is not None or name in (TOKEN_FIELD, spec.honeypot)


def _decode(spec: FormSpec, name: str, raw: bytes, post: _Post) -> None:
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid(f"/{name}", "this field is not valid UTF-8 text") from None
    post.values.setdefault(name, []).append(value)


class _Segment:
    """Where one part's bytes go: a bounded buffer for text, a spool for a file."""

    def __init__(self, spec: FormSpec, post: _Post, part: MultipartSegment) -> None:
        self.spec, self.post = spec, post
        self.name = part.name or ""
        self.filename = part.filename
        self.pointer = f"/{self.name}"
        self.text = bytearray()
        self.file: _Spooled | None = None
        self.digest = hashlib.sha256()
        if self.filename is None:
            self.limit = _text_limit(spec, self.name)
            return
        found = spec.field_named(self.name)
        if found is None or found.kind != "file":
            raise _invalid(self.pointer, "this is not a file field of this form")
        kind = (part.content_type or "application/octet-stream").lower()
        if self.filename and not spec.allows_type(kind):
            # Refused before a byte of it is read.
            raise _invalid(self.pointer, f"{self.filename}: files of type {kind} are not "
                           f"accepted (accepted: {', '.join(spec.file_types)})")
        if self.filename and len(post.files) >= spec.max_files:
            raise _invalid(self.pointer, f"at most {spec.max_files} files may be sent")
        self.file = _Spooled(self.name, self.filename, kind,
                             tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY))
        post.files.append(self.file)

    def add(self, chunk: bytes) -> None:
        if self.file is None:
            self.text += chunk
            if len(self.text) > self.limit:
                raise _over_length(self.spec, self.name)
            return
        self.file.size += len(chunk)
        if self.file.size > self.spec.max_file_bytes:
            name = self.filename or "the file"
            raise Refused(413, "too_large", f"{name} is larger than "
                          f"{self.spec.max_file_bytes} bytes", [FieldProblem(
                              self.pointer, f"{name} is larger than the limit of "
                                            f"{_size(self.spec.max_file_bytes)}")])
        self.digest.update(chunk)
        self.file.spool.write(chunk)

    def end(self) -> None:
        if self.file is not None:
            if not self.filename and not self.file.size:
                # A file input left empty: browsers send a nameless, empty part.
                self.post.files.remove(self.file)
                self.file.spool.close()
            elif not self.filename:
                raise _invalid(self.pointer, "a file was sent without a file name")
            else:
                self.file.sha256 = self.digest.hexdigest()
        elif _kept(self.spec, self.name):
            _decode(self.spec, self.name, bytes(self.text), self.post)
        # Any other field is read (within its limit) and dropped.


def _invalid(pointer: str, detail: str) -> Refused:
    return Refused(422, "invalid", "the form has invalid fields", [FieldProblem(pointer, detail)])


def _over_length(spec: FormSpec, name: str) -> Refused:
    found = spec.field_named(name)
    return _invalid(f"/{name}", too_long(found.max_length) if found
                    else "this field is too long")


async def _read_multipart(request: web.Request, spec: FormSpec, post: _Post) -> None:
    """Stream the body through the multipart parser (the `multipart` package: a
    push parser that holds no more than the chunk it is given)."""
    boundary = parse_options_header(request.headers.get("Content-Type", ""))[1].get("boundary")
    if not boundary:
        raise Refused(400, "broken", "multipart/form-data needs a boundary parameter")
    segment: _Segment | None = None
    read = 0
    try:
        parser = PushMultipartParser(
            boundary, content_length=request.content_length or -1,
            max_segment_count=len(spec.fields) + spec.max_files + 8)
        with parser:
            async for chunk in request.content.iter_chunked(READ_BYTES):
                read += len(chunk)
                if read > spec.max_body_bytes:
                    raise _too_large(spec.max_body_bytes)
                for event in parser.parse(chunk):
                    if isinstance(event, MultipartSegment):
                        if event.disposition != "form-data" or not event.name:
                            raise Refused(400, "broken", "each part of the body needs a "
                                          "Content-Disposition: form-data with a name")
                        segment = _Segment(spec, post, event)
                    elif event is None:
                        assert segment is not None
                        segment.end()
                        segment = None
                    elif segment is not None:
                        segment.add(event)
    except MultipartError as exc:
        raise Refused(400, "broken", f"the multipart body cannot be read: {exc}"[:300]) from None


def _text_budget(spec: FormSpec) -> int:
    """The most a post without files can need: every text field at its limit."""
    fields = [f.name for f in spec.fields if f.kind != "file"]
    return sum(_text_limit(spec, n) * 3 for n in fields) + 2 * UNKNOWN_FIELD_BYTES


async def _read_urlencoded(request: web.Request, spec: FormSpec, post: _Post) -> None:
    # Held whole to split it, so bounded by what the fields can hold
    # (percent-encoding triples a byte at most), not by the upload limit.
    limit = min(spec.max_body_bytes, _text_budget(spec))
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    raw = bytearray()
    while chunk := await request.content.read(READ_BYTES):
        raw += chunk
        if len(raw) > limit:
            raise _too_large(limit)
    for pair in bytes(raw).split(b"&"):
        if not pair:
            continue
        key, _, value = pair.partition(b"=")
        try:
            name = unquote_to_bytes(key.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            raise Refused(400, "broken", "a field name is not valid UTF-8") from None
        if not _kept(spec, name):
            continue
        text = unquote_to_bytes(value.replace(b"+", b" "))
        if len(text) > _text_limit(spec, name):
            raise _over_length(spec, name)
        _decode(spec, name, text, post)


async def _read_post(request: web.Request, spec: FormSpec) -> _Post:
    if request.content_length is not None and request.content_length > spec.max_body_bytes:
        raise _too_large(spec.max_body_bytes)
    post = _Post()
    try:
        if request.content_type == "multipart/form-data":
            await _read_multipart(request, spec, post)
        elif request.content_type == "application/x-www-form-urlencoded":
            await _read_urlencoded(request, spec, post)
        else:
            raise Refused(415, "unsupported", "send the form as multipart/form-data or "
                          "application/x-www-form-urlencoded")
    except BaseException:
        post.close()
        raise
    return post


# --- the handlers -----------------------------------------------------------------


def _spec(request: web.Request) -> FormSpec | None:
    return request.app[FORMS].forms.get(request.match_info["form_id"])


def _wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _size(count: int) -> str:
    return f"{count / 1024 / 1024:.0f} MB" if count >= 1024 * 1024 else f"{count} bytes"


def _accept(spec: FormSpec) -> str:
    return ",".join(spec.file_types)


def _page_headers(request: web.Request, spec: FormSpec) -> dict[str, str]:
    # The page may be framed by the sites the form allows, and nowhere else; it
    # posts only to us (and follows our redirects to the configured pages).
    targets = sorted({_origin_of(u) for u in (spec.success_url, spec.failure_url)
                      if u and u.startswith("http")})
    policy = ["default-src 'none'", "style-src 'unsafe-inline'", "base-uri 'none'",
              " ".join(["form-action 'self'", *targets]),
              " ".join(["frame-ancestors 'self'", *spec.allowed_origins])]
    return {"Content-Security-Policy": "; ".join(policy), "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}


def _html(request: web.Request, spec: FormSpec | None, template: str, status: int = 200,
          headers: dict[str, str] | None = None, **values: Any) -> web.Response:
    page = _TEMPLATES.get_template(template).render(form=spec, **values)
    extra = _page_headers(request, spec) if spec is not None else {
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
        "X-Content-Type-Options": "nosniff"}
    return web.Response(text=page, status=status, content_type="text/html", charset="utf-8",
                        headers=extra | (headers or {}))


def _render_form(request: web.Request, spec: FormSpec, *, status: int = 200,
                 values: dict[str, list[str]] | None = None,
                 errors: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None) -> web.Response:
    desk = request.app[FORMS]
    errors = errors or []
    shown = {k: v[0] for k, v in (values or {}).items()
             if v and k not in (TOKEN_FIELD, spec.honeypot)}
    return _html(request, spec, "form.html", status, headers,
                 action=f"/v1/forms/{spec.id}", token=issue_token(desk.secret, spec.id,
                                                                   time.time()),
                 token_field=TOKEN_FIELD, values=shown, errors=errors,
                 field_errors={e["field"]: e["detail"] for e in errors if e.get("field")},
                 accept=_accept(spec))


async def form_page(request: web.Request) -> web.Response:
    spec = _spec(request)
    if spec is None:
        return _html(request, None, "form_problem.html", 404, title="Form not found",
                     detail="There is no form at this address.", form_url=None)
    return _render_form(request, spec)


async def thanks_page(request: web.Request) -> web.Response:
    spec = _spec(request)
    if spec is None:
        return _html(request, None, "form_problem.html", 404, title="Form not found",
                     detail="There is no form at this address.", form_url=None)
    reference = request.query.get("reference", "")
    return _html(request, spec, "form_thanks.html",
                 reference=reference if _REFERENCE.match(reference) else None,
                 form_url=f"/forms/{spec.id}")


def describe(spec: FormSpec, secret: bytes) -> dict[str, Any]:
    return {
        "id": spec.id, "title": spec.title, "intro": spec.intro,
        "fields": [{"name": f.name, "label": f.label, "kind": f.kind, "required": f.required,
                    "max_length": f.max_length, "hint": f.hint, "options": list(f.options)}
                   for f in spec.fields],
        "limits": {"max_files": spec.max_files, "max_file_bytes": spec.max_file_bytes,
                   "file_types": list(spec.file_types), "max_body_bytes": spec.max_body_bytes,
                   "min_fill_seconds": spec.min_fill_seconds},
        "token_field": TOKEN_FIELD, "token": issue_token(secret, spec.id, time.time()),
        "honeypot": spec.honeypot,
    }


async def form_description(request: web.Request) -> web.Response:
    spec = _spec(request)
    if spec is None:
        return problem(404, "Not Found", "no form with this id")
    # Fetched afresh for every fill: never cached, since it carries a new token.
    return json_response(describe(spec, request.app[FORMS].secret),
                         headers={"Cache-Control": "no-store"} | _cors(request, spec))


async def preflight(request: web.Request) -> web.Response:
    spec = _spec(request)
    if spec is None:
        return problem(404, "Not Found", "no form with this id")
    origin = _cross_origin(request, spec)
    method = request.headers.get("Access-Control-Request-Method", "")
    if origin is None or method not in ("POST", "GET"):
        request.app[FORMS].counts[(spec.id, "origin")] += 1
        return problem(403, "Forbidden", "this origin may not use this form")
    return web.Response(status=204, headers={
        "Access-Control-Allow-Origin": origin, "Vary": "Origin",
        "Access-Control-Allow-Methods": "POST, GET",
        "Access-Control-Allow-Headers": "Content-Type, Accept",
        "Access-Control-Max-Age": "600",
    })


def _with_reference(url: str, **params: str) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


def _refusal(request: web.Request, spec: FormSpec, refused: Refused,
             values: dict[str, list[str]]) -> web.Response:
    desk = request.app[FORMS]
    desk.counts[(spec.id, refused.reason)] += 1
    log.info("form %s: refused (%s) from %s: %s", spec.id, refused.reason, request.remote,
             refused.detail)
    headers = refused.headers | _cors(request, spec)
    if _wants_json(request):
        extra: dict[str, Any] = {"reason": refused.reason}
        if refused.problems:
            extra["errors"] = [{"pointer": p.pointer, "detail": p.detail}
                               for p in refused.problems]
        return problem(refused.status, _TITLES.get(refused.status, "Error"), refused.detail,
                       headers=headers, **extra)
    if spec.failure_url:
        return web.Response(status=303, headers=headers | {
            "Location": _with_reference(spec.failure_url, error=refused.reason)})
    labels = {f.name: f.label for f in spec.fields}
    errors = [{"field": p.pointer.lstrip("/"), "detail": p.detail,
               "label": labels.get(p.pointer.lstrip("/"), "")} for p in refused.problems]
    if not errors:
        errors = [{"field": "", "detail": refused.detail}]
    return _render_form(request, spec, status=refused.status, values=values, errors=errors,
                        headers=headers)


def _checked(request: web.Request, spec: FormSpec, post: _Post) -> FormSubmission:
    """The post's values, once the honeypot, the token and the fields pass."""
    if any(v.strip() for v in post.values.get(spec.honeypot, [])):
        raise Refused(422, "honeypot", "the form was refused: a field meant to stay "
                      "empty was filled in (this catches automated posts)")
    tokens = post.values.get(TOKEN_FIELD, [])
    why = check_token(request.app[FORMS].secret, spec, tokens[0] if tokens else None,
                      time.time())
    if why is not None:
        raise Refused(422, "token", why)
    checked = check_values(spec, post.values, [s.uploaded() for s in post.files])
    if isinstance(checked, list):
        raise Refused(422, "invalid", "the form has invalid fields", checked)
    return checked


async def _store(request: web.Request, spec: FormSpec, post: _Post,
                 checked: FormSubmission) -> Accepted:
    """Commit the files, then the submission; returns once both are durable."""
    small: list[tuple[str, bytes]] = []
    try:
        for spooled in post.files:
            if spooled.size <= SPOOL_IN_MEMORY:
                # Still in memory: goes with the item, in its (shared) commit.
                spooled.spool.seek(0)
                small.append((spooled.sha256, spooled.spool.read()))
            else:
                await store_upload(request.app[ENGINE], spooled.spool,
                                   sha256=spooled.sha256, size=spooled.size)
        meta = {"content_type": request.content_type, "remote": request.remote,
                "origin": request.headers.get("Origin"),
                "user_agent": request.headers.get("User-Agent"), "form_id": spec.id}
        return await request.app[WRITER].submit(
            NewItem("form", submission_json(checked), meta, tuple(small)))
    except StorageUnavailable as exc:
        log.warning("form %s: storage unavailable: %s", spec.id, exc)
        raise Refused(503, "unavailable", "we could not take your request just now; "
                      "please send it again in a minute",
                      headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None


async def submit_form(request: web.Request) -> web.Response:
    spec = _spec(request)
    if spec is None:
        return problem(404, "Not Found", "no form with this id")
    desk = request.app[FORMS]
    post: _Post | None = None
    try:
        _check_origin(request, spec)
        wait = desk.buckets[spec.id].take(request.remote or "")
        if wait > 0:
            raise Refused(429, "rate_limited", "too many posts from your address; "
                          "wait a minute and send again",
                          headers={"Retry-After": str(max(1, math.ceil(wait)))})
        post = await _read_post(request, spec)
        accepted = await _store(request, spec, post, _checked(request, spec, post))
    except Refused as refused:
        return _refusal(request, spec, refused, post.values if post else {})
    finally:
        if post is not None:
            post.close()
    desk.counts[(spec.id, "accepted")] += 1
    cors = _cors(request, spec)
    if _wants_json(request):
        return json_response({"reference": accepted.reference, "status": "received"},
                             status=201, headers=cors)
    target = spec.success_url or f"/forms/{spec.id}/thanks"
    return web.Response(status=303, headers=cors | {
        "Location": _with_reference(target, reference=accepted.reference)})


async def form_counts(request: web.Request) -> web.Response:
    """Posts accepted and refused per form and reason, since this process started."""
    token = await authorised(request, ("admin",))
    if isinstance(token, web.Response):
        return token
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
