"""The admin API for agents as people: who they are (name, email), the queues
they work, whether they are active, and the tokens they act with.

A token issued for an agent acts as `agent:<id>` (the timeline names the
person; all of one person's tokens share their claims), sees the agent's
queues as they are now, and stops working when the agent is made inactive
(within the token cache's few seconds; at once in this process).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from domain.errors import Conflict
from gateway.http import listing
from gateway.http.audit import audited
from gateway.http.auth import ADMINS, TOKENS, require_role
from gateway.http.bodies import AgentUpdate, NewAgent, NewAgentToken
from gateway.http.problems import Problem, invalid
from gateway.http.shared import CONFIG, ENGINE, json_response, small_int
from gateway.http.validation import json_object, parse, parse_all
from parsers.addresses import AddressError, parse_address
from storage import agents
from storage.tokens import create_token


def _agent_of(actor: object) -> int | None:
    if isinstance(actor, str) and actor.startswith("agent:") and actor[6:].isdigit():
        return int(actor[6:])
    return None


async def name_actors(request: web.Request, entries: list[dict[str, Any]], key: str) -> None:
    """Beside each entry's `key` (an actor such as `agent:3`), the agent's name as
    `<key>_name` (null for a bare token, the system, a rule, ...)."""
    ids = {i for i in (_agent_of(e.get(key)) for e in entries) if i is not None}
    names = await agents.agent_names(request.app[ENGINE], ids)
    for entry in entries:
        number = _agent_of(entry.get(key))
        entry[f"{key}_name"] = names.get(number) if number is not None else None


def _queues(request: web.Request) -> list[str]:
    return [q.name for q in request.app[CONFIG].queue]


def _email(text: str) -> str:
    """The agent's address as one checked addr-spec (it may be written to)."""
    try:
        return parse_address(text).addr_spec
    except AddressError as exc:
        raise invalid("/email", exc.reason) from None


def _agent_id(request: web.Request) -> int:
    number = small_int(request.match_info["agent_id"])
    if number is None:
        raise _missing()
    return number


def _missing() -> Problem:
    return Problem(404, "no agent with this id")


def _taken() -> Problem:
    return Problem(409, "another agent has this email")


async def create_agent(request: web.Request) -> web.Response:
    token = await require_role(request, ADMINS)
    new = parse_all(NewAgent, await json_object(request),
                    summary="the agent has invalid fields", queues=_queues(request))
    made = await agents.create_agent(request.app[ENGINE], name=new.name.strip(),
                                     email=_email(new.email), queues=list(new.queues),
                                     active=new.active, quiet_hours=new.quiet_hours,
                                     digest_minutes=new.digest_minutes,
                                     audit=audited(request, token))
    if made is None:
        raise _taken()
    return json_response(made, status=201)


async def list_agents(request: web.Request) -> web.Response:
    await require_role(request, ADMINS)
    listing.check_query(request.query, ())
    return json_response({"items": await agents.list_agents(request.app[ENGINE])})


async def get_agent(request: web.Request) -> web.Response:
    await require_role(request, ADMINS)
    found = await agents.get_agent(request.app[ENGINE], _agent_id(request))
    if found is None:
        raise _missing()
    return json_response(found)


async def update_agent(request: web.Request) -> web.Response:
    token = await require_role(request, ADMINS)
    number = _agent_id(request)
    body = await json_object(request)
    changes: dict[str, Any] = parse(AgentUpdate, body, queues=_queues(request)
                                    ).model_dump(exclude_unset=True)
    if not changes:
        raise invalid("", "name at least one field to change")
    if "email" in changes:
        changes["email"] = _email(changes["email"])
    if "name" in changes:
        changes["name"] = changes["name"].strip()
    try:
        found = await agents.update_agent(request.app[ENGINE], number, changes,
                                          audit=audited(request, token))
    except Conflict:
        raise _taken() from None
    if found is None:
        raise _missing()
    request.app[TOKENS].forget()  # scope and activity change at once here
    return json_response(found)


async def create_agent_token(request: web.Request) -> web.Response:
    token = await require_role(request, ADMINS)
    number = _agent_id(request)
    new = parse_all(NewAgentToken, await json_object(request),
                    summary="the token request has invalid fields")
    agent = await agents.get_agent(request.app[ENGINE], number)
    if agent is None:
        raise _missing()
    if not agent["active"]:
        raise Problem(409, "this agent is inactive: make them active first")
    info, secret = await create_token(request.app[ENGINE], name=new.name or agent["name"],
                                      role="agent", queues=[], may_hand_off=new.may_hand_off,
                                      agent_id=number, audit=audited(request, token))
    return json_response({"id": info.id, "name": info.name, "role": info.role,
                          "queues": agent["queues"], "may_hand_off": info.may_hand_off,
                          "agent_id": number, "token": secret}, status=201)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/admin/agents", create_agent)
    app.router.add_get("/v1/admin/agents", list_agents)
    app.router.add_get("/v1/admin/agents/{agent_id}", get_agent)
    app.router.add_patch("/v1/admin/agents/{agent_id}", update_agent)
    app.router.add_post("/v1/admin/agents/{agent_id}/tokens", create_agent_token)
