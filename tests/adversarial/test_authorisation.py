"""One authorisation and concurrency check for every action on a request, on both
databases: a token's queue scope covers the request's queue and any queue the
action would move it to (escalate, PATCH) or join it with (merge); If-Match is
required where the client chooses new field values (PATCH, escalate with a queue),
checked wherever it is sent, and every change applies only to the version that was
authorised.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Config
from gateway.pipeline.worker import Pipeline
from storage import queries
from storage.engine import insert_new, utcnow
from storage.models import attachments, blobs, events, messages, requests
from storage.tokens import create_token
from tests.helpers import AppClient, auth, make_config

CALLERS = ("none", "intake", "billing-agent", "general-agent", "keeper", "agent", "admin")
NEW = {"requester": {"email": "ann@example.com"}, "subject": "Printer", "body": "broken"}


@pytest.fixture
def config(db_url: str) -> Config:
    return make_config(db_url, http={"rate_limit_per_token": 100_000,
                                     "rate_limit_per_address": 100_000,
                                     "rate_limit_burst": 100_000})


@dataclass(frozen=True)
class Caller:
    secret: str | None
    actor: str | None

    def headers(self) -> dict[str, str]:
        return auth(self.secret) if self.secret else {}


@pytest.fixture
async def callers(engine: AsyncEngine, admin_token: str) -> dict[str, Caller]:
    found = {"none": Caller(None, None)}
    for name, role, queues in (("intake", "intake", []), ("billing-agent", "agent", ["billing"]),
                               ("general-agent", "agent", ["general"]),
                               ("keeper", "agent", ["general"]),
                               ("agent", "agent", []), ("admin", "admin", [])):
        # `keeper`: scoped to general like general-agent, but may not hand off.
        info, secret = await create_token(engine, name=name, role=role, queues=queues,
                                          may_hand_off=name != "keeper")
        found[name] = Caller(secret, f"token:{info.id}")
    return found


async def _create(http: AppClient, token: str, count: int) -> list[str]:
    refs = []
    for _ in range(count):
        async with http.post("/v1/requests", json=NEW, headers=auth(token)) as resp:
            assert resp.status == 201
            refs.append(str((await resp.json())["reference"]))
    return refs


async def _set(engine: AsyncEngine, reference: str, **values: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(update(requests).where(requests.c.reference == reference)
                           .values(values))


async def _read(engine: AsyncEngine, reference: str) -> dict[str, Any]:
    found = await queries.get_request(engine, reference)
    assert found is not None
    return found


async def _etag(engine: AsyncEngine, reference: str) -> str:
    return f'"v{(await _read(engine, reference))["version"]}"'


async def _attach(engine: AsyncEngine, reference: str) -> int:
    content = b"a file"
    sha = hashlib.sha256(content).hexdigest()
    async with engine.begin() as conn:
        message_id = (await conn.execute(
            select(messages.c.id).join(requests, requests.c.id == messages.c.request_id)
            .where(requests.c.reference == reference))).scalars().first()
        await conn.execute(insert_new(conn, blobs), {"sha256": sha, "size": len(content),
                                                     "content": content})
        row = await conn.execute(attachments.insert().returning(attachments.c.id), {
            "message_id": message_id, "sha256": sha, "filename": "a.txt",
            "content_type": "text/plain", "size": len(content), "content_id": None,
            "inline": False})
        return int(row.scalar_one())


@dataclass(frozen=True)
class Action:
    """One action on a fresh request in `general` (and, for merges, a target)."""

    name: str
    method: str
    path: str                 # {ref}, {target}, {attachment}
    body: dict[str, Any] | None
    if_match: bool            # send the current ETag
    expected: dict[str, int]  # by caller
    target_queue: str = "general"
    setup: str = ""           # "lease": the caller holds its lease; "quarantine": held


def _expect(*, ok: int, general: int | None = None, agent: int | None = None,
            admin: int | None = None, keeper: int | None = None) -> dict[str, int]:
    """None: 401; intake and the billing agent cannot see a request in general: 404.
    The keeper answers as the general agent unless told (hand-off differs)."""
    general_answer = ok if general is None else general
    return {"none": 401, "intake": 404, "billing-agent": 404,
            "general-agent": general_answer,
            "keeper": general_answer if keeper is None else keeper,
            "agent": ok if agent is None else agent, "admin": ok if admin is None else admin}


ACTIONS = [
    Action("read", "GET", "/v1/requests/{ref}", None, False, _expect(ok=200)),
    Action("download", "GET", "/v1/requests/{ref}/attachments/{attachment}", None, False,
           _expect(ok=200)),
    Action("patch", "PATCH", "/v1/requests/{ref}", {"priority": "P3"}, True, _expect(ok=200)),
    Action("patch without If-Match", "PATCH", "/v1/requests/{ref}", {"priority": "P3"}, False,
           _expect(ok=428)),
    # A queue out of scope is a hand-off: allowed by default, 403 without the permission.
    Action("patch into billing", "PATCH", "/v1/requests/{ref}", {"queue": "billing"}, True,
           _expect(ok=200, keeper=403)),
    Action("patch into an unknown queue", "PATCH", "/v1/requests/{ref}", {"queue": "nope"},
           True, _expect(ok=422)),
    Action("note", "POST", "/v1/requests/{ref}/notes", {"body": "n"}, False, _expect(ok=201)),
    Action("note, current If-Match", "POST", "/v1/requests/{ref}/notes", {"body": "n"}, True,
           _expect(ok=201)),
    Action("reply", "POST", "/v1/requests/{ref}/replies", {"body": "hello"}, False,
           _expect(ok=201)),
    Action("escalate", "POST", "/v1/requests/{ref}/escalate", {"reason": "r"}, False,
           _expect(ok=200)),
    Action("escalate into billing", "POST", "/v1/requests/{ref}/escalate",
           {"reason": "r", "queue": "billing"}, True, _expect(ok=200, keeper=403)),
    Action("escalate into billing without If-Match", "POST", "/v1/requests/{ref}/escalate",
           {"reason": "r", "queue": "billing"}, False, _expect(ok=428, keeper=403)),
    Action("escalate into an unknown queue", "POST", "/v1/requests/{ref}/escalate",
           {"reason": "r", "queue": "nope"}, True, _expect(ok=422)),
    Action("escalate within general without If-Match", "POST",
           "/v1/requests/{ref}/escalate", {"reason": "r", "queue": "general"}, False,
           _expect(ok=428)),
    Action("merge within general", "POST", "/v1/requests/{ref}/merge",
           {"into": "{target}"}, False, _expect(ok=200)),
    Action("merge into billing", "POST", "/v1/requests/{ref}/merge", {"into": "{target}"},
           False, _expect(ok=200, general=422), target_queue="billing"),
    Action("renew own lease", "PUT", "/v1/requests/{ref}/lease", {"lease_seconds": 60}, False,
           _expect(ok=200), setup="lease"),
    Action("release own lease", "DELETE", "/v1/requests/{ref}/lease", None, False,
           _expect(ok=204), setup="lease"),
    Action("renew without a lease", "PUT", "/v1/requests/{ref}/lease", {}, False,
           _expect(ok=409)),
    Action("release from quarantine", "POST", "/v1/quarantine/{ref}/release", None, False,
           _expect(ok=200), setup="quarantine"),
    Action("rotate the status link", "POST", "/v1/requests/{ref}/status-link/rotate", None,
           False, _expect(ok=200)),
]


def _cases() -> Iterator[tuple[Action, str]]:
    for action in ACTIONS:
        for caller in CALLERS:
            yield action, caller


async def test_authorisation__every_action_by_every_scope(
        app_client: AppClient, engine: AsyncEngine, pipeline: Pipeline, admin_token: str,
        callers: dict[str, Caller]) -> None:
    http = app_client
    cases = list(_cases())
    refs = await _create(http, admin_token, 2 * len(cases))
    await pipeline.drain()
    failures = []
    for index, (action, who) in enumerate(cases):
        ref, target = refs[2 * index], refs[2 * index + 1]
        caller = callers[who]
        if action.target_queue != "general":
            await _set(engine, target, queue=action.target_queue)
        if action.setup == "lease" and caller.actor:
            await _set(engine, ref, claimed_by=caller.actor,
                       claim_until=utcnow() + timedelta(minutes=5))
        if action.setup == "quarantine":
            await _set(engine, ref, status="quarantined")
        attachment = await _attach(engine, ref) if "{attachment}" in action.path else 0
        path = action.path.format(ref=ref, target=target, attachment=attachment)
        body = None if action.body is None else {
            k: (target if v == "{target}" else v) for k, v in action.body.items()}
        headers = caller.headers() | (
            {"If-Match": await _etag(engine, ref)} if action.if_match else {})
        async with http.request(action.method, path, json=body, headers=headers) as resp:
            if resp.status != action.expected[who]:
                failures.append(f"{action.name} by {who}: {resp.status} "
                                f"(expected {action.expected[who]}) {await resp.text()}")
            if resp.status >= 400:
                assert resp.content_type == "application/problem+json", (action.name, who)
        # A refused action changed nothing: same version, same queue.
        if resp.status >= 400:
            after = await _read(engine, ref)
            assert after["queue"] == "general", (action.name, who)
    assert failures == []


async def test_hand_off__unknown_queue_is_422_not_yours_is_403(
        app_client: AppClient, engine: AsyncEngine, pipeline: Pipeline, admin_token: str,
        callers: dict[str, Caller]) -> None:
    [ref] = await _create(app_client, admin_token, 1)
    await pipeline.drain()
    keeper = callers["keeper"].headers()
    for headers in ({}, {"If-Match": await _etag(engine, ref)}):
        async with app_client.post(f"/v1/requests/{ref}/escalate",
                                   json={"reason": "not mine", "queue": "billing"},
                                   headers=keeper | headers) as resp:
            assert resp.status == 403
            problem = await resp.json()
            assert [e["pointer"] for e in problem["errors"]] == ["/queue"]
        async with app_client.post(f"/v1/requests/{ref}/escalate",
                                   json={"reason": "typo", "queue": "biling"},
                                   headers=keeper | headers) as resp:
            assert resp.status == 422
            problem = await resp.json()
            assert [(e["pointer"], e["detail"]) for e in problem["errors"]] == [
                ("/queue", "is not a configured queue")]
    after = await _read(engine, ref)
    assert (after["queue"], after["escalation_level"]) == ("general", 0)
    assert "escalated" not in [e["kind"] for e in after["timeline"]]
    # PATCH answers the same way.
    for queue, status in (("billing", 403), ("biling", 422)):
        async with app_client.patch(f"/v1/requests/{ref}", json={"queue": queue},
                                    headers=keeper | {"If-Match": await _etag(engine, ref)}
                                    ) as resp:
            assert resp.status == status, queue
            assert [e["pointer"] for e in (await resp.json())["errors"]] == ["/queue"]
    assert (await _read(engine, ref))["queue"] == "general"


async def test_hand_off__scoped_agent_hands_a_claimed_request_to_another_team(
        app_client: AppClient, engine: AsyncEngine, pipeline: Pipeline, admin_token: str,
        callers: dict[str, Caller]) -> None:
    [ref] = await _create(app_client, admin_token, 1)
    await pipeline.drain()
    general = callers["general-agent"]
    async with app_client.post("/v1/queues/general/claim", json={"limit": 1},
                               headers=general.headers()) as resp:
        assert [c["reference"] for c in (await resp.json())["items"]] == [ref]
    async with app_client.post(f"/v1/requests/{ref}/escalate",
                               json={"reason": "a billing question", "queue": "billing"},
                               headers=general.headers() | {"If-Match": await _etag(engine, ref)}
                               ) as resp:
        assert resp.status == 200, await resp.text()
    after = await _read(engine, ref)
    # In billing, nobody's work in hand: billing's agents can claim it.
    assert (after["queue"], after["claimed_by"]) == ("billing", None)
    assert after["timeline"][-1]["actor"] == general.actor
    # The general agent no longer sees it; the billing agent does.
    async with app_client.get(f"/v1/requests/{ref}", headers=general.headers()) as resp:
        assert resp.status == 404
    async with app_client.post("/v1/queues/billing/claim", json={"limit": 1},
                               headers=callers["billing-agent"].headers()) as resp:
        assert [c["reference"] for c in (await resp.json())["items"]] == [ref]


async def test_resolving_releases_the_claim(
        app_client: AppClient, engine: AsyncEngine, pipeline: Pipeline, admin_token: str,
        callers: dict[str, Caller]) -> None:
    first, second = await _create(app_client, admin_token, 2)
    await pipeline.drain()
    agent = callers["agent"]
    async with app_client.post("/v1/queues/general/claim", json={"limit": 2},
                               headers=agent.headers()) as resp:
        assert len((await resp.json())["items"]) == 2
    async with app_client.patch(f"/v1/requests/{first}", json={"status": "resolved"},
                                headers=agent.headers() | {"If-Match": await _etag(engine, first)}
                                ) as resp:
        assert resp.status == 200
    async with app_client.post(f"/v1/requests/{second}/replies",
                               json={"body": "done", "status": "resolved"},
                               headers=agent.headers()) as resp:
        assert resp.status == 201
    for ref in (first, second):
        found = await _read(engine, ref)
        assert (found["status"], found["claimed_by"], found["claim_until"]) == (
            "resolved", None, None), ref


async def test_escalate__if_match_is_required_to_move_and_checked_when_sent(
        app_client: AppClient, engine: AsyncEngine, pipeline: Pipeline,
        admin_token: str) -> None:
    [ref] = await _create(app_client, admin_token, 1)
    await pipeline.drain()
    admin = auth(admin_token)
    stale = await _etag(engine, ref)
    async with app_client.post(f"/v1/requests/{ref}/escalate", json={"reason": "a"},
                               headers=admin) as resp:
        assert resp.status == 200  # raising the level alone needs no If-Match
    for body in ({"reason": "b"}, {"reason": "b", "queue": "billing"}):
        async with app_client.post(f"/v1/requests/{ref}/escalate", json=body,
                                   headers=admin | {"If-Match": stale}) as resp:
            assert resp.status == 412, body
    async with app_client.post(f"/v1/requests/{ref}/escalate",
                               json={"reason": "b", "queue": "billing"}, headers=admin) as resp:
        assert resp.status == 428
    async with app_client.post(f"/v1/requests/{ref}/escalate",
                               json={"reason": "b", "queue": "billing"},
                               headers=admin | {"If-Match": await _etag(engine, ref)}) as resp:
        assert resp.status == 200
    after = await _read(engine, ref)
    assert (after["queue"], after["escalation_level"]) == ("billing", 2)
    # Other actions honour a stale If-Match too.
    stale = f'"v{after["version"] - 1}"'
    for path, body in (("notes", {"body": "n"}), ("replies", {"body": "r"}),
                       ("merge", {"into": ref})):
        async with app_client.post(f"/v1/requests/{ref}/{path}", json=body,
                                   headers=admin | {"If-Match": stale}) as resp:
            assert resp.status == 412, path
    assert (await _read(engine, ref))["version"] == after["version"]


async def test_merge__into_a_request_outside_the_scope_is_refused(
        app_client: AppClient, engine: AsyncEngine, pipeline: Pipeline, admin_token: str,
        callers: dict[str, Caller]) -> None:
    source, target, other = await _create(app_client, admin_token, 3)
    await pipeline.drain()
    await _set(engine, target, queue="billing")
    general = callers["general-agent"].headers()
    async with app_client.post(f"/v1/requests/{source}/merge", json={"into": target},
                               headers=general) as resp:
        assert resp.status == 422
        assert (await resp.json())["errors"][0]["pointer"] == "/into"
    assert (await _read(engine, source))["status"] == "new"
    # Not into an input still being processed, nor into a merged request (no chains).
    [received] = await _create(app_client, admin_token, 1)
    async with app_client.post(f"/v1/requests/{source}/merge", json={"into": received},
                               headers=auth(admin_token)) as resp:
        assert 400 <= resp.status < 500 and resp.status != 404, resp.status
    async with app_client.post(f"/v1/requests/{other}/merge", json={"into": source},
                               headers=auth(admin_token)) as resp:
        assert resp.status == 200
    async with app_client.post(f"/v1/requests/{target}/merge", json={"into": other},
                               headers=auth(admin_token)) as resp:
        assert resp.status == 422  # `other` is merged itself
    async with engine.connect() as conn:
        merged = (await conn.execute(select(requests.c.reference).where(
            requests.c.status == "merged"))).scalars().all()
    assert merged == [other]


async def test_escalate__concurrent_escalations_lose_no_update(
        app_client: AppClient, engine: AsyncEngine, pipeline: Pipeline,
        admin_token: str) -> None:
    [ref] = await _create(app_client, admin_token, 1)
    await pipeline.drain()

    async def escalate() -> int:
        async with app_client.post(f"/v1/requests/{ref}/escalate", json={"reason": "x"},
                                   headers=auth(admin_token)) as resp:
            return resp.status

    statuses = await asyncio.gather(*(escalate() for _ in range(8)))
    assert set(statuses) <= {200, 409}, statuses
    after = await _read(engine, ref)
    # Every 200 is one level: none computed from a level another one overwrote.
    assert after["escalation_level"] == statuses.count(200) > 0
    async with engine.connect() as conn:
        kinds = (await conn.execute(select(events.c.kind))).scalars().all()
    assert kinds.count("escalated") == statuses.count(200)
