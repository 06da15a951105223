"""Validation of the JSON body of POST /v1/requests.

Returns a typed record, or the list of problems each naming its field as a
JSON pointer, so the HTTP edge can answer with one problem document.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

MAX_SUBJECT = 998
MAX_BODY = 1_000_000
MAX_NAME = 200
MAX_CUSTOM_FIELDS = 50
# Deliberately loose: one @, no spaces, a dot-less domain allowed (localhost).
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")


@dataclass(frozen=True, slots=True)
class FieldProblem:
    pointer: str
    detail: str


@dataclass(frozen=True, slots=True)
class ApiRequest:
    requester_email: str
    requester_name: str | None
    subject: str
    body: str
    custom_fields: dict[str, Any] = field(default_factory=dict)


def _escape(key: str) -> str:
    """A key as one JSON-pointer segment (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def _string(data: dict[str, Any], key: str, pointer: str, problems: list[FieldProblem], *,
            required: bool, limit: int) -> str | None:
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
    if "\x00" in value:
        problems.append(FieldProblem(pointer, "must not contain NUL characters"))
        return None
    return value


def parse_api_request(body: bytes) -> ApiRequest | list[FieldProblem]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return [FieldProblem("", f"body is not valid JSON: {exc}")]
    if not isinstance(data, dict):
        return [FieldProblem("", "body must be a JSON object")]
    problems: list[FieldProblem] = []
    unknown = sorted(set(data) - {"requester", "subject", "body", "custom_fields"})
    problems += [FieldProblem(f"/{_escape(k)}", "is not a known field") for k in unknown]

    requester = data.get("requester")
    email = name = None
    if not isinstance(requester, dict):
        problems.append(FieldProblem("/requester", "is required and must be an object"))
    else:
        email = _string(requester, "email", "/requester/email", problems, required=True,
                        limit=320)
        if email is not None and not _EMAIL.match(email):
            problems.append(FieldProblem("/requester/email", "is not an email address"))
        name = _string(requester, "name", "/requester/name", problems, required=False,
                       limit=MAX_NAME)
    subject = _string(data, "subject", "/subject", problems, required=True, limit=MAX_SUBJECT)
    if subject is not None and not subject.strip():
        problems.append(FieldProblem("/subject", "must not be empty"))
    text = _string(data, "body", "/body", problems, required=True, limit=MAX_BODY)

    custom = data.get("custom_fields", {})
    if not isinstance(custom, dict):
        problems.append(FieldProblem("/custom_fields", "must be an object"))
    elif len(custom) > MAX_CUSTOM_FIELDS:
        problems.append(FieldProblem("/custom_fields",
                                     f"must have at most {MAX_CUSTOM_FIELDS} fields"))
    else:
        for key, value in custom.items():
            if "\x00" in key or isinstance(value, str) and "\x00" in value:
                problems.append(FieldProblem(f"/custom_fields/{_escape(key)}",
                                             "must not contain NUL characters"))
            elif not isinstance(value, str | int | float | bool) and value is not None:
                problems.append(FieldProblem(f"/custom_fields/{_escape(key)}",
                                             "must be a string, number, boolean or null"))
    if problems:
        return problems
    assert email is not None and subject is not None and text is not None
    return ApiRequest(requester_email=email.lower(), requester_name=name,
                      subject=" ".join(subject.split()), body=text,
                      custom_fields=dict(custom))
