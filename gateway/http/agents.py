"""The agents' API: queues, claims with leases, actions on requests, status pages.

Scopes: an agent token scoped to queues sees only those; anything else answers
404, exactly like a reference that does not exist. Updates carry the version
they saw (If-Match, from the ETag); a stale one gets 412.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from gateway.delivery.outbound import agent_reply
from gateway.http.shared import (
    CONFIG,
    ENGINE,
    SIGNALS,
    authorised,
    forbidden,
    json_response,
    may_read,
    problem,
    request_url,
    small_int,
    token_of,
    unauthorised,
)
from gateway.signals import WorkSignals
from storage import actions, claims, queries
from storage.tokens import TokenInfo
from storage.uploads import read_blob

MAX_CLAIM = 50
MAX_LEASE_SECONDS = 3600
MAX_WAIT_SECONDS = 60
MAX_PAGE = 200
FILTERS = ("status", "priority", "type", "component", "tag", "requester", "text")
# Column sizes of the fields an agent may set (storage/models.py).
FIELD_LIMITS = {"type": 32, "category": 64, "component": 64}


def _agent(token: TokenInfo) -> str:
    return f"token:{token.id}"


def _etag(version: int) -> str:
    return f'"v{version}"'


def _version_from(header: str | None) -> int | None:
    if not header:
        return None
    value = header.strip().removeprefix("W/").strip('"')
    return int(value[1:]) if value.startswith("v") and value[1:].isdigit() else -1


def _visible_queues(request: web.Request, token: TokenInfo) -> list[str]:
    names = [q.name for q in request.app[CONFIG].queue]
    if token.role == "admin" or not token.queues:
        return names
    return [n for n in names if n in token.queues]


async def _json_body(request: web.Request) -> dict[str, Any] | web.Response:
    raw = await request.read() if request.body_exists else b"{}"
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        return problem(400, "Bad Request", f"body is not valid JSON: {exc}")
    if "\\u0000" in raw.decode("utf-8", "replace"):
        return problem(422, "Unprocessable Content", "NUL characters are not allowed",
                       errors=[{"pointer": "", "detail": "contains a NUL character"}])
    if not isinstance(body, dict):
        return problem(422, "Unprocessable Content", "body must be a JSON object",
                       errors=[{"pointer": "", "detail": "must be an object"}])
    return body


def _invalid(pointer: str, detail: str) -> web.Response:
    return problem(422, "Unprocessable Content", f"{pointer}: {detail}",
                   errors=[{"pointer": pointer, "detail": detail}])


def _int(body: dict[str, Any], key: str, default: int, low: int, high: int) -> int | str:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return f"must be a whole number from {low} to {high}"
    return value


async def _readable(request: web.Request, *, to_change: bool = False, whole: bool = False
                    ) -> tuple[TokenInfo, dict[str, Any]] | web.Response:
    """The caller's token and the request it names, or the answer to give instead.

    Only the request's own fields unless `whole` (messages, timeline) is asked for.
    """
    token = await token_of(request)
    if token is None:
        return unauthorised()
    found = await queries.get_request(request.app[ENGINE], request.match_info["reference"],
                                      whole=whole)
    if found is None or found.get("status") == "received" and token.role != "admin" or (
            not may_read(token, found.get("queue"))):
        return problem(404, "Not Found", "no request with this reference")
    if to_change and found.get("status") == "received":
        return problem(409, "Conflict", "this input is still being processed; try again shortly",
                       headers={"Retry-After": "1"})
    return token, found


async def list_queues(request: web.Request) -> web.Response:
    token = await authorised(request, ("admin", "agent"))
    if isinstance(token, web.Response):
        return token
    overview = await claims.queue_overview(request.app[ENGINE], _visible_queues(request, token))
    return json_response({"items": overview})


async def queue_requests(request: web.Request) -> web.Response:
    token = await token_of(request)
    if token is None:
        return unauthorised()
    queue = request.match_info["queue"]
    if token.role not in ("admin", "agent") or queue not in _visible_queues(request, token):
        return problem(404, "Not Found", "no queue with this name")
    limit_value = small_int(request.query.get("limit", "50"))
    if limit_value is None or not 1 <= limit_value <= MAX_PAGE:
        return problem(400, "Bad Request", f"limit must be 1 to {MAX_PAGE}",
                       errors=[{"parameter": "limit", "detail": f"must be 1 to {MAX_PAGE}"}])
    filters = {k: request.query[k] for k in FILTERS if request.query.get(k)}
    try:
        items, cursor = await claims.list_queue(
            request.app[ENGINE], queue, filters=filters, limit=limit_value,
            cursor=request.query.get("cursor"))
    except ValueError as exc:
        return problem(400, "Bad Request", str(exc),
                       errors=[{"parameter": "cursor", "detail": str(exc)}])
    for item in items:
        item["url"] = request_url(request, item["reference"])
    return json_response({"items": items, "next_cursor": cursor})


async def claim(request: web.Request) -> web.Response:
    """Take up to `limit` requests for `lease_seconds`; with `wait`, long-poll for work."""
    token = await token_of(request)
    if token is None:
        return unauthorised()
    queue = request.match_info["queue"]
    if token.role not in ("admin", "agent") or queue not in _visible_queues(request, token):
        return problem(404, "Not Found", "no queue with this name")
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    limit = _int(body, "limit", 1, 1, MAX_CLAIM)
    lease = _int(body, "lease_seconds", 300, 1, MAX_LEASE_SECONDS)
    wait = _int(body, "wait", 0, 0, MAX_WAIT_SECONDS)
    for key, value in (("limit", limit), ("lease_seconds", lease), ("wait", wait)):
        if isinstance(value, str):
            return _invalid(f"/{key}", value)
    assert isinstance(limit, int) and isinstance(lease, int) and isinstance(wait, int)
    signals: WorkSignals = request.app[SIGNALS]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        got = await claims.claim(request.app[ENGINE], queue, _agent(token), limit=limit,
                                 lease_seconds=lease)
        remaining = deadline - loop.time()
        if got or remaining <= 0:
            break
        # Woken by new work here or in another process; a lease running out
        # elsewhere sends no signal, so look again every few seconds anyway.
        await signals.wait(queue, min(remaining, 5.0))
    return json_response({"items": [{
        "reference": c.reference, "queue": c.queue, "subject": c.subject,
        "priority": c.priority, "lease_until": c.claim_until,
        "url": request_url(request, c.reference)} for c in got]})


async def renew_lease(request: web.Request) -> web.Response:
    found = await _readable(request, to_change=True)
    if isinstance(found, web.Response):
        return found
    token, req = found
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    lease = _int(body, "lease_seconds", 300, 1, MAX_LEASE_SECONDS)
    if isinstance(lease, str):
        return _invalid("/lease_seconds", lease)
    until = await claims.renew(request.app[ENGINE], req["reference"], _agent(token), lease)
    if until is None:
        return problem(409, "Conflict", "you hold no lease on this request (it may have run out)")
    return json_response({"reference": req["reference"], "lease_until": until})


async def release_lease(request: web.Request) -> web.Response:
    found = await _readable(request, to_change=True)
    if isinstance(found, web.Response):
        return found
    token, req = found
    if not await claims.release(request.app[ENGINE], req["reference"], _agent(token)):
        return problem(409, "Conflict", "you hold no lease on this request")
    request.app[SIGNALS].signal(req["queue"])
    return web.Response(status=204)


async def download_attachment(request: web.Request) -> web.StreamResponse:
    found = await _readable(request)
    if isinstance(found, web.Response):
        return found
    _, req = found
    raw_id = request.match_info["attachment_id"]
    number = small_int(raw_id)
    item = None if number is None else await actions.attachment(
        request.app[ENGINE], req["reference"], number)
    if item is None:
        return problem(404, "Not Found", "no such attachment on this request")
    name = (item["filename"] or f"attachment-{raw_id}").replace('"', "")
    plain = name.encode("ascii", "replace").decode()
    # Always a download, never rendered: a customer's HTML must not run here.
    response = web.StreamResponse(headers={
        "Content-Type": item["content_type"] or "application/octet-stream",
        "Content-Length": str(item["size"]),
        "Content-Disposition": f"attachment; filename=\"{plain}\"; "
                               f"filename*=UTF-8''{_quote(name)}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
    })
    # Uploads are stored in pieces: sent the same way, never whole in memory.
    await response.prepare(request)
    async for piece in read_blob(request.app[ENGINE], item["sha256"]):
        await response.write(piece)
    await response.write_eof()
    return response


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


async def update_request(request: web.Request) -> web.Response:
    found = await _readable(request, to_change=True)
    if isinstance(found, web.Response):
        return found
    token, req = found
    if token.role not in ("admin", "agent"):
        return forbidden()
    if_match = request.headers.get("If-Match")
    if not if_match:
        return problem(428, "Precondition Required",
                       "send If-Match with the ETag of the version you are changing")
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    allowed = actions.ADMIN_FIELDS if token.role == "admin" else actions.AGENT_FIELDS
    for key in body:
        if key not in allowed:
            return _invalid(f"/{key}", "is not a field this token may change")
    changes, error = _validated_changes(request, token, body)
    if error is not None:
        return error
    outcome = await actions.update_fields(request.app[ENGINE], req["reference"],
                                          _version_from(if_match), changes, _agent(token))
    return _update_answer(request, req, outcome)


def _validated_changes(request: web.Request, token: TokenInfo,
                       body: dict[str, Any]) -> tuple[dict[str, Any], web.Response | None]:
    changes: dict[str, Any] = {}
    for key, value in body.items():
        if key == "status":
            if value not in actions.SETTABLE_STATUSES:
                return {}, _invalid("/status", "must be one of "
                                    + ", ".join(actions.SETTABLE_STATUSES))
        elif key == "queue":
            if value not in _visible_queues(request, token):
                return {}, _invalid("/queue", "is not a queue this token can see")
        elif key == "priority":
            if value not in ("P1", "P2", "P3", "P4"):
                return {}, _invalid("/priority", "must be P1, P2, P3 or P4")
        elif key == "tags":
            if not isinstance(value, list) or not all(
                    isinstance(t, str) and 0 < len(t) <= 100 for t in value) or len(value) > 50:
                return {}, _invalid("/tags", "must be at most 50 strings of 1 to 100 characters")
            value = list(dict.fromkeys(value))
        elif key == "custom_fields":
            if not isinstance(value, dict) or not all(
                    isinstance(v, str | int | float | bool) or v is None for v in value.values()):
                return {}, _invalid("/custom_fields", "must be an object of simple values")
        elif key == "escalation_level":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10:
                return {}, _invalid("/escalation_level", "must be 0 to 10")
        elif value is not None and not isinstance(value, str):
            return {}, _invalid(f"/{key}", "must be a string or null")
        elif isinstance(value, str) and len(value) > FIELD_LIMITS.get(key, 64):
            return {}, _invalid(f"/{key}", f"must be at most {FIELD_LIMITS.get(key, 64)} "
                                           "characters")
        changes[key] = value
    if not changes:
        return {}, _invalid("", "name at least one field to change")
    return changes, None


def _update_answer(request: web.Request, req: dict[str, Any],
                   outcome: actions.Updated) -> web.Response:
    if outcome.outcome == "missing":
        return problem(404, "Not Found", "no request with this reference")
    if outcome.outcome == "stale":
        return problem(412, "Precondition Failed",
                       "the request changed since you read it; read it again")
    assert outcome.version is not None
    return json_response({"reference": req["reference"], "version": outcome.version},
                         headers={"ETag": _etag(outcome.version)})


async def _acting(request: web.Request, *, whole: bool = False
                  ) -> tuple[TokenInfo, dict[str, Any], dict[str, Any]] | web.Response:
    """An agent's or admin's action on a processed request: token, request, body."""
    found = await _readable(request, to_change=True, whole=whole)
    if isinstance(found, web.Response):
        return found
    token, req = found
    if token.role not in ("admin", "agent"):
        return forbidden()
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    return token, req, body


def _text(body: dict[str, Any]) -> str | web.Response:
    text = body.get("body")
    if not isinstance(text, str) or not text.strip():
        return _invalid("/body", "is required and must be text")
    return text


async def add_note(request: web.Request) -> web.Response:
    acting = await _acting(request)
    if isinstance(acting, web.Response):
        return acting
    token, req, body = acting
    text = _text(body)
    if isinstance(text, web.Response):
        return text
    outcome = await actions.add_event(request.app[ENGINE], req["reference"], "note",
                                      _agent(token), {"body": text[:100_000]})
    return json_response({"reference": req["reference"]}, status=201) \
        if outcome.outcome == "ok" else _update_answer(request, req, outcome)


async def add_reply(request: web.Request) -> web.Response:
    acting = await _acting(request, whole=True)  # threads on the messages
    if isinstance(acting, web.Response):
        return acting
    token, req, body = acting
    text = _text(body)
    if isinstance(text, web.Response):
        return text
    status = body.get("status")
    if status is not None and status not in actions.SETTABLE_STATUSES:
        return _invalid("/status", "must be one of " + ", ".join(actions.SETTABLE_STATUSES))
    message = agent_reply(request.app[CONFIG], req, text)
    outcome = await actions.add_reply(request.app[ENGINE], req["reference"], message,
                                      _agent(token), status=status)
    if outcome.outcome != "ok":
        return _update_answer(request, req, outcome)
    return json_response({"reference": req["reference"], "message_id": message.message_id,
                          "version": outcome.version}, status=201,
                         headers={"ETag": _etag(outcome.version or 0)})


async def escalate(request: web.Request) -> web.Response:
    acting = await _acting(request)
    if isinstance(acting, web.Response):
        return acting
    token, req, body = acting
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        return _invalid("/reason", "must be text")
    changes: dict[str, Any] = {"escalation_level": int(req["escalation_level"]) + 1}
    if "queue" in body:
        if body["queue"] not in [q.name for q in request.app[CONFIG].queue]:
            return _invalid("/queue", "is not a configured queue")
        changes["queue"] = body["queue"]
    outcome = await actions.update_fields(
        request.app[ENGINE], req["reference"], _version_from(request.headers.get("If-Match")),
        changes, _agent(token), kind="escalated", note={"reason": reason, "by": "hand"})
    return _update_answer(request, req, outcome)


async def merge(request: web.Request) -> web.Response:
    acting = await _acting(request)
    if isinstance(acting, web.Response):
        return acting
    token, req, body = acting
    into = body.get("into")
    if not isinstance(into, str):
        return _invalid("/into", "is required: the reference to merge into")
    target = await queries.get_request(request.app[ENGINE], into, whole=False)
    if target is None or not may_read(token, target.get("queue")):
        return _invalid("/into", "no request with this reference")
    outcome = await actions.merge(request.app[ENGINE], req["reference"], target["reference"],
                                  _agent(token))
    if outcome == "same":
        return _invalid("/into", "cannot merge a request into itself")
    if outcome == "merged":
        return problem(409, "Conflict", "this request is merged already")
    return json_response({"reference": req["reference"], "status": "merged",
                          "into": target["reference"]})


async def status_page(request: web.Request) -> web.Response:
    """The customer's view, by the unguessable token from their acknowledgement."""
    page = await actions.status_page(request.app[ENGINE], request.match_info["token"])
    if page is None:
        return problem(404, "Not Found", "no request for this status link")
    return json_response(page, headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/queues", list_queues)
    app.router.add_get("/v1/queues/{queue}/requests", queue_requests)
    app.router.add_post("/v1/queues/{queue}/claim", claim)
    app.router.add_put("/v1/requests/{reference}/lease", renew_lease)
    app.router.add_delete("/v1/requests/{reference}/lease", release_lease)
    app.router.add_patch("/v1/requests/{reference}", update_request)
    app.router.add_post("/v1/requests/{reference}/notes", add_note)
    app.router.add_post("/v1/requests/{reference}/replies", add_reply)
    app.router.add_post("/v1/requests/{reference}/escalate", escalate)
    app.router.add_post("/v1/requests/{reference}/merge", merge)
    app.router.add_get("/v1/requests/{reference}/attachments/{attachment_id}",
                       download_attachment)
    app.router.add_get("/v1/status/{token}", status_page)
