"""HTTP API (aiohttp): intake by POST, reads by reference or Message-ID.

Errors are problem documents (RFC 9457). A storage fault answers 503 with
Retry-After; 201 is sent only after the request body is committed.
"""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import agent_api, forms, openapi
from gateway.config import Config
from gateway.limits import Buckets, rate_limit_middleware
from gateway.rules import RulesHolder
from gateway.service_levels import describe
from gateway.signals import WorkSignals
from gateway.web import (
    CONFIG,
    ENGINE,
    RULES,
    SIGNALS,
    TOKENS,
    WRITER,
    TokenCache,
    authorised,
    forbidden,
    json_response,
    may_read,
    problem,
    problems_middleware,
    request_url,
    small_int,
    token_of,
    unauthorised,
    unavailable,
)
from parsers.api_request import parse_api_request
from storage import actions, queries
from storage.engine import utcnow
from storage.errors import IdempotencyConflict
from storage.inbox import Accepted, InboxWriter, NewItem
from storage.outbox import dead_rows, discard_dead, retry_dead
from storage.processing import dead_items, requeue_dead
from storage.tokens import ROLES, TokenInfo, create_token, list_tokens, revoke_token

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


async def rules_status(request: web.Request) -> web.Response:
    """The rules in force and how the last reload went (admin)."""
    token = await authorised(request, ("admin",))
    if isinstance(token, web.Response):
        return token
    return json_response(request.app[RULES].status())


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


async def _admin(request: web.Request) -> TokenInfo | web.Response:
    return await authorised(request, ("admin",))


async def create_api_token(request: web.Request) -> web.Response:
    token = await _admin(request)
    if isinstance(token, web.Response):
        return token
    try:
        body = await request.json()
    except ValueError:
        return problem(400, "Bad Request", "body is not valid JSON")
    if not isinstance(body, dict):
        return problem(422, "Unprocessable Content", "body must be a JSON object")
    role, queues, name = body.get("role"), body.get("queues", []), body.get("name", "")
    known = {q.name for q in request.app[CONFIG].queue}
    problems = []
    if role not in ROLES:
        problems.append({"pointer": "/role", "detail": f"must be one of {', '.join(ROLES)}"})
    if not isinstance(queues, list) or not all(isinstance(q, str) and q in known
                                               for q in queues):
        problems.append({"pointer": "/queues", "detail": "must be a list of known queues"})
    if not isinstance(name, str) or len(name) > 100 or "\x00" in name:
        problems.append({"pointer": "/name", "detail": "must be text of at most 100 characters"})
    unknown = sorted(set(body) - {"role", "queues", "name"})
    problems += [{"pointer": f"/{k}", "detail": "is not a known field"} for k in unknown]
    if problems:
        return problem(422, "Unprocessable Content", "the token request has invalid fields",
                       errors=problems)
    info, secret = await create_token(request.app[ENGINE], name=name or role, role=role,
                                      queues=queues)
    return json_response({"id": info.id, "name": info.name, "role": info.role,
                          "queues": list(info.queues), "token": secret}, status=201)


async def list_api_tokens(request: web.Request) -> web.Response:
    token = await _admin(request)
    if isinstance(token, web.Response):
        return token
    return json_response({"items": await list_tokens(request.app[ENGINE])})


async def revoke_api_token(request: web.Request) -> web.Response:
    token = await _admin(request)
    if isinstance(token, web.Response):
        return token
    number = small_int(request.match_info["token_id"])
    if number is None or not await revoke_token(request.app[ENGINE], number):
        return problem(404, "Not Found", "no active token with this id")
    request.app[TOKENS].forget()
    return web.Response(status=204)


async def list_dead_letters(request: web.Request) -> web.Response:
    token = await _admin(request)
    if isinstance(token, web.Response):
        return token
    engine = request.app[ENGINE]
    inbox = [row | {"item": f"inbox:{row['id']}"} for row in await dead_items(engine)]
    outbox = [row | {"item": f"outbox:{row['id']}"} for row in await dead_rows(engine)]
    return json_response({"inbox": inbox, "outbox": outbox})


def _dead_letter(request: web.Request) -> tuple[str, int] | web.Response:
    kind, number = request.match_info["kind"], small_int(request.match_info["item_id"])
    if kind not in ("inbox", "outbox") or number is None:
        return problem(404, "Not Found", "no dead letter with this id")
    return kind, number


async def retry_dead_letter(request: web.Request) -> web.Response:
    token = await _admin(request)
    if isinstance(token, web.Response):
        return token
    found = _dead_letter(request)
    if isinstance(found, web.Response):
        return found
    kind, number = found
    engine = request.app[ENGINE]
    count = (await requeue_dead(engine, [number]) if kind == "inbox"
             else await retry_dead(engine, [number]))
    if not count:
        return problem(404, "Not Found", "no dead letter with this id")
    return json_response({"item": f"{kind}:{number}", "state": "pending"})


async def discard_dead_letter(request: web.Request) -> web.Response:
    token = await _admin(request)
    if isinstance(token, web.Response):
        return token
    found = _dead_letter(request)
    if isinstance(found, web.Response):
        return found
    kind, number = found
    if kind == "inbox":
        return problem(409, "Conflict", "inbox items are kept (raw input is never dropped); "
                                        "retry them once the cause is fixed")
    if not await discard_dead(request.app[ENGINE], [number]):
        return problem(404, "Not Found", "no dead letter with this id")
    return web.Response(status=204)


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    try:
        await queries.ping(request.app[ENGINE])
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        return unavailable(f"database unreachable: {type(exc).__name__}")
    return json_response({"status": "ready"})


def build_app(config: Config, engine: AsyncEngine, writer: InboxWriter,
              rules: RulesHolder, signals: WorkSignals | None = None) -> web.Application:
    per_token = Buckets(config.http.rate_limit_per_token, config.http.rate_limit_burst)
    per_address = Buckets(config.http.rate_limit_per_address, config.http.rate_limit_burst)
    app = web.Application(
        middlewares=[problems_middleware, rate_limit_middleware(per_token, per_address)],
        client_max_size=config.http.max_body_bytes)
    app[CONFIG] = config
    app[ENGINE] = engine
    app[WRITER] = writer
    app[TOKENS] = TokenCache(engine)
    app[RULES] = rules
    app[SIGNALS] = signals or WorkSignals()
    app.router.add_post("/v1/requests", create_request)
    app.router.add_get("/v1/requests", list_requests)
    app.router.add_get("/v1/requests/{reference}", get_request)
    app.router.add_get("/v1/admin/rules", rules_status)
    app.router.add_post("/v1/admin/tokens", create_api_token)
    app.router.add_get("/v1/admin/tokens", list_api_tokens)
    app.router.add_delete("/v1/admin/tokens/{token_id}", revoke_api_token)
    app.router.add_get("/v1/admin/dead-letters", list_dead_letters)
    app.router.add_post("/v1/admin/dead-letters/{kind}/{item_id}/retry", retry_dead_letter)
    app.router.add_delete("/v1/admin/dead-letters/{kind}/{item_id}", discard_dead_letter)
    app.router.add_get("/v1/quarantine", list_quarantined)
    app.router.add_post("/v1/quarantine/{reference}/release", release_quarantined)
    agent_api.add_routes(app)
    forms.add_routes(app)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/v1/openapi.json", openapi.serve)
    return app
