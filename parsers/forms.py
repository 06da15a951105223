"""Web forms: their configuration, and what a post to one says.

A form is configured as data (`[[form]]` tables); a post is checked against
it here, with no I/O: the HTTP edge streams the body, hands over the decoded
field values and what it learned of each file (name, type, size, sha256), and
gets back a typed submission or the problems, each naming its field.

The fill-time token is an HMAC over the form id and the time it was issued;
the clock and the secret come from the caller.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from domain.errors import ConfigError
from parsers.addresses import NOT_AN_ADDRESS, mailbox_or_none
from parsers.api_request import FieldProblem

KINDS = ("text", "email", "textarea", "select", "checkbox", "file")
ROLES = ("requester_email", "requester_name", "subject", "body")
# A field with one of these names takes the role without saying so.
_INFERRED_ROLES = {"email": "requester_email", "name": "requester_name",
                   "subject": "subject", "message": "body", "body": "body"}
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
TOKEN_FIELD = "_form_token"
# Long enough to write a long message; short enough that a harvested token soon
# dies and the per-process record of spent tokens stays small.
DEFAULT_TOKEN_AGE_SECONDS = 7200.0
DEFAULT_TEXT_LIMIT = 200
DEFAULT_TEXTAREA_LIMIT = 20_000
MAX_CUSTOM_VALUE = 2_000


@dataclass(frozen=True, slots=True)
class FormField:
    name: str
    label: str
    kind: str = "text"
    role: str | None = None
    required: bool = False
    max_length: int = DEFAULT_TEXT_LIMIT
    hint: str = ""
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FormSpec:
    id: str
    title: str
    fields: tuple[FormField, ...]
    queue: str | None = None
    intro: str = ""
    success_url: str | None = None
    failure_url: str | None = None
    allowed_origins: tuple[str, ...] = ()
    min_fill_seconds: float = 3.0
    # A token older than this is refused: a page left open for hours is reloaded.
    max_token_age_seconds: float = DEFAULT_TOKEN_AGE_SECONDS
    max_files: int = 3
    max_file_bytes: int = 10 * 1024 * 1024
    file_types: tuple[str, ...] = ("image/*", "application/pdf", "text/plain")
    max_body_bytes: int = 32 * 1024 * 1024
    rate_limit_per_minute: float = 10.0
    honeypot: str = "website"

    def field_named(self, name: str) -> FormField | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def file_fields(self) -> tuple[FormField, ...]:
        return tuple(f for f in self.fields if f.kind == "file")

    def with_role(self, role: str) -> FormField | None:
        return next((f for f in self.fields if f.role == role), None)

    def allows_type(self, content_type: str) -> bool:
        kind = content_type.split(";", 1)[0].strip().lower()
        for allowed in self.file_types:
            allowed = allowed.lower()
            if allowed == kind or allowed.endswith("/*") and kind.startswith(allowed[:-1]):
                return True
        return False


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """A file of a post, already streamed to storage by the HTTP edge."""

    field: str
    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class FormSubmission:
    """A post that passed its form's checks: what the pipeline builds a request from."""

    form_id: str
    # One checked addr-spec (parsers/addresses.py) as the edge stored it; the
    # pipeline checks it again, since a post stored before the check may hold anything.
    requester_email: str | None
    requester_name: str | None
    subject: str
    body: str
    custom_fields: dict[str, str] = field(default_factory=dict)
    files: tuple[UploadedFile, ...] = ()


# --- configuration --------------------------------------------------------------
# Every problem of every `[[form]]` table is reported, each as `form[N].KEY: what`:
# the readers append to `problems` and carry on with a default.


def _text(table: dict[str, Any], key: str, where: str, problems: list[str],
          default: str | None = None, *, required: bool = False) -> str | None:
    value = table.get(key, default)
    if value is None:
        if required:
            problems.append(f"{where}.{key}: is required")
        return None
    if not isinstance(value, str):
        problems.append(f"{where}.{key}: must be a string")
        return default
    return value


def _number(table: dict[str, Any], key: str, where: str, problems: list[str], default: float,
            *, minimum: float = 0, integer: bool = False) -> Any:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            integer and not isinstance(value, int)):
        problems.append(f"{where}.{key}: must be {'an integer' if integer else 'a number'}")
        return default
    if value < minimum:
        problems.append(f"{where}.{key}: must be at least {minimum}")
        return default
    return value


def _strings(table: dict[str, Any], key: str, where: str, problems: list[str],
             default: tuple[str, ...] = ()) -> tuple[str, ...]:
    value = table.get(key, list(default))
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"{where}.{key}: must be a list of strings")
        return default
    return tuple(value)


def _unknown(table: dict[str, Any], known: set[str], where: str, problems: list[str]) -> None:
    problems += [f"{where}.{key}: unknown key" for key in sorted(set(table) - known)]


_FIELD_KEYS = {"name", "label", "kind", "role", "required", "max_length", "hint", "options"}
_FORM_KEYS = {"id", "title", "intro", "queue", "success_url", "failure_url", "allowed_origins",
              "min_fill_seconds", "max_token_age_seconds", "max_files", "max_file_bytes",
              "file_types", "max_body_bytes", "rate_limit_per_minute", "honeypot", "field"}


def _read_field(table: Any, where: str, problems: list[str]) -> FormField | None:
    if not isinstance(table, dict):
        problems.append(f"{where}: must be a table")
        return None
    before = len(problems)
    _unknown(table, _FIELD_KEYS, where, problems)
    given_name = _text(table, "name", where, problems, required=True)
    name = given_name or ""
    if given_name is not None and (not _FIELD_NAME.match(name) or name == TOKEN_FIELD):
        problems.append(f"{where}.name: {name!r} must be a letter then letters, digits, - or _")
    kind = _text(table, "kind", where, problems, "text") or "text"
    if kind not in KINDS:
        problems.append(f"{where}.kind: must be one of {', '.join(KINDS)}")
    role = _text(table, "role", where, problems)
    if role is None and kind != "file":
        role = _INFERRED_ROLES.get(name)
        if role == "requester_email" and kind not in ("email", "text"):
            role = None
    if role is not None and role not in ROLES:
        problems.append(f"{where}.role: must be one of {', '.join(ROLES)}")
    elif role is not None and kind in ("file", "checkbox"):
        problems.append(f"{where}.role: a {kind} field cannot carry a role")
    default_limit = DEFAULT_TEXTAREA_LIMIT if kind == "textarea" else DEFAULT_TEXT_LIMIT
    required = table.get("required", False)
    if not isinstance(required, bool):
        problems.append(f"{where}.required: must be true or false")
    options = _strings(table, "options", where, problems)
    if kind == "select" and not table.get("options"):
        problems.append(f"{where}.options: a select field needs options")
    max_length = _number(table, "max_length", where, problems, default_limit, minimum=1,
                         integer=True)
    label = _text(table, "label", where, problems, name) or name
    hint = _text(table, "hint", where, problems, "") or ""
    if len(problems) > before:
        return None
    return FormField(name=name, label=label, kind=kind, role=role, required=required,
                     max_length=max_length, hint=hint, options=options)


def read_form(table: Any, where: str, queues: set[str] | None,
              problems: list[str]) -> FormSpec | None:
    """One `[[form]]` table as a FormSpec, or None with its problems added to `problems`."""
    if not isinstance(table, dict):
        problems.append(f"{where}: must be a table")
        return None
    before = len(problems)
    _unknown(table, _FORM_KEYS, where, problems)
    given_id = _text(table, "id", where, problems, required=True)
    form_id = given_id or ""
    if given_id is not None and not _ID.match(form_id):
        problems.append(f"{where}.id: {form_id!r} must be 1 to 40 of a-z, 0-9, - and _")
    queue = _text(table, "queue", where, problems)
    if queue is not None and queues is not None and queue not in queues:
        problems.append(f"{where}.queue: {queue!r} is not a configured queue")
    raw_fields = table.get("field", [])
    if not isinstance(raw_fields, list) or not raw_fields:
        problems.append(f"{where}.field: a form needs at least one [[form.field]]")
        raw_fields = []
    read = [_read_field(f, f"{where}.field[{i}]", problems) for i, f in enumerate(raw_fields)]
    fields = tuple(f for f in read if f is not None)
    names = [f.name for f in fields]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{where}.field: {name!r} is given twice")
    roles = [f.role for f in fields if f.role]
    for role in sorted({r for r in roles if roles.count(r) > 1}):
        problems.append(f"{where}.field: more than one field has role {role!r}")
    honeypot = _text(table, "honeypot", where, problems, "website") or "website"
    if honeypot in names or not _FIELD_NAME.match(honeypot):
        problems.append(f"{where}.honeypot: {honeypot!r} must be a free field name")
    origins = _strings(table, "allowed_origins", where, problems)
    for origin in origins:
        if not re.match(r"^https?://[^/\s]+$", origin):
            problems.append(f"{where}.allowed_origins: {origin!r} must be scheme://host[:port]")
    urls: dict[str, str | None] = {}
    for key in ("success_url", "failure_url"):
        url = urls[key] = _text(table, key, where, problems)
        if url is not None and not re.match(r"^(https?://|/)", url):
            problems.append(f"{where}.{key}: must be an http(s) URL or a path")
    max_file_bytes = _number(table, "max_file_bytes", where, problems, 10 * 1024 * 1024,
                             minimum=1, integer=True)
    max_files = _number(table, "max_files", where, problems, 3, integer=True)
    title = _text(table, "title", where, problems, form_id) or form_id
    intro = _text(table, "intro", where, problems, "") or ""
    min_fill = _number(table, "min_fill_seconds", where, problems, 3.0)
    max_token_age = _number(table, "max_token_age_seconds", where, problems,
                            DEFAULT_TOKEN_AGE_SECONDS, minimum=60)
    file_types = _strings(table, "file_types", where, problems,
                          ("image/*", "application/pdf", "text/plain"))
    max_body_bytes = _number(table, "max_body_bytes", where, problems,
                             max_files * max_file_bytes + 1024 * 1024, minimum=1024,
                             integer=True)
    rate_limit = _number(table, "rate_limit_per_minute", where, problems, 10.0, minimum=0.001)
    if len(problems) > before:
        return None
    return FormSpec(
        id=form_id, title=title, fields=fields, queue=queue, intro=intro,
        success_url=urls["success_url"], failure_url=urls["failure_url"],
        allowed_origins=tuple(o.rstrip("/").lower() for o in origins),
        min_fill_seconds=float(min_fill), max_token_age_seconds=float(max_token_age),
        max_files=max_files, max_file_bytes=max_file_bytes, file_types=file_types,
        max_body_bytes=max_body_bytes, rate_limit_per_minute=float(rate_limit),
        honeypot=honeypot,
    )


def read_forms(tables: Any, queues: set[str] | None = None
               ) -> tuple[dict[str, FormSpec], list[str]]:
    """The forms of `[[form]]` tables by id, and every problem with them."""
    if isinstance(tables, dict):
        tables = [tables]
    if not isinstance(tables, list):
        return {}, ["form: must be a list of [[form]] tables"]
    problems: list[str] = []
    forms: dict[str, FormSpec] = {}
    for index, table in enumerate(tables):
        spec = read_form(table, f"form[{index}]", queues, problems)
        if spec is None:
            continue
        if spec.id in forms:
            problems.append(f"form[{index}].id: {spec.id!r} is used by another form")
        forms.setdefault(spec.id, spec)
    return forms, problems


def parse_form(table: Any, where: str, queues: set[str] | None = None) -> FormSpec:
    """One `[[form]]` table as a FormSpec; the ConfigError names each key at fault."""
    problems: list[str] = []
    spec = read_form(table, where, queues, problems)
    if spec is None or problems:
        raise ConfigError("\n".join(problems))
    return spec


def parse_forms(tables: Any, queues: set[str] | None = None) -> dict[str, FormSpec]:
    forms, problems = read_forms(tables, queues)
    if problems:
        raise ConfigError("\n".join(problems))
    return forms


# --- the fill-time token ----------------------------------------------------------


def _mac(secret: bytes, message: str) -> str:
    digest = hmac.new(secret, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def issue_token(secret: bytes, form_id: str, now: float, client: str = "",
                nonce: str = "") -> str:
    """A fill-time token for `form_id`, bound to the `client` it is issued to (the
    caller's grouping of the client's address): a token copied to, or harvested
    by, another address is not valid there. The caller's random `nonce` makes
    each page's token its own, so one spent never stands for another page's."""
    issued = f"{int(now)}"
    mac = _mac(secret, f"{form_id}.{issued}.{client}.{nonce}")
    return f"{issued}.{nonce}.{mac}" if nonce else f"{issued}.{mac}"


def issued_at(token: str) -> int | None:
    """When a token says it was issued; None unless written as issue_token writes
    it (no sign, no leading zero: one token has one spelling, so a spent one
    cannot come back spelt another way)."""
    issued = token.partition(".")[0]
    if not (issued.isascii() and issued.isdigit() and len(issued) <= 12):
        return None
    return int(issued) if issued == str(int(issued)) else None


def check_token(secret: bytes, spec: FormSpec, token: str | None, now: float,
                client: str = "") -> str | None:
    """None if the token is good for a post from `client`, else why the post is
    refused (for the person)."""
    if spec.min_fill_seconds <= 0:
        return None
    if not token:
        return "the form's security token is missing; reload the page and send again"
    issued = issued_at(token)
    parts = token.split(".")
    nonce, mac = (parts[1], parts[2]) if len(parts) == 3 and parts[1] else ("", parts[-1])
    if issued is None or len(parts) not in (2, 3) or not hmac.compare_digest(
            mac.encode("utf-8", "surrogatepass"),
            _mac(secret, f"{spec.id}.{issued}.{client}.{nonce}").encode()):
        return "the form's security token is not valid; reload the page and send again"
    age = now - issued
    if age < spec.min_fill_seconds:
        return "the form was sent too quickly; wait a few seconds and send it again"
    if age > spec.max_token_age_seconds:
        return "the page has been open too long; reload it and send the form again"
    return None


def too_long(limit: int) -> str:
    return f"this field must be at most {limit} characters"


# --- a post -------------------------------------------------------------------------


def check_values(spec: FormSpec, values: dict[str, list[str]],
                 files: list[UploadedFile]) -> FormSubmission | list[FieldProblem]:
    """Check decoded values and stored files against the form."""
    problems: list[FieldProblem] = []
    chosen: dict[str, str] = {}
    for f in spec.fields:
        if f.kind == "file":
            continue
        given = [v for v in values.get(f.name, []) if v != ""]
        pointer = f"/{f.name}"
        if len(given) > 1:
            problems.append(FieldProblem(pointer, "this field was given more than once"))
            continue
        value = given[0].strip() if given else ""
        if f.kind == "checkbox":
            value = "yes" if value else ""
        if not value:
            if f.required:
                problems.append(FieldProblem(pointer, "this field is required"))
            continue
        if "\x00" in value:
            problems.append(FieldProblem(pointer, "this field must not contain NUL characters"))
        elif len(value) > f.max_length:
            problems.append(FieldProblem(pointer, too_long(f.max_length)))
        elif f.kind == "email" or f.role == "requester_email":
            # One checked addr-spec, kept in its canonical form: never a list.
            if (mailbox := mailbox_or_none(value)) is None:
                problems.append(FieldProblem(pointer, NOT_AN_ADDRESS))
            else:
                chosen[f.name] = mailbox.addr_spec
        elif f.kind == "select" and value not in f.options:
            problems.append(FieldProblem(pointer, "choose one of the options"))
        else:
            chosen[f.name] = value
    for f in spec.file_fields:
        if f.required and not any(u.field == f.name for u in files):
            problems.append(FieldProblem(f"/{f.name}", "choose a file to send"))
    if problems:
        return problems

    def by_role(role: str) -> str | None:
        found = spec.with_role(role)
        return chosen.get(found.name) if found else None

    email = by_role("requester_email")
    subject = " ".join((by_role("subject") or "").split()) or spec.title
    custom = {f.name: chosen[f.name] for f in spec.fields
              if f.role is None and f.kind != "file" and f.name in chosen}
    return FormSubmission(
        form_id=spec.id, requester_email=email,
        requester_name=by_role("requester_name"), subject=subject,
        body=by_role("body") or "", custom_fields=custom, files=tuple(files))


def submission_json(submission: FormSubmission) -> bytes:
    """The stored form of a submission (the inbox item's raw)."""
    return json.dumps(asdict(submission), ensure_ascii=False, sort_keys=True).encode()


def submission_from_json(raw: bytes) -> FormSubmission:
    data = json.loads(raw)
    files = tuple(UploadedFile(**f) for f in data.pop("files", []))
    return FormSubmission(**data, files=files)
