"""Requests over HTTP: intake by POST, reads by reference or Message-ID, the
quarantine, and the health checks.

Errors are problem documents (RFC 9457). A storage fault answers 503 with
Retry-After; 201 is sent only after the request body is committed.
"""

from __future__ import annotations

from aiohttp import web

from domain.errors import GatewayError
from domain.lifecycle import Status
from gateway import logs, metrics
from gateway.health import HEALTH_KEY
from gateway.http import listing, people, queues
from gateway.http.access import Acting, Changed, authorise, etag
from gateway.http.audit import audited
from gateway.http.auth import (
    STAFF,
    actor,
    ensure_role,
    may_read,
    require_role,
    require_token,
    token_of,
    unauthorised,
)
from gateway.http.problems import RETRY_AFTER_SECONDS, ParameterProblem, Problem
from gateway.http.shared import CONFIG, ENGINE, RULES, WRITER, json_response, request_url
from gateway.pipeline.service_levels import describe
from parsers.api_request import parse_api_request
from storage import actions, queries
from storage.engine import utcnow
from storage.errors import IdempotencyConflict
from storage.inbox import Accepted, NewItem
from storage.tokens import TokenInfo

MAX_IDEMPOTENCY_KEY = 200


async def create_request(request: web.Request) -> web.Response:
    """POST /v1/requests, with its one item line: accepted, or refused and why."""
    try:
        response = await _create_request(request)
    except (Problem, web.HTTPException) as refused:
        logs.item("refused", reference=None, channel="api", outcome=str(refused.status))
        metrics.intake("api").answered(refused.status)
        raise
    except GatewayError as exc:
        logs.item("refused", reference=None, channel="api",
                  outcome="503" if exc.temporary else "refused")
        metrics.intake("api").answered(503 if exc.temporary else 0)
        raise
    return response


async def _create_request(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    token = await token_of(request)
    if token is None and not config.http.open_intake:
        raise unauthorised()
    if request.content_length is not None and request.content_length > config.http.max_body_bytes:
        raise Problem(413, f"the body must be at most {config.http.max_body_bytes} bytes")
    body = await request.read()  # aiohttp enforces client_max_size while reading
    parsed = parse_api_request(body)
    if isinstance(parsed, list):
        raise Problem(422, "the request body has invalid fields", errors=parsed)
    item = NewItem("api", body, {
        "content_type": request.content_type,
        "remote": request.remote,
        "token_id": token.id if token else None,
        "user_agent": request.headers.get("User-Agent"),
    })
    key = request.headers.get("Idempotency-Key")
    accepted = await (_submit(request, item) if key is None
                      else _submit_once(request, item, token, key))
    url = request_url(request, accepted.reference)
    logs.item("accepted", reference=accepted.reference, channel="api",
              outcome="replayed" if accepted.replayed else "201")
    metrics.intake("api").accepted(len(body), replayed=accepted.replayed)
    headers = {"Location": url} | ({"Idempotent-Replayed": "true"} if accepted.replayed else {})
    return json_response({"reference": accepted.reference, "url": url,
                          "status": Status.RECEIVED}, status=201, headers=headers)


async def _submit(request: web.Request, item: NewItem) -> Accepted:
    return await request.app[WRITER].submit(item)


async def _submit_once(request: web.Request, item: NewItem, token: TokenInfo | None,
                       key: str) -> Accepted:
    """Submit under an Idempotency-Key: the same key and body get the first answer."""
    # A structured-field string (RFC 8941 3.3.3): printable ASCII, which every
    # database column and log line takes as it is.
    if not (0 < len(key) <= MAX_IDEMPOTENCY_KEY and key.isascii() and key.isprintable()):
        raise Problem(400, f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable "
                           "ASCII characters")
    scope = f"{token.id if token else 'open'}:{key}"
    try:
        return await request.app[WRITER].submit_idempotent(item, scope)
    except IdempotencyConflict:
        # Mapped here, not in the middleware: the answer is about this header.
        raise Problem(422, "this Idempotency-Key was used with a different body") from None


async def get_request(request: web.Request) -> web.Response:
    found = (await authorise(request, act=False, whole=True)).request
    found["url"] = request_url(request, found["reference"])
    if "timeline" in found:  # who acted, by name: `actor_name`, `claimed_by_name`
        await people.name_actors(request, found["timeline"], "actor")
        await people.name_actors(request, [found], "claimed_by")
    if found.get("status") != Status.RECEIVED:
        found["sla"] = describe(found, request.app[RULES].sla, utcnow())
        for key in ("sla_pauses", "sla_paused_at"):
            found.pop(key, None)
    token_value = found.pop("status_token", None)
    if token_value:
        found["status_url"] = f"{request.app[CONFIG].public_url}/v1/status/{token_value}"
    headers = {"ETag": etag(found["version"])} if "version" in found else {}
    if "input_reference" in found:
        # An email that joined another request as a reply: this is that request.
        headers["Content-Location"] = found["url"]
    return json_response(found, headers=headers or None)


async def list_requests(request: web.Request) -> web.Response:
    """By the Message-ID of an email, or a search (`text` and the listing's
    filters) across every queue the token sees, in any status unless asked."""
    token = await require_token(request)
    if "message_id" not in request.query:
        asked = listing.check_query(request.query, (*listing.PAGING, *listing.FILTERS))
        if "text" not in asked:
            raise Problem(400, "query parameter message_id or text is required",
                          errors=[ParameterProblem("message_id", "is required without text"),
                                  ParameterProblem("text", "is required without message_id")])
        ensure_role(token, STAFF)
        return await queues.page(request, queues.visible_queues(request, token), asked, token,
                                 workable_by_default=False)
    message_id = listing.check_query(request.query, ("message_id",))["message_id"]
    if not message_id:
        raise Problem(400, "query parameter message_id is required",
                      errors=[ParameterProblem("message_id", "is required")])
    rows = await queries.find_by_message_id(request.app[ENGINE], message_id)
    visible = [r for r in rows if may_read(token, r["queue"])]
    for row in visible:
        row["url"] = request_url(request, row["reference"])
    return json_response({"items": visible})


async def list_quarantined(request: web.Request) -> web.Response:
    token = await require_role(request, STAFF)
    scope = list(token.queues) if token.role == "agent" and token.queues else None
    items = await actions.list_by_status(request.app[ENGINE], Status.QUARANTINED, scope)
    for row in items:
        row["url"] = request_url(request, row["reference"])
    return json_response({"items": items})


async def release_quarantined(request: web.Request) -> web.Response:
    acting = await authorise(request)

    async def attempt(now: Acting) -> str:
        if now.request["status"] != Status.QUARANTINED:
            raise Problem(409, f"request is {now.request['status']}, not {Status.QUARANTINED}")
        queue = await actions.release(request.app[ENGINE], now.reference, actor(now.token),
                                      expected_version=now.version,
                                      audit=audited(request, now.token))
        if queue is None:
            raise Changed  # held at the version read, changed since: read it again
        return queue

    queue = await acting.perform(request, attempt)
    return json_response({"reference": acting.reference, "status": Status.NEW,
                          "queue": queue})


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process and every background task (gateway/health.py says why)."""
    answer = request.app[HEALTH_KEY].live()
    if not answer.ok:
        raise Problem(503, answer.detail, extra=answer.body)
    return json_response({"status": "ok"} | answer.body)


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the inbox takes a write now and the inbox writer runs."""
    answer = await request.app[HEALTH_KEY].ready(request.app[ENGINE])
    if not answer.ok:
        raise Problem(503, answer.detail, extra=answer.body,
                      headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    return json_response({"status": "ready"} | answer.body)
