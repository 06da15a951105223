"""The agents' API: actions on requests and their attachments (the customer's
status page is in status_page.py).

Every action goes through one check (access.py): the token's scope over the
request's queue and over any queue or request the action reaches, and the
version it applies to (If-Match required for PATCH and for escalate with a
queue; checked wherever it is sent; every change is a compare-and-set on the
version authorised). Work from queues (claims, leases) is in queues.py.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from domain.lifecycle import EventKind, Outcome, Status
from gateway.delivery.outbound import agent_reply
from gateway.http import queues, replies, status_page
from gateway.http.access import Acting, Changed, authorise, etag, not_found
from gateway.http.audit import audited
from gateway.http.auth import actor
from gateway.http.bodies import AdminChanges, AgentChanges, Escalation, Merge, Note, Reply
from gateway.http.problems import Problem, invalid
from gateway.http.shared import (
    CONFIG,
    ENGINE,
    RULES,
    json_response,
    send_stored_file,
    small_int,
)
from gateway.http.validation import json_object, parse, read
from storage import actions
from storage.retention import DROPPED_SHA256

MAX_NOTE = 100_000


def _version(outcome: actions.Updated) -> int:
    """The request's new version once a change went through; `Changed` if it had
    moved on (perform() reads it again, or answers 412 under a pinned If-Match)."""
    if outcome.outcome == Outcome.MISSING:
        raise not_found()
    if outcome.outcome == Outcome.STALE:
        raise Changed
    assert outcome.version is not None
    return outcome.version


def configured_queues(request: web.Request) -> list[str]:
    """Every queue a request may be moved to (scope is checked as a hand-off)."""
    return [q.name for q in request.app[CONFIG].queue]


def _versioned(reference: str, version: int) -> web.Response:
    return json_response({"reference": reference, "version": version},
                         headers={"ETag": etag(version)})


async def update_request(request: web.Request) -> web.Response:
    acting = await authorise(request)
    acting.require_if_match()
    body = await json_object(request)
    model = AdminChanges if acting.token.role == "admin" else AgentChanges
    changes = parse(model, body, queues=configured_queues(request)).changes(body)
    if not changes:
        raise invalid("", "name at least one field to change")
    acting.check_hand_off(request, changes.get("queue"))

    async def attempt(now: Acting) -> int:
        return _version(await actions.update_fields(
            request.app[ENGINE], now.reference, now.version, changes, actor(now.token),
            audit=audited(request, now.token)))

    return _versioned(acting.reference, await acting.perform(request, attempt))


async def add_note(request: web.Request) -> web.Response:
    acting = await authorise(request)
    note = await read(request, Note)

    async def attempt(now: Acting) -> int:
        return _version(await actions.add_event(
            request.app[ENGINE], now.reference, EventKind.NOTE, actor(now.token),
            {"body": note.body[:MAX_NOTE]}, expected_version=now.version))

    await acting.perform(request, attempt)
    return json_response({"reference": acting.reference}, status=201)


async def add_reply(request: web.Request) -> web.Response:
    acting = await authorise(request, whole=True)  # threads on the messages
    reply = await read(request, Reply)
    # Copies, files, HTML, a canned response and the agent's name (replies.py).
    found = await replies.parts(request, acting, reply)

    async def attempt(now: Acting) -> tuple[str, int]:
        message = replies.finish(agent_reply(request.app[CONFIG], now.request, found.text),
                                 found)
        version = _version(await actions.add_reply(
            request.app[ENGINE], now.reference, message, actor(now.token),
            status=reply.status, expected_version=now.version))
        return str(message.message_id), version

    message_id, version = await acting.perform(request, attempt)
    return json_response({"reference": acting.reference, "message_id": message_id,
                          "version": version}, status=201, headers={"ETag": etag(version)})


async def escalate(request: web.Request) -> web.Response:
    acting = await authorise(request)
    # A configured queue; one out of scope is a hand-off, as for PATCH.
    asked = await read(request, Escalation, queues=configured_queues(request))
    acting.check_hand_off(request, asked.queue)
    if asked.queue is not None:
        acting.require_if_match()  # a move is a field the client chose: as PATCH

    async def attempt(now: Acting) -> int:
        # One level up from the version authorised: two escalations at once are
        # two levels, never one computed from a level the other overwrote.
        changes: dict[str, Any] = {"escalation_level": int(now.request["escalation_level"]) + 1}
        if asked.queue is not None:
            changes["queue"] = asked.queue
        return _version(await actions.update_fields(
            request.app[ENGINE], now.reference, now.version, changes, actor(now.token),
            kind=EventKind.ESCALATED, note={"reason": asked.reason, "by": "hand"},
            audit=audited(request, now.token)))

    return _versioned(acting.reference, await acting.perform(request, attempt))


async def merge(request: web.Request) -> web.Response:
    acting = await authorise(request)
    into = (await read(request, Merge)).into
    # The queues in force (they reload): a finished target's reopen window.
    windows = {q.name: q.reopen_days for q in request.app[RULES].config.queue}

    async def attempt(now: Acting) -> tuple[str, Outcome]:
        # The request merged into is in this token's scope too, read afresh each try.
        target = await now.merge_target(request, into)
        outcome = await actions.merge(request.app[ENGINE], now.reference,
                                      target["reference"], actor(now.token),
                                      expected_version=now.version,
                                      into_version=int(target["version"]),
                                      reopen_days=windows,
                                      audit=audited(request, now.token))
        if outcome == Outcome.SAME:
            raise invalid("/into", "cannot merge a request into itself")
        if outcome == Outcome.MERGED:
            raise Problem(409, "this request is merged already")
        if outcome == Outcome.MISSING:
            raise not_found()
        if outcome == Outcome.STALE:
            raise Changed
        return str(target["reference"]), outcome

    target, outcome = await acting.perform(request, attempt)
    if outcome == Outcome.LINKED:
        # Finished longer ago than its reopen window: this request stays open work,
        # following up the old one (as a customer's late reply would).
        return json_response({"reference": acting.reference, "merged": False,
                              "linked_from": target})
    return json_response({"reference": acting.reference, "status": Status.MERGED,
                          "into": target, "merged": True})


async def download_attachment(request: web.Request) -> web.StreamResponse:
    acting = await authorise(request, act=False)
    raw_id = request.match_info["attachment_id"]
    number = small_int(raw_id)
    item = None if number is None else await actions.attachment(
        request.app[ENGINE], acting.reference, number)
    if item is None:
        raise Problem(404, "no such attachment on this request")
    if item["sha256"] == DROPPED_SHA256:
        # Its name, type and size are still listed; the content is gone.
        raise Problem(404, "this attachment's content was removed by the retention policy")
    return await send_stored_file(request, item, fallback=f"attachment-{number}")


def add_routes(app: web.Application) -> None:
    queues.add_routes(app)
    app.router.add_patch("/v1/requests/{reference}", update_request)
    app.router.add_post("/v1/requests/{reference}/notes", add_note)
    app.router.add_post("/v1/requests/{reference}/replies", add_reply)
    app.router.add_post("/v1/requests/{reference}/escalate", escalate)
    app.router.add_post("/v1/requests/{reference}/merge", merge)
    app.router.add_get("/v1/requests/{reference}/attachments/{attachment_id}",
                       download_attachment)
    status_page.add_routes(app)  # the customer's page: /v1/status/{token}
