"""Reading JSON request bodies and checking them against declared models.

A body is declared as a pydantic model (gateway/http/bodies.py) whose fields
say, with `Says`, what their problem reads as: clients get the same short
texts whatever pydantic found wrong, each named by its JSON pointer (RFC 6901).
Models are strict: a bool is not a number, `5.0` is not a whole one, "5" is
not either.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from gateway.http.problems import Problem, invalid
from parsers.api_request import FieldProblem

M = TypeVar("M", bound="Body")


@dataclass(frozen=True, slots=True)
class Says:
    """A field's problem text: `detail`, or `too_long` when only its length is wrong."""

    detail: str
    too_long: str | None = None


class Body(BaseModel):
    """A declared JSON request body. Keys it does not declare are ignored unless
    a model forbids them (`extra="forbid"`): then each is a problem of its own."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    unknown_field: ClassVar[str] = "is not a known field"
    # The first problem reported: in the order the client sent the keys (unknown
    # keys first), or else in the order the model declares its fields.
    in_body_order: ClassVar[bool] = False


# Our bodies nest three levels at most (custom_fields in a PATCH); deeper is an
# attack on the parser's recursion, refused before any model looks at it.
MAX_JSON_DEPTH = 32
# Values checked one by one in Python (about 1 us each): bounded, so no body
# under `http.max_body_bytes` holds the event loop long. Our largest body (a PATCH
# with its tags and custom fields) has a few hundred.
MAX_JSON_VALUES = 10_000
# In a str every surrogate code point is a lone one (json joins escaped pairs).
_SURROGATE = re.compile("[\ud800-\udfff]")


def _unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's members; a name given twice is refused (RFC 7493 2.3), since
    two readers of the same body could otherwise see two different requests."""
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise ValueError(f"the name {shown(name)!r} appears twice")
            seen.add(name)
    return found


def shown(text: str) -> str:
    """Text safe to send back: a lone surrogate becomes U+FFFD (RFC 7493 2.1)."""
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


# Where a value is, as a chain (parent, key), made into a JSON pointer only for the
# one value refused: building a string for every value would cost more than the
# parse itself.
_Where = tuple[Any, str | int] | None


def _pointer_of(where: _Where) -> str:
    """The JSON pointer (RFC 6901: `~` and `/` escaped), sendable as text."""
    keys: list[str] = []
    while where is not None:
        where, key = where
        keys.append(shown(str(key)).replace("~", "~0").replace("/", "~1"))
    return "".join(f"/{key}" for key in reversed(keys))


def _bad_text(value: str) -> str | None:
    if "\x00" in value:
        return "NUL"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "must be Unicode text: a lone surrogate (\\ud800-\\udfff) is not"
    return None


def _bad_number(value: float) -> str | None:
    # Python reads NaN, Infinity and 1e999 as floats; no JSON reader takes them back.
    if not math.isfinite(value):
        return "must be a finite number (NaN and Infinity are not JSON numbers)"
    return None


def _nesting_problem() -> Problem:
    return Problem(400, f"body is not valid JSON: nested more than {MAX_JSON_DEPTH} levels")


def _refuse(at: str, why: str) -> Problem:
    if why == "NUL":
        # PostgreSQL text cannot hold NUL; no legitimate value carries one.
        return Problem(422, "NUL characters are not allowed",
                       errors=[FieldProblem(at, "contains a NUL character")])
    return invalid(at, why)


def _walk(value: Any) -> None:
    """Raise the problem of the first value (in document order) we could not store
    or send back: NUL, lone surrogates, non-finite numbers, nesting. A loop, not
    recursion: the depth is the attacker's to choose."""
    stack: list[tuple[_Where, Any, int]] = [(None, value, 0)]
    counted = 1  # values seen or waiting on the stack
    while stack:
        where, item, depth = stack.pop()
        if isinstance(item, dict | list):
            counted += len(item)
            if counted > MAX_JSON_VALUES:
                raise Problem(422, f"the body holds more than {MAX_JSON_VALUES} values",
                              errors=[FieldProblem("", f"must hold at most {MAX_JSON_VALUES} "
                                                       "values in all")])
        if depth >= MAX_JSON_DEPTH:
            raise _nesting_problem()
        why = None
        if isinstance(item, str):
            why = _bad_text(item)
        elif isinstance(item, float):
            why = _bad_number(item)
        elif isinstance(item, dict):
            for key in item:
                if (why := _bad_text(key)) is not None:
                    raise _refuse(_pointer_of((where, key)), why)
            stack.extend(((where, k), v, depth + 1) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend(((where, i), v, depth + 1)
                         for i, v in zip(range(len(item) - 1, -1, -1), reversed(item),
                                         strict=True))
        if why is not None:
            raise _refuse(_pointer_of(where), why)


def load_json(raw: bytes) -> Any:
    """The body as I-JSON (RFC 7493): UTF-8, names unique, numbers finite, text
    without lone surrogates (nor NUL, which PostgreSQL refuses), nesting bounded.
    What is not JSON is 400; JSON we could not store is 422 naming its pointer."""
    try:
        text = raw.decode("utf-8")  # strict: also refuses encoded surrogates
        body = json.loads(text, object_pairs_hook=_unique_names)
    except RecursionError:
        raise _nesting_problem() from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, f"body is not valid JSON: {shown(str(exc))}"[:300]) from None
    _walk(body)
    return body


async def json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object (see `load_json`); no body at all reads as `{}`."""
    raw = await request.read() if request.body_exists else b""
    body = load_json(raw or b"{}")
    if not isinstance(body, dict):
        raise Problem(422, "body must be a JSON object",
                      errors=[FieldProblem("", "must be an object")])
    return body


def pointer(key: str) -> str:
    """A top-level key as a JSON pointer (RFC 6901 escapes `~` and `/`)."""
    return "/" + key.replace("~", "~0").replace("/", "~1")


@dataclass(frozen=True, slots=True)
class _Found:
    key: str
    unknown: bool
    detail: str


def _detail(model: type[Body], key: str, error: ErrorDetails) -> str:
    info = model.model_fields.get(key)
    says = next((m for m in info.metadata if isinstance(m, Says)), None) if info else None
    if says is None:
        return error["msg"]  # a field declared without its text: pydantic's words
    if error["type"] == "string_too_long" and says.too_long:
        return says.too_long
    return says.detail


def _found(model: type[Body], error: ValidationError) -> list[_Found]:
    """One problem per field (a union's failures name a field several times)."""
    found: dict[str, _Found] = {}
    for item in error.errors():
        key = str(item["loc"][0]) if item["loc"] else ""
        if key in found:
            continue
        unknown = item["type"] == "extra_forbidden"
        found[key] = _Found(key, unknown,
                            model.unknown_field if unknown else _detail(model, key, item))
    # Declared fields in their order, then unknown keys by name.
    return sorted(found.values(), key=lambda f: (f.unknown, f.key if f.unknown else ""))


def field_problems(model: type[Body], error: ValidationError) -> list[FieldProblem]:
    """Every problem pydantic found, one per field, as JSON pointers."""
    return [FieldProblem(pointer(f.key), f.detail) for f in _found(model, error)]


def parse(model: type[M], body: dict[str, Any], *, queues: list[str] | None = None) -> M:
    """The body as `model`, or a 422 naming its first problem.

    `queues` are the queue names a queue field may take (the caller's to see).
    """
    try:
        return model.model_validate(body, context={"queues": queues or []})
    except ValidationError as exc:
        found = _found(model, exc)
    if model.in_body_order:
        sent = {key: index for index, key in enumerate(body)}
        found.sort(key=lambda f: (not f.unknown, sent.get(f.key, len(sent))))
    raise invalid(pointer(found[0].key), found[0].detail) from None


def parse_all(model: type[M], body: dict[str, Any], *, summary: str,
              queues: list[str] | None = None) -> M:
    """The body as `model`, or a 422 listing every problem under `summary`."""
    try:
        return model.model_validate(body, context={"queues": queues or []})
    except ValidationError as exc:
        raise Problem(422, summary, errors=field_problems(model, exc)) from None


async def read(request: web.Request, model: type[M], *, queues: list[str] | None = None) -> M:
    """The request's JSON body as `model` (see `json_object` and `parse`)."""
    return parse(model, await json_object(request), queues=queues)
