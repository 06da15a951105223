"""The admin API: the rules in force, API tokens, dead letters and the health report."""

from __future__ import annotations

from aiohttp import web

from gateway.health import HEALTH_KEY
from gateway.health_report import Reporter
from gateway.http.audit import audited
from gateway.http.auth import ADMINS, TOKENS, require_role
from gateway.http.bodies import NewToken
from gateway.http.problems import Problem
from gateway.http.shared import CONFIG, ENGINE, RULES, json_response, small_int
from gateway.http.validation import json_object, parse_all
from storage.outbox import dead_rows, discard_dead, retry_dead
from storage.processing import dead_items, requeue_dead
from storage.tokens import create_token, list_tokens, revoke_token

DEAD_KINDS = ("inbox", "outbox")
# This app's health reports (gateway/health_report.py), each kept a few seconds.
REPORTER = web.AppKey("health_reporter", Reporter)


async def rules_status(request: web.Request) -> web.Response:
    """The rules in force and how the last reload went (admin)."""
    await require_role(request, ADMINS)
    return json_response(request.app[RULES].status())


async def health_report(request: web.Request) -> web.Response:
    """What is wrong, with codes and the Nagios exit code (admin); always 200: the
    report is the answer, /readyz is the load balancer's check."""
    await require_role(request, ADMINS)
    supervisor = request.app[HEALTH_KEY].supervisor
    report = await request.app[REPORTER].report(
        config=request.app[CONFIG], engine=request.app[ENGINE],
        tasks=supervisor.report() if supervisor is not None else (),
        rules_status=request.app[RULES].status())
    return json_response(report.to_dict())


async def _token_request(request: web.Request) -> NewToken:
    body = await json_object(request)
    return parse_all(NewToken, body, summary="the token request has invalid fields",
                     queues=[q.name for q in request.app[CONFIG].queue])


async def create_api_token(request: web.Request) -> web.Response:
    token = await require_role(request, ADMINS)
    new = await _token_request(request)
    info, secret = await create_token(request.app[ENGINE], name=new.name or new.role,
                                      role=new.role, queues=list(new.queues),
                                      may_hand_off=new.may_hand_off,
                                      audit=audited(request, token))
    return json_response({"id": info.id, "name": info.name, "role": info.role,
                          "queues": list(info.queues), "may_hand_off": info.may_hand_off,
                          "agent_id": None, "token": secret}, status=201)


async def list_api_tokens(request: web.Request) -> web.Response:
    await require_role(request, ADMINS)
    return json_response({"items": await list_tokens(request.app[ENGINE])})


async def revoke_api_token(request: web.Request) -> web.Response:
    token = await require_role(request, ADMINS)
    number = small_int(request.match_info["token_id"])
    if number is None or not await revoke_token(request.app[ENGINE], number,
                                                 audit=audited(request, token)):
        raise Problem(404, "no active token with this id")
    request.app[TOKENS].forget()
    return web.Response(status=204)


async def list_dead_letters(request: web.Request) -> web.Response:
    await require_role(request, ADMINS)
    engine = request.app[ENGINE]
    inbox = [row | {"item": f"inbox:{row['id']}"} for row in await dead_items(engine)]
    outbox = [row | {"item": f"outbox:{row['id']}"} for row in await dead_rows(engine)]
    return json_response({"inbox": inbox, "outbox": outbox})


def _no_dead_letter() -> Problem:
    return Problem(404, "no dead letter with this id")


def _dead_letter(request: web.Request) -> tuple[str, int]:
    """The dead letter the path names: its kind and id."""
    kind, number = request.match_info["kind"], small_int(request.match_info["item_id"])
    if kind not in DEAD_KINDS or number is None:
        raise _no_dead_letter()
    return kind, number


async def retry_dead_letter(request: web.Request) -> web.Response:
    token = await require_role(request, ADMINS)
    kind, number = _dead_letter(request)
    engine, audit = request.app[ENGINE], audited(request, token)
    count = (await requeue_dead(engine, [number], audit=audit) if kind == "inbox"
             else await retry_dead(engine, [number], audit=audit))
    if not count:
        raise _no_dead_letter()
    return json_response({"item": f"{kind}:{number}", "state": "pending"})


async def discard_dead_letter(request: web.Request) -> web.Response:
    token = await require_role(request, ADMINS)
    kind, number = _dead_letter(request)
    if kind == "inbox":
        raise Problem(409, "inbox items are kept (raw input is never dropped); "
                           "retry them once the cause is fixed")
    if not await discard_dead(request.app[ENGINE], [number], audit=audited(request, token)):
        raise _no_dead_letter()
    return web.Response(status=204)
