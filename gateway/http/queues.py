"""Work from queues: the overview, a page of a queue, claims with leases.

An agent token scoped to queues sees only those; any other queue answers 404,
exactly like one that does not exist. A claim may long-poll (`wait`) and is
woken by new work in this process or another.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway import metrics
from gateway.http import listing, people
from gateway.http.access import authorise
from gateway.http.auth import STAFF, actor, require_role, require_token
from gateway.http.bodies import Claim, Lease
from gateway.http.problems import Problem, bad_parameter
from gateway.http.shared import CONFIG, ENGINE, SIGNALS, json_response, request_url
from gateway.http.validation import read
from storage import claims
from storage.tokens import TokenInfo


def visible_queues(request: web.Request, token: TokenInfo) -> list[str]:
    names = [q.name for q in request.app[CONFIG].queue]
    if token.role == "admin" or not token.queues:
        return names
    return [n for n in names if n in token.queues]


async def _queue(request: web.Request) -> tuple[TokenInfo, str]:
    """The caller's token and the queue the path names, if the token may work it."""
    token = await require_token(request)
    queue = request.match_info["queue"]
    if token.role not in STAFF or queue not in visible_queues(request, token):
        raise Problem(404, "no queue with this name")
    return token, queue


async def list_queues(request: web.Request) -> web.Response:
    token = await require_role(request, STAFF)
    overview = await claims.queue_overview(request.app[ENGINE], visible_queues(request, token))
    return json_response({"items": overview})


async def queue_requests(request: web.Request) -> web.Response:
    token, queue = await _queue(request)
    asked = listing.check_query(request.query, (*listing.PAGING, *listing.FILTERS))
    return await page(request, [queue], asked, token, workable_by_default=True)


async def page(request: web.Request, queues: list[str], asked: dict[str, str],
               token: TokenInfo, *, workable_by_default: bool) -> web.Response:
    """One page of the requests in `queues` that the checked query asks for."""
    limit = listing.page_size(asked.get("limit"))
    wanted = listing.filters(asked, me=actor(token))
    try:
        items, cursor = await claims.list_requests(
            request.app[ENGINE], queues, filters=wanted, limit=limit,
            cursor=asked.get("cursor"), workable_by_default=workable_by_default)
    except ValueError as exc:  # a cursor this server did not give out
        raise bad_parameter("cursor", str(exc)) from None
    for item in items:
        item["url"] = request_url(request, item["reference"])
    await people.name_actors(request, items, "claimed_by")
    return json_response({"items": items, "next_cursor": cursor})


async def claim(request: web.Request) -> web.Response:
    """Take up to `limit` requests for `lease_seconds`; with `wait`, long-poll for work."""
    token, queue = await _queue(request)
    asked = await read(request, Claim)
    signals = request.app[SIGNALS]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + asked.wait
    while True:
        got = await claims.claim(request.app[ENGINE], queue, actor(token), limit=asked.limit,
                                 lease_seconds=asked.lease_seconds)
        remaining = deadline - loop.time()
        if got or remaining <= 0:
            metrics.DESK.claimed(queue, len(got))
            break
        # Woken by new work here or in another process; a lease running out
        # elsewhere sends no signal, so look again every few seconds anyway.
        await signals.wait(queue, min(remaining, 5.0))
    return json_response({"items": [{
        "reference": c.reference, "queue": c.queue, "subject": c.subject,
        "priority": c.priority, "lease_until": c.claim_until,
        "url": request_url(request, c.reference)} for c in got]})


async def renew_lease(request: web.Request) -> web.Response:
    # The lease is its own compare-and-set (only its holder, only while it runs).
    acting = await authorise(request)
    asked = await read(request, Lease)
    acting.check_if_match()
    until = await claims.renew(request.app[ENGINE], acting.reference, actor(acting.token),
                               asked.lease_seconds)
    if until is None:
        raise Problem(409, "you hold no lease on this request (it may have run out)")
    return json_response({"reference": acting.reference, "lease_until": until})


async def release_lease(request: web.Request) -> web.Response:
    acting = await authorise(request)
    acting.check_if_match()
    if not await claims.release(request.app[ENGINE], acting.reference, actor(acting.token)):
        raise Problem(409, "you hold no lease on this request")
    request.app[SIGNALS].signal(acting.request["queue"])
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/queues", list_queues)
    app.router.add_get("/v1/queues/{queue}/requests", queue_requests)
    app.router.add_post("/v1/queues/{queue}/claim", claim)
    app.router.add_put("/v1/requests/{reference}/lease", renew_lease)
    app.router.add_delete("/v1/requests/{reference}/lease", release_lease)
