"""The admin API: the rules in force, API tokens and dead letters."""

from __future__ import annotations

from aiohttp import web

from gateway.http.shared import (
    CONFIG,
    ENGINE,
    RULES,
    TOKENS,
    authorised,
    json_response,
    problem,
    small_int,
)
from storage.outbox import dead_rows, discard_dead, retry_dead
from storage.processing import dead_items, requeue_dead
from storage.tokens import ROLES, TokenInfo, create_token, list_tokens, revoke_token


async def rules_status(request: web.Request) -> web.Response:
    """The rules in force and how the last reload went (admin)."""
    token = await authorised(request, ("admin",))
    if isinstance(token, web.Response):
        return token
    return json_response(request.app[RULES].status())


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
