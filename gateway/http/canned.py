"""Canned responses: reply templates per queue and language that agents insert,
rendered with the request's context.

Templates are Jinja2 in its sandbox (no attribute of Python internals, bounded
`range`) with StrictUndefined: a misspelt name is an error, never an empty
gap in a customer's mail. A template is rendered against a sample request when
an admin saves it, so a mistake is refused then (422), not met by an agent.
The context (`context()`): `reference`, `subject`, `queue`, `status`,
`priority`, `requester.name`, `requester.email`, `agent.name`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from domain.errors import Conflict
from gateway.http import listing
from gateway.http.access import authorise
from gateway.http.audit import audited
from gateway.http.auth import ADMINS, STAFF, require_role
from gateway.http.bodies import CannedUpdate, NewCanned
from gateway.http.problems import Problem, invalid
from gateway.http.queues import visible_queues
from gateway.http.shared import CONFIG, ENGINE, json_response, small_int
from gateway.http.validation import json_object, parse, parse_all
from storage import agents

MAX_RENDERED = 100_000  # characters of text a canned response may become

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False,
                            keep_trailing_newline=False)
SAMPLE: dict[str, Any] = {
    "reference": "7PY9-9T9S", "subject": "Printer on floor 3 is jammed", "queue": "general",
    "status": "open", "priority": "P3",
    "requester": {"name": "Ann Example", "email": "ann@example.com"},
    "agent": {"name": "Sam Agent"},
}


class RenderError(Exception):
    """A template that cannot be compiled or rendered; the text says why."""


def context(request: dict[str, Any], agent_name: str | None) -> dict[str, Any]:
    """What a canned response may use of a request (read with whole=False or True)."""
    requester = request.get("requester") or {}
    return {"reference": request["reference"], "subject": request.get("subject") or "",
            "queue": request.get("queue") or "", "status": request.get("status") or "",
            "priority": request.get("priority") or "",
            "requester": {"name": requester.get("name") or "",
                          "email": requester.get("email") or ""},
            "agent": {"name": agent_name or ""}}


def render(template: str, values: dict[str, Any]) -> str:
    try:
        text = _ENV.from_string(template).render(values)
    except Exception as exc:  # noqa: BLE001 - syntax, undefined, sandbox, any filter
        raise RenderError(f"{type(exc).__name__}: {exc}"[:300]) from None
    if len(text) > MAX_RENDERED:
        raise RenderError(f"renders to more than {MAX_RENDERED} characters")
    return text


def _checked(body: str) -> str:
    try:
        render(body, SAMPLE)
    except RenderError as exc:
        raise invalid("/body", f"cannot be rendered: {exc}") from None
    return body


def _queues(request: web.Request) -> list[str]:
    return [q.name for q in request.app[CONFIG].queue]


def _canned_id(request: web.Request) -> int:
    number = small_int(request.match_info["canned_id"])
    if number is None:
        raise _missing()
    return number


def _missing() -> Problem:
    return Problem(404, "no canned response with this id")


def _taken() -> Problem:
    return Problem(409, "this queue has a canned response by this name in this language")


async def create_canned(request: web.Request) -> web.Response:
    token = await require_role(request, ADMINS)
    new = parse_all(NewCanned, await json_object(request),
                    summary="the canned response has invalid fields", queues=_queues(request))
    made = await agents.create_canned(request.app[ENGINE], queue=new.queue,
                                      language=new.language, name=new.name,
                                      body=_checked(new.body),
                                      audit=audited(request, token))
    if made is None:
        raise _taken()
    return json_response(made, status=201)


async def list_all_canned(request: web.Request) -> web.Response:
    await require_role(request, ADMINS)
    listing.check_query(request.query, ())
    return json_response({"items": await agents.list_canned(request.app[ENGINE])})


async def get_canned(request: web.Request) -> web.Response:
    await require_role(request, ADMINS)
    found = await agents.get_canned(request.app[ENGINE], _canned_id(request))
    if found is None:
        raise _missing()
    return json_response(found)


async def update_canned(request: web.Request) -> web.Response:
    token = await require_role(request, ADMINS)
    number = _canned_id(request)
    body = await json_object(request)
    changes = parse(CannedUpdate, body, queues=_queues(request)).model_dump(exclude_unset=True)
    if not changes:
        raise invalid("", "name at least one field to change")
    if "body" in changes:
        _checked(changes["body"])
    try:
        found = await agents.update_canned(request.app[ENGINE], number, changes,
                                           audit=audited(request, token))
    except Conflict:
        raise _taken() from None
    if found is None:
        raise _missing()
    return json_response(found)


async def delete_canned(request: web.Request) -> web.Response:
    token = await require_role(request, ADMINS)
    if not await agents.delete_canned(request.app[ENGINE], _canned_id(request),
                                      audit=audited(request, token)):
        raise _missing()
    return web.Response(status=204)


def in_language(items: list[dict[str, Any]], tag: str) -> list[dict[str, Any]]:
    """Each canned response (by name) in the language `tag` asks for, else in its
    primary language: `de-AT` takes `de-AT`, then `de`. Tags compare without
    case (BCP 47)."""
    wanted = tag.lower()
    primary = wanted.split("-")[0]
    best: dict[str, tuple[int, dict[str, Any]]] = {}
    for item in items:
        language = str(item["language"]).lower()
        rank = 0 if language == wanted else 1 if language == primary else None
        if rank is not None and (item["name"] not in best or rank < best[item["name"]][0]):
            best[item["name"]] = (rank, item)
    return [item for _, (_, item) in sorted(best.items())]


async def queue_canned(request: web.Request) -> web.Response:
    """A queue's canned responses (in one language with `lang`); with `reference`,
    each rendered for that request as the caller would insert it."""
    token = await require_role(request, STAFF)
    queue = request.match_info["queue"]
    if queue not in visible_queues(request, token):
        raise Problem(404, "no queue with this name")
    asked = listing.check_query(request.query, ("lang", "reference"))
    items = await agents.list_canned(request.app[ENGINE], queues=[queue])
    if "lang" in asked:
        items = in_language(items, asked["lang"])
    if "reference" in asked:
        acting = await authorise(request, act=False, reference=asked["reference"])
        values = context(acting.request, acting.token.agent_name)
        for item in items:
            try:
                item["rendered"] = render(item["body"], values)
            except RenderError as exc:
                item["rendered"], item["render_error"] = None, str(exc)
    return json_response({"items": items})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/queues/{queue}/canned-responses", queue_canned)
    app.router.add_post("/v1/admin/canned-responses", create_canned)
    app.router.add_get("/v1/admin/canned-responses", list_all_canned)
    app.router.add_get("/v1/admin/canned-responses/{canned_id}", get_canned)
    app.router.add_patch("/v1/admin/canned-responses/{canned_id}", update_canned)
    app.router.add_delete("/v1/admin/canned-responses/{canned_id}", delete_canned)
