"""Validation of the JSON body of POST /v1/requests.

Returns a typed record, or the list of problems each naming its field as a
JSON pointer, so the HTTP edge can answer with one problem document.

What is refused is what no database could store as sent, so that an accepted
body always becomes a request: a NUL, a lone surrogate (`"\\ud800"`: not
Unicode text, and not UTF-8), NaN and Infinity (not JSON, RFC 8259 section 6,
though Python reads them). The pipeline reads stored bodies with
`strict=False`: a body accepted before these checks existed is still read,
and storage fits its values with a recorded defect.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from parsers.addresses import AddressError, Mailbox, parse_address

MAX_SUBJECT = 998
MAX_BODY = 1_000_000
MAX_NAME = 200
MAX_CUSTOM_FIELDS = 50


@dataclass(frozen=True, slots=True)
class FieldProblem:
    pointer: str
    detail: str


@dataclass(frozen=True, slots=True)
class ApiRequest:
    requester_email: str  # `requester`'s addr-spec; as given only when `requester` is None
    requester_name: str | None
    subject: str
    body: str
    custom_fields: dict[str, Any] = field(default_factory=dict)
    # The one address acknowledgements go to (parsers/addresses.py); None only for
    # a body stored before the address was checked (read with strict=False).
    requester: Mailbox | None = field(default=None, compare=False)


def _escape(key: str) -> str:
    """A key as one JSON-pointer segment (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


_SURROGATE = re.compile("[\ud800-\udfff]")
NOT_UNICODE = "must be Unicode text (a lone surrogate escape such as \\ud800 is not)"
NOT_A_NUMBER = "must be a finite number (NaN and Infinity are not JSON)"


def _text_problem(value: str) -> str | None:
    """Why a string cannot be stored as sent, or None."""
    if "\x00" in value:
        return "must not contain NUL characters"
    if not value.isascii() and _SURROGATE.search(value):
        return NOT_UNICODE
    return None


def _string(data: dict[str, Any], key: str, pointer: str, problems: list[FieldProblem], *,
            required: bool, limit: int, strict: bool) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            problems.append(FieldProblem(pointer, "is required"))
        return None
    if not isinstance(value, str):
        problems.append(FieldProblem(pointer, "must be a string"))
        return None
    if len(value) > limit:
        problems.append(FieldProblem(pointer, f"must be at most {limit} characters"))
        return None
    why = _text_problem(value) if strict else None
    if why is not None:
        problems.append(FieldProblem(pointer, why))
        return None
    return value


def _custom_problem(key: str, value: Any, strict: bool) -> str | None:
    if not isinstance(value, str | int | float | bool) and value is not None:
        return "must be a string, number, boolean or null"
    if not strict:
        return None
    why = _text_problem(key)
    if why is None and isinstance(value, str):
        why = _text_problem(value)
    if why is None and isinstance(value, float) and not math.isfinite(value):
        why = NOT_A_NUMBER
    return why


def parse_api_request(body: bytes, *, strict: bool = True) -> ApiRequest | list[FieldProblem]:
    """The body as a request, or its problems. `strict=False` (stored bodies)
    lets through what storage can fit: NUL, lone surrogates, NaN, Infinity."""
    try:
        data = json.loads(body)
    except RecursionError:
        return [FieldProblem("", "body is not valid JSON: nested too deeply")]
    except (ValueError, UnicodeDecodeError) as exc:
        return [FieldProblem("", f"body is not valid JSON: {exc}")]
    if not isinstance(data, dict):
        return [FieldProblem("", "body must be a JSON object")]
    problems: list[FieldProblem] = []
    unknown = sorted(set(data) - {"requester", "subject", "body", "custom_fields"})
    problems += [FieldProblem(f"/{_escape(k)}", "is not a known field") for k in unknown]

    requester = data.get("requester")
    email = name = mailbox = None
    if not isinstance(requester, dict):
        problems.append(FieldProblem("/requester", "is required and must be an object"))
    else:
        email = _string(requester, "email", "/requester/email", problems, required=True,
                        limit=320, strict=strict)
        if email is not None:
            try:
                mailbox = parse_address(email)
            except AddressError as exc:
                if strict:
                    problems.append(FieldProblem("/requester/email",
                                                 f"is not an email address: {exc.reason}"))
        name = _string(requester, "name", "/requester/name", problems, required=False,
                       limit=MAX_NAME, strict=strict)
    subject = _string(data, "subject", "/subject", problems, required=True, limit=MAX_SUBJECT,
                      strict=strict)
    if subject is not None and not subject.strip():
        problems.append(FieldProblem("/subject", "must not be empty"))
    text = _string(data, "body", "/body", problems, required=True, limit=MAX_BODY,
                   strict=strict)

    custom = data.get("custom_fields", {})
    if not isinstance(custom, dict):
        problems.append(FieldProblem("/custom_fields", "must be an object"))
    elif len(custom) > MAX_CUSTOM_FIELDS:
        problems.append(FieldProblem("/custom_fields",
                                     f"must have at most {MAX_CUSTOM_FIELDS} fields"))
    else:
        for key, value in custom.items():
            why = _custom_problem(key, value, strict)
            if why is not None:
                problems.append(FieldProblem(f"/custom_fields/{_escape(key)}", why))
    if problems:
        return problems
    assert email is not None and subject is not None and text is not None
    return ApiRequest(requester_email=mailbox.addr_spec if mailbox else email.lower(),
                      requester_name=name, subject=" ".join(subject.split()), body=text,
                      custom_fields=dict(custom), requester=mailbox)
