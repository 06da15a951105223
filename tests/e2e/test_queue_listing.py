"""Queue listings and the search across queues, on both databases: every
parameter is known and every value one it can take (400 naming it otherwise),
and the filters a team lead needs select what they say."""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.pipeline.worker import Pipeline
from storage.engine import utcnow
from storage.models import requests, sla_marks
from storage.tokens import create_token
from tests.helpers import AppClient, auth


async def _create(http: AppClient, token: str, subjects: list[str]) -> list[str]:
    refs = []
    for subject in subjects:
        async with http.post("/v1/requests", headers=auth(token), json={
                "requester": {"email": "ann@example.com"}, "subject": subject,
                "body": f"about {subject}"}) as resp:
            assert resp.status == 201
            refs.append(str((await resp.json())["reference"]))
    return refs


async def _set(engine: AsyncEngine, reference: str, **values: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(update(requests).where(requests.c.reference == reference)
                           .values(values))


async def _listed(http: AppClient, token: str, path: str, **query: str) -> list[str]:
    async with http.get(path, params=query, headers=auth(token)) as resp:
        assert resp.status == 200, await resp.text()
        return [i["reference"] for i in (await resp.json())["items"]]


async def test_listing__unknown_parameters_and_values_are_400_naming_them(
        app_client: AppClient, pipeline: Pipeline, admin_token: str) -> None:
    await _create(app_client, admin_token, ["one"])
    await pipeline.drain()
    cases = [
        ("sla=breached", ["sla"]),
        ("status=bogus", ["status"]),
        ("priority=urgent", ["priority"]),
        ("breached=yes", ["breached"]),
        ("created_after=yesterday", ["created_after"]),
        ("created_before=2026-01-31", ["created_before"]),  # no time: not RFC 3339
        ("due_before=2026-02-30T00:00:00Z", ["due_before"]),  # no such day
        ("claimed_by=ann", ["claimed_by"]),
        ("status=new&status=open", ["status"]),
        ("limit=0", ["limit"]),
        ("colour=red&size=9", ["colour", "size"]),
    ]
    for query, named in cases:
        for path in ("/v1/queues/general/requests", "/v1/requests?text=one"):
            url = f"{path}{'&' if '?' in path else '?'}{query}"
            async with app_client.get(url, headers=auth(admin_token)) as resp:
                assert resp.status == 400, (url, resp.status)
                assert resp.content_type == "application/problem+json"
                problem = await resp.json()
                assert [e["parameter"] for e in problem["errors"]] == named, url
    # The search needs `text` (or `message_id`, which takes nothing else).
    async with app_client.get("/v1/requests", headers=auth(admin_token)) as resp:
        assert resp.status == 400
    async with app_client.get("/v1/requests?message_id=x@y&status=new",
                              headers=auth(admin_token)) as resp:
        assert resp.status == 400
        assert [e["parameter"] for e in (await resp.json())["errors"]] == ["status"]


async def test_listing__team_lead_filters(
        app_client: AppClient, engine: AsyncEngine, pipeline: Pipeline,
        admin_token: str) -> None:
    late, due_soon, fresh, claimed = await _create(
        app_client, admin_token, ["late", "due soon", "fresh", "claimed"])
    await pipeline.drain()
    now = utcnow()
    await _set(engine, late, created_at=now - timedelta(days=3),
               first_response_due_at=now - timedelta(hours=1), due_at=now - timedelta(hours=1))
    await _set(engine, due_soon, created_at=now - timedelta(days=2),
               first_response_due_at=now + timedelta(minutes=30),
               due_at=now + timedelta(minutes=30))
    await _set(engine, fresh, first_response_due_at=now + timedelta(days=1),
               due_at=now + timedelta(days=1))
    await _set(engine, claimed, due_at=now + timedelta(days=2))
    info, agent = await create_token(engine, name="ann", role="agent", queues=[])
    async with app_client.post("/v1/queues/general/claim", json={"limit": 1},
                               headers=auth(agent)) as resp:
        assert [c["reference"] for c in (await resp.json())["items"]] == [late]
    path = "/v1/queues/general/requests"
    assert await _listed(app_client, admin_token, path, breached="true") == [late]
    assert set(await _listed(app_client, admin_token, path, breached="false")) == {
        due_soon, fresh, claimed}
    soon = (now + timedelta(hours=1)).isoformat()
    assert await _listed(app_client, admin_token, path, due_before=soon) == [late, due_soon]
    day_ago = (now - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert set(await _listed(app_client, admin_token, path, created_after=day_ago)) == {
        fresh, claimed}
    assert await _listed(app_client, admin_token, path, created_before=day_ago) == [
        late, due_soon]
    # An offset other than Z means the same moment.
    shifted = (now - timedelta(days=1)).astimezone(timezone(timedelta(hours=5))).isoformat()
    assert await _listed(app_client, admin_token, path, created_before=shifted) == [
        late, due_soon]
    assert await _listed(app_client, admin_token, path, claimed_by=f"token:{info.id}") == [
        late]
    assert await _listed(app_client, agent, path, claimed_by="me") == [late]
    assert await _listed(app_client, admin_token, path, claimed_by="me") == []
    assert late not in await _listed(app_client, admin_token, path, claimed_by="none")
    # A breach the scheduler recorded counts even when the deadline was moved since.
    async with engine.begin() as conn:
        await conn.execute(insert(sla_marks).values(
            request_id=(await _id(engine, fresh)), mark="first_response:breached", at=now))
    assert set(await _listed(app_client, admin_token, path, breached="true")) == {late, fresh}


async def _id(engine: AsyncEngine, reference: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(requests.c.id).where(
            requests.c.reference == reference))).scalar_one())


async def test_search__across_the_token_queues_including_replies(
        app_client: AppClient, engine: AsyncEngine, pipeline: Pipeline,
        admin_token: str) -> None:
    general, billing, other = await _create(app_client, admin_token,
                                            ["printer", "invoice", "unrelated"])
    await pipeline.drain()
    await _set(engine, billing, queue="billing")
    async with app_client.post(f"/v1/requests/{billing}/replies",
                               json={"body": "Your refund of 50% is on its way",
                                     "status": "resolved"},
                               headers=auth(admin_token)) as resp:
        assert resp.status == 201
    _, scoped = await create_token(engine, name="g", role="agent", queues=["general"])
    _, intake = await create_token(engine, name="i", role="intake", queues=[])
    # A reply's text, in any status and any queue the token sees; % is literal.
    assert await _listed(app_client, admin_token, "/v1/requests", text="REFUND OF 50%") == [
        billing]
    assert await _listed(app_client, admin_token, "/v1/requests", text="refund of 5%") == []
    assert await _listed(app_client, scoped, "/v1/requests", text="refund") == []
    # The customer's own text and the subject are searched too.
    assert await _listed(app_client, scoped, "/v1/requests", text="about printer") == [
        general]
    assert set(await _listed(app_client, admin_token, "/v1/requests", text="r")) >= {
        general, billing, other}
    assert await _listed(app_client, admin_token, "/v1/requests", text="refund",
                         status="new") == []
    async with app_client.get("/v1/requests", params={"text": "refund"},
                              headers=auth(intake)) as resp:
        assert resp.status == 403
