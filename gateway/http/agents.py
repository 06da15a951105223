"""The agents' API: actions on requests, attachments and the status pages.

Scopes: an agent token scoped to queues sees only those; anything else answers
404, exactly like a reference that does not exist. Updates carry the version
they saw (If-Match, from the ETag); a stale one gets 412. Work from queues
(claims, leases) is in queues.py.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from domain.lifecycle import EventKind, Outcome, Status
from gateway.delivery.outbound import agent_reply
from gateway.http import queues
from gateway.http.auth import actor, may_read
from gateway.http.bodies import AdminChanges, AgentChanges, Escalation, Merge, Note, Reply
from gateway.http.lookup import acting, not_found, readable
from gateway.http.problems import Problem, invalid
from gateway.http.shared import CONFIG, ENGINE, json_response, small_int
from gateway.http.validation import json_object, parse, read
from storage import actions, queries
from storage.uploads import read_blob

MAX_NOTE = 100_000


def _etag(version: int) -> str:
    return f'"v{version}"'


def _version_from(header: str | None) -> int | None:
    if not header:
        return None
    value = header.strip().removeprefix("W/").strip('"')
    return int(value[1:]) if value.startswith("v") and value[1:].isdigit() else -1


def _version(outcome: actions.Updated) -> int:
    """The request's new version, once a change went through."""
    if outcome.outcome == Outcome.MISSING:
        raise not_found()
    if outcome.outcome == Outcome.STALE:
        raise Problem(412, "the request changed since you read it; read it again")
    assert outcome.version is not None
    return outcome.version


def _versioned(reference: str, outcome: actions.Updated) -> web.Response:
    version = _version(outcome)
    return json_response({"reference": reference, "version": version},
                         headers={"ETag": _etag(version)})


async def update_request(request: web.Request) -> web.Response:
    token, req = await acting(request)
    if_match = request.headers.get("If-Match")
    if not if_match:
        raise Problem(428, "send If-Match with the ETag of the version you are changing")
    body = await json_object(request)
    model = AdminChanges if token.role == "admin" else AgentChanges
    changes = parse(model, body, queues=queues.visible_queues(request, token)).changes(body)
    if not changes:
        raise invalid("", "name at least one field to change")
    outcome = await actions.update_fields(request.app[ENGINE], req["reference"],
                                          _version_from(if_match), changes, actor(token))
    return _versioned(req["reference"], outcome)


async def add_note(request: web.Request) -> web.Response:
    token, req = await acting(request)
    note = await read(request, Note)
    outcome = await actions.add_event(request.app[ENGINE], req["reference"], EventKind.NOTE,
                                      actor(token), {"body": note.body[:MAX_NOTE]})
    if outcome.outcome != Outcome.OK:
        return _versioned(req["reference"], outcome)
    return json_response({"reference": req["reference"]}, status=201)


async def add_reply(request: web.Request) -> web.Response:
    token, req = await acting(request, whole=True)  # threads on the messages
    reply = await read(request, Reply)
    message = agent_reply(request.app[CONFIG], req, reply.body)
    outcome = await actions.add_reply(request.app[ENGINE], req["reference"], message,
                                      actor(token), status=reply.status)
    version = _version(outcome)
    return json_response({"reference": req["reference"], "message_id": message.message_id,
                          "version": version}, status=201, headers={"ETag": _etag(version)})


async def escalate(request: web.Request) -> web.Response:
    token, req = await acting(request)
    asked = await read(request, Escalation, queues=[q.name for q in request.app[CONFIG].queue])
    changes: dict[str, Any] = {"escalation_level": int(req["escalation_level"]) + 1}
    if asked.queue is not None:
        changes["queue"] = asked.queue
    outcome = await actions.update_fields(
        request.app[ENGINE], req["reference"], _version_from(request.headers.get("If-Match")),
        changes, actor(token), kind=EventKind.ESCALATED,
        note={"reason": asked.reason, "by": "hand"})
    return _versioned(req["reference"], outcome)


async def merge(request: web.Request) -> web.Response:
    token, req = await acting(request)
    into = (await read(request, Merge)).into
    target = await queries.get_request(request.app[ENGINE], into, whole=False)
    if target is None or not may_read(token, target.get("queue")):
        raise invalid("/into", "no request with this reference")
    outcome = await actions.merge(request.app[ENGINE], req["reference"], target["reference"],
                                  actor(token))
    if outcome == Outcome.SAME:
        raise invalid("/into", "cannot merge a request into itself")
    if outcome == Outcome.MERGED:
        raise Problem(409, "this request is merged already")
    return json_response({"reference": req["reference"], "status": Status.MERGED,
                          "into": target["reference"]})


async def download_attachment(request: web.Request) -> web.StreamResponse:
    _, req = await readable(request)
    raw_id = request.match_info["attachment_id"]
    number = small_int(raw_id)
    item = None if number is None else await actions.attachment(
        request.app[ENGINE], req["reference"], number)
    if item is None:
        raise Problem(404, "no such attachment on this request")
    name = (item["filename"] or f"attachment-{raw_id}").replace('"', "")
    plain = name.encode("ascii", "replace").decode()
    # Always a download, never rendered: a customer's HTML must not run here.
    response = web.StreamResponse(headers={
        "Content-Type": item["content_type"] or "application/octet-stream",
        "Content-Length": str(item["size"]),
        "Content-Disposition": f"attachment; filename=\"{plain}\"; "
                               f"filename*=UTF-8''{quote(name, safe='')}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
    })
    # Uploads are stored in pieces: sent the same way, never whole in memory.
    await response.prepare(request)
    async for piece in read_blob(request.app[ENGINE], item["sha256"]):
        await response.write(piece)
    await response.write_eof()
    return response


async def status_page(request: web.Request) -> web.Response:
    """The customer's view, by the unguessable token from their acknowledgement."""
    page = await actions.status_page(request.app[ENGINE], request.match_info["token"])
    if page is None:
        raise Problem(404, "no request for this status link")
    return json_response(page, headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application) -> None:
    queues.add_routes(app)
    app.router.add_patch("/v1/requests/{reference}", update_request)
    app.router.add_post("/v1/requests/{reference}/notes", add_note)
    app.router.add_post("/v1/requests/{reference}/replies", add_reply)
    app.router.add_post("/v1/requests/{reference}/escalate", escalate)
    app.router.add_post("/v1/requests/{reference}/merge", merge)
    app.router.add_get("/v1/requests/{reference}/attachments/{attachment_id}",
                       download_attachment)
    app.router.add_get("/v1/status/{token}", status_page)
