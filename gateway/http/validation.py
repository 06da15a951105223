"""Reading JSON request bodies and checking them against declared models.

A body is declared as a pydantic model (gateway/http/bodies.py) whose fields
say, with `Says`, what their problem reads as: clients get the same short
texts whatever pydantic found wrong, each named by its JSON pointer (RFC 6901).
Models are strict: a bool is not a number, `5.0` is not a whole one, "5" is
not either.
"""

from __future__ import annotations

import json
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


async def json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; no body at all reads as `{}`."""
    raw = await request.read() if request.body_exists else b"{}"
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, f"body is not valid JSON: {exc}") from None
    if "\\u0000" in raw.decode("utf-8", "replace"):
        # PostgreSQL text cannot hold NUL; no legitimate value carries one.
        raise Problem(422, "NUL characters are not allowed",
                      errors=[FieldProblem("", "contains a NUL character")])
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
