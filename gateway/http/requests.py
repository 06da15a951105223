"""Requests over HTTP: intake by POST, reads by reference or Message-ID, the
quarantine, and the health checks.

Errors are problem documents (RFC 9457). A storage fault answers 503 with
Retry-After; 201 is sent only after the request body is committed.
"""

from __future__ import annotations

from aiohttp import web

from gateway.http.shared import (
    CONFIG,
    ENGINE,
    RULES,
    WRITER,
    authorised,
    forbidden,
    json_response,
    may_read,
    problem,
    request_url,
    token_of,
    unauthorised,
    unavailable,
)
from gateway.pipeline.service_levels import describe
from parsers.api_request import parse_api_request
from storage import actions, queries
from storage.engine import utcnow
from storage.errors import IdempotencyConflict
from storage.inbox import Accepted, NewItem

MAX_IDEMPOTENCY_KEY = 200


async def create_request(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    token = await token_of(request)
    if token is None and not config.http.open_intake:
        return unauthorised()
    if request.content_length is not None and request.content_length > config.http.max_body_bytes:
        return problem(413, "Content Too Large",
                       f"the body must be at most {config.http.max_body_bytes} bytes")
    body = await request.read()  # aiohttp enforces client_max_size while reading
    parsed = parse_api_request(body)
    if isinstance(parsed, list):
        return problem(422, "Unprocessable Content", "the request body has invalid fields",
                       errors=[{"pointer": p.pointer, "detail": p.detail} for p in parsed])
    meta = {
        "content_type": request.content_type,
        "remote": request.remote,
        "token_id": token.id if token else None,
        "user_agent": request.headers.get("User-Agent"),
    }
    item = NewItem("api", body, meta)
    key = request.headers.get("Idempotency-Key")
    writer = request.app[WRITER]
    headers: dict[str, str] = {}
    if key is not None:
        if not key or len(key) > MAX_IDEMPOTENCY_KEY:
            return problem(400, "Bad Request",
                           f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
        scope = f"{token.id if token else 'open'}:{key}"
        try:
            accepted: Accepted = await writer.submit_idempotent(item, scope)
        except IdempotencyConflict:
            return problem(422, "Unprocessable Content",
                           "this Idempotency-Key was used with a different body")
        if accepted.replayed:
            headers["Idempotent-Replayed"] = "true"
    else:
        accepted = await writer.submit(item)
    url = request_url(request, accepted.reference)
    headers["Location"] = url
    return json_response({"reference": accepted.reference, "url": url, "status": "received"},
                         status=201, headers=headers)


async def get_request(request: web.Request) -> web.Response:
    token = await token_of(request)
    if token is None:
        return unauthorised()
    found = await queries.get_request(request.app[ENGINE], request.match_info["reference"])
    # Out of scope looks exactly like unknown: no leak of what exists.
    if found is None or not may_read(token, found.get("queue")):
        return problem(404, "Not Found", "no request with this reference")
    found["url"] = request_url(request, found["reference"])
    if found.get("status") != "received":
        found["sla"] = describe(found, request.app[RULES].sla, utcnow())
        for key in ("sla_pauses", "sla_paused_at"):
            found.pop(key, None)
    token_value = found.pop("status_token", None)
    if token_value:
        found["status_url"] = f"{request.app[CONFIG].public_url}/v1/status/{token_value}"
    headers = {"ETag": f'"v{found["version"]}"'} if "version" in found else None
    return json_response(found, headers=headers)


async def list_requests(request: web.Request) -> web.Response:
    token = await token_of(request)
    if token is None:
        return unauthorised()
    message_id = request.query.get("message_id")
    if not message_id:
        return problem(400, "Bad Request", "query parameter message_id is required",
                       errors=[{"parameter": "message_id", "detail": "is required"}])
    rows = await queries.find_by_message_id(request.app[ENGINE], message_id)
    visible = [r for r in rows if may_read(token, r["queue"])]
    for row in visible:
        row["url"] = request_url(request, row["reference"])
    return json_response({"items": visible})


async def list_quarantined(request: web.Request) -> web.Response:
    token = await authorised(request, ("admin", "agent"))
    if isinstance(token, web.Response):
        return token
    scope = list(token.queues) if token.role == "agent" and token.queues else None
    items = await actions.list_by_status(request.app[ENGINE], "quarantined", scope)
    for row in items:
        row["url"] = request_url(request, row["reference"])
    return json_response({"items": items})


async def release_quarantined(request: web.Request) -> web.Response:
    token = await token_of(request)
    if token is None:
        return unauthorised()
    engine = request.app[ENGINE]
    found = await queries.get_request(engine, request.match_info["reference"], whole=False)
    if found is None or not may_read(token, found.get("queue")):
        return problem(404, "Not Found", "no request with this reference")
    if token.role not in ("admin", "agent"):
        return forbidden()
    queue = await actions.release(engine, found["reference"], f"token:{token.id}")
    if queue is None:
        return problem(409, "Conflict", f"request is {found['status']}, not quarantined")
    return json_response({"reference": found["reference"], "status": "new", "queue": queue})


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    try:
        await queries.ping(request.app[ENGINE])
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        return unavailable(f"database unreachable: {type(exc).__name__}")
    return json_response({"status": "ready"})
