"""The audit trail end to end, on both backends: each admin and agent action
over HTTP (and from the command line) leaves its event with actor, target and
client address; GET /v1/admin/audit filters and pages them for admins only;
no route changes or deletes one."""

from __future__ import annotations

import getpass
import json
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Config
from gateway.http.shared import RULES
from gateway.pipeline.worker import Pipeline
from storage.models import audit_events, outbox
from storage.processing import fail_item
from storage.tokens import TokenInfo, create_token
from tests.e2e.test_cli import intake
from tests.helpers import AppClient, auth, count_rows, item_of, make_config, wait_for
from tests.process import ServeProcess, write_config

PROXY_CLIENT = "203.0.113.7"
HELD = "hold me for review"


@pytest.fixture
def config(db_url: str) -> Config:
    # Requests whose body says HELD are quarantined; the test client (127.0.0.1)
    # is a trusted proxy, so X-Forwarded-For names the client when sent.
    return make_config(
        db_url, http={"trusted_proxies": ["127.0.0.1/32"]},
        rule=[{"name": "hold", "when": {"body": {"contains": HELD}},
               "then": {"quarantine": True}}])


@pytest.fixture
async def admin(engine: AsyncEngine) -> tuple[TokenInfo, str]:
    return await create_token(engine, name="auditor", role="admin", queues=[])


async def _events(http: AppClient, secret: str, **query: str) -> list[dict[str, Any]]:
    async with http.get("/v1/admin/audit", params=query, headers=auth(secret)) as resp:
        assert resp.status == 200, await resp.text()
        return list((await resp.json())["items"])


async def _one(http: AppClient, secret: str, action: str) -> dict[str, Any]:
    [event] = await _events(http, secret, action=action)
    return event


async def _new_request(http: AppClient, secret: str, pipeline: Pipeline,
                       body: str = "Printer jammed.") -> str:
    async with http.post("/v1/requests", json={"requester": {"email": "ann@example.com"},
                                               "subject": "Help", "body": body},
                         headers=auth(secret)) as resp:
        assert resp.status == 201
        reference = str((await resp.json())["reference"])
    await pipeline.drain()
    return reference


async def _etag(http: AppClient, secret: str, reference: str) -> str:
    async with http.get(f"/v1/requests/{reference}", headers=auth(secret)) as resp:
        assert resp.status == 200
        return resp.headers["ETag"]


async def test_audit_http__tokens_created_and_revoked(
        app_client: AppClient, admin: tuple[TokenInfo, str]) -> None:
    info, secret = admin
    async with app_client.post("/v1/admin/tokens", json={"role": "agent", "queues": ["billing"]},
                               headers=auth(secret)) as resp:
        assert resp.status == 201
        created = await resp.json()
    async with app_client.delete(f"/v1/admin/tokens/{created['id']}",
                                 headers=auth(secret) | {"X-Forwarded-For": PROXY_CLIENT}
                                 ) as resp:
        assert resp.status == 204
    made = await _one(app_client, secret, "token.create")
    assert (made["actor"], made["target"], made["client"]) == (
        f"token:{info.id}", f"token:{created['id']}", "127.0.0.1")
    assert made["data"]["role"] == "agent" and made["data"]["queues"] == ["billing"]
    assert created["token"] not in json.dumps(made)  # never the secret
    revoked = await _one(app_client, secret, "token.revoke")
    # Behind a trusted proxy the client is the forwarded address, not the proxy's.
    assert (revoked["actor"], revoked["target"], revoked["client"]) == (
        f"token:{info.id}", f"token:{created['id']}", PROXY_CLIENT)
    # Revoking it again does nothing, and records nothing.
    async with app_client.delete(f"/v1/admin/tokens/{created['id']}",
                                 headers=auth(secret)) as resp:
        assert resp.status == 404
    assert len(await _events(app_client, secret, action="token.revoke")) == 1


async def test_audit_http__agents_and_canned_responses(
        app_client: AppClient, admin: tuple[TokenInfo, str]) -> None:
    info, secret = admin
    actor = f"token:{info.id}"
    async with app_client.post("/v1/admin/agents", json={
            "name": "Kim", "email": "kim@example.com", "queues": ["general"]},
            headers=auth(secret)) as resp:
        assert resp.status == 201
        agent = await resp.json()
    async with app_client.patch(f"/v1/admin/agents/{agent['id']}", json={"active": False},
                                headers=auth(secret)) as resp:
        assert resp.status == 200
    async with app_client.patch(f"/v1/admin/agents/{agent['id']}", json={"active": True},
                                headers=auth(secret)) as resp:
        assert resp.status == 200
    async with app_client.post(f"/v1/admin/agents/{agent['id']}/tokens", json={},
                               headers=auth(secret)) as resp:
        assert resp.status == 201
        agent_token = await resp.json()
    async with app_client.post("/v1/admin/canned-responses", json={
            "queue": "general", "language": "en", "name": "thanks", "body": "Thank you."},
            headers=auth(secret)) as resp:
        assert resp.status == 201
        canned = await resp.json()
    async with app_client.delete(f"/v1/admin/canned-responses/{canned['id']}",
                                 headers=auth(secret)) as resp:
        assert resp.status == 204
    made = await _one(app_client, secret, "agent.create")
    assert (made["actor"], made["target"]) == (actor, f"agent:{agent['id']}")
    updates = await _events(app_client, secret, action="agent.update")
    assert [e["data"]["active"] for e in updates] == [True, False]  # newest first
    assert "kim@example.com" not in json.dumps(updates)
    issued = await _one(app_client, secret, "token.create")
    assert (issued["target"], issued["data"]["agent_id"]) == (
        f"token:{agent_token['id']}", agent["id"])
    saved = await _one(app_client, secret, "canned.save")
    assert (saved["target"], saved["data"]["created"]) == (f"canned:{canned['id']}", True)
    assert (await _one(app_client, secret, "canned.delete"))["target"] == f"canned:{canned['id']}"


async def test_audit_http__dead_letters_retried_and_discarded(
        app_client: AppClient, admin: tuple[TokenInfo, str], engine: AsyncEngine) -> None:
    info, secret = admin
    async with app_client.post("/v1/requests", json={"requester": {"email": "a@example.com"},
                                                     "subject": "S", "body": "B"},
                               headers=auth(secret)) as resp:
        item_id = await item_of(engine, (await resp.json())["reference"])
    assert item_id is not None
    assert await fail_item(engine, item_id, "ValueError: broken", dead=True)
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        row_ids = [(await conn.execute(insert(outbox).returning(outbox.c.id), {
            "kind": "webhook", "payload": {}, "state": "dead", "attempts": 5,
            "next_attempt_at": now, "created_at": now})).scalar_one() for _ in range(2)]
    for path in (f"inbox/{item_id}/retry", f"outbox/{row_ids[0]}/retry"):
        async with app_client.post(f"/v1/admin/dead-letters/{path}",
                                   headers=auth(secret)) as resp:
            assert resp.status == 200
    async with app_client.delete(f"/v1/admin/dead-letters/outbox/{row_ids[1]}",
                                 headers=auth(secret)) as resp:
        assert resp.status == 204
    async with app_client.delete(f"/v1/admin/dead-letters/outbox/{row_ids[1]}",
                                 headers=auth(secret)) as resp:
        assert resp.status == 404  # gone: nothing more recorded
    retried = await _events(app_client, secret, action="dead_letter.retry")
    assert [e["target"] for e in retried] == [f"outbox:{row_ids[0]}", f"inbox:{item_id}"]
    discarded = await _one(app_client, secret, "dead_letter.discard")
    assert (discarded["actor"], discarded["target"], discarded["client"]) == (
        f"token:{info.id}", f"outbox:{row_ids[1]}", "127.0.0.1")


async def test_audit_http__reroute_merge_and_quarantine_release(
        app_client: AppClient, admin: tuple[TokenInfo, str], engine: AsyncEngine,
        pipeline: Pipeline) -> None:
    _, secret = admin
    agent, agent_secret = await create_token(engine, name="desk", role="agent", queues=[])
    first = await _new_request(app_client, secret, pipeline)
    second = await _new_request(app_client, secret, pipeline)
    held = await _new_request(app_client, secret, pipeline, body=f"Please {HELD}.")
    # A move to another queue is a reroute; a change in place is not.
    async with app_client.patch(f"/v1/requests/{first}", json={"queue": "billing"},
                                headers=auth(agent_secret)
                                | {"If-Match": await _etag(app_client, secret, first)}) as resp:
        assert resp.status == 200, await resp.text()
    async with app_client.patch(f"/v1/requests/{first}", json={"priority": "P2"},
                                headers=auth(agent_secret)
                                | {"If-Match": await _etag(app_client, secret, first)}) as resp:
        assert resp.status == 200
    async with app_client.post(f"/v1/requests/{second}/merge", json={"into": first},
                               headers=auth(agent_secret)) as resp:
        assert resp.status == 200, await resp.text()
    async with app_client.post(f"/v1/quarantine/{held}/release",
                               headers=auth(agent_secret)) as resp:
        assert resp.status == 200, await resp.text()
    actor = f"token:{agent.id}"
    [moved] = await _events(app_client, secret, action="request.reroute")
    assert (moved["actor"], moved["target"], moved["client"]) == (actor, first, "127.0.0.1")
    assert (moved["data"]["from"], moved["data"]["to"]) == ("general", "billing")
    merged = await _one(app_client, secret, "request.merge")
    assert (merged["actor"], merged["target"], merged["data"]["into"]) == (actor, second, first)
    released = await _one(app_client, secret, "quarantine.release")
    assert (released["actor"], released["target"]) == (actor, held)
    # Filters and paging over HTTP: the agent's three events, two a page.
    pages, cursor = [], None
    for _ in range(5):
        query = {"actor": actor, "limit": "2"} | ({"cursor": cursor} if cursor else {})
        async with app_client.get("/v1/admin/audit", params=query,
                                  headers=auth(secret)) as resp:
            page = await resp.json()
        pages.append([e["action"] for e in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [["quarantine.release", "request.merge"], ["request.reroute"]]


async def test_audit_http__report_downloads(
        app_client: AppClient, admin: tuple[TokenInfo, str], engine: AsyncEngine) -> None:
    _, secret = admin
    agent, agent_secret = await create_token(engine, name="b", role="agent",
                                             queues=["billing"])
    for who, fmt in ((secret, "json"), (agent_secret, "csv")):
        async with app_client.get("/v1/reports/requests", params={
                "from": "2026-01-01", "to": "2026-02-01", "format": fmt},
                headers=auth(who) | {"X-Forwarded-For": PROXY_CLIENT}) as resp:
            assert resp.status == 200, await resp.text()
    events = await _events(app_client, secret, action="report.download")
    assert [(e["actor"], e["target"], e["client"], e["data"]["format"]) for e in events] == [
        (f"token:{agent.id}", "requests", PROXY_CLIENT, "csv"),
        (f"token:{admin[0].id}", "requests", PROXY_CLIENT, "json")]
    assert events[0]["data"]["queues"] == ["billing"]  # the scope it was given
    async with app_client.get("/v1/reports/requests", params={"from": "nonsense"},
                              headers=auth(secret)) as resp:
        assert resp.status == 400  # refused: nothing given out, nothing recorded
    assert len(await _events(app_client, secret, action="report.download")) == 2


async def test_audit_http__rules_reload_recorded_as_system(
        app_client: AppClient, admin: tuple[TokenInfo, str], engine: AsyncEngine) -> None:
    _, secret = admin
    rules = app_client.app[RULES]
    rules.engine = engine  # as gateway.app.build wires it
    rules.reload(trigger="SIGHUP")  # the embedded source: nothing to read, still a reload
    await rules.audited()
    event = await _one(app_client, secret, "rules.reload")
    assert (event["actor"], event["target"], event["client"]) == ("system", "<test>", None)
    assert event["data"]["trigger"] == "SIGHUP"


async def test_audit_http__sighup_to_a_running_gateway_is_audited(
        db_url: str, engine: AsyncEngine, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", db_url)
    served = ServeProcess(config, tmp_path / "serve.log", args=("--processes", "1"))
    served.start()
    try:
        served.signal(signal.SIGHUP)

        async def recorded() -> int:
            return await count_rows(engine, audit_events, audit_events.c.action == "rules.reload")

        await wait_for(recorded, timeout=20)
    finally:
        served.signal(signal.SIGTERM)
        assert served.wait() == 0, served.log_text()


async def test_audit_http__command_line_actions_and_listing(
        db_url: str, engine: AsyncEngine, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", db_url)
    made = intake("tokens", "create", "--role", "admin", config=config)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip().splitlines()[-1]
    listed = intake("audit", "--json", "--action", "token.create", config=config)
    assert listed.returncode == 0, listed.stderr
    [event] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (event["actor"], event["client"], event["data"]["os_user"]) == (
        "cli", None, getpass.getuser())
    assert secret not in listed.stdout
    assert intake("tokens", "revoke", "1", config=config).returncode == 0
    report = intake("report", "--from", "2026-01-01", "--to", "2026-02-01", config=config)
    assert report.returncode == 0, report.stderr
    table = intake("audit", "--actor", "cli", config=config)
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert [line.split("\t")[2:4] for line in lines] == [["report.download", "requests"],
                                                         ["token.revoke", "token:1"],
                                                         ["token.create", "token:1"]]
    for bad in (["--since", "yesterday"], ["--action", "token.drop"], ["--limit", "501"],
                ["--cursor", "forged"]):
        refused = intake("audit", *bad, config=config)
        assert refused.returncode == 2 and bad[0] in refused.stderr


async def test_audit_http__table_output_escapes_control_characters(
        db_url: str, engine: AsyncEngine, tmp_path: Path) -> None:
    from storage.audit import record
    await record(engine, actor="system", action="rules.reload", target="\x1b[2Jgone\r")
    shown = intake("audit", config=write_config(tmp_path / "c.toml", db_url))
    assert shown.returncode == 0
    assert "\x1b" not in shown.stdout and "\\x1b[2Jgone\\r" in shown.stdout


async def test_audit_http__admins_only_and_read_only(
        app_client: AppClient, admin: tuple[TokenInfo, str], engine: AsyncEngine) -> None:
    _, secret = admin
    _, agent = await create_token(engine, name="a", role="agent", queues=[])
    async with app_client.get("/v1/admin/audit") as resp:
        assert resp.status == 401
    async with app_client.get("/v1/admin/audit", headers=auth(agent)) as resp:
        assert resp.status == 403
    async with app_client.post("/v1/admin/tokens", json={"role": "intake"},
                               headers=auth(secret)) as resp:
        assert resp.status == 201
    [event] = await _events(app_client, secret)
    for method in ("DELETE", "PATCH", "PUT", "POST"):
        for path in ("/v1/admin/audit", f"/v1/admin/audit/{event['id']}"):
            async with app_client.request(method, path, json={"target": "x"},
                                          headers=auth(secret)) as resp:
                assert resp.status in (404, 405), (method, path, resp.status)
                if path == "/v1/admin/audit":
                    assert resp.status == 405
    assert await _events(app_client, secret) == [event]  # unchanged, still there


@pytest.mark.parametrize(("query", "named"), [
    ({"actor": "root"}, "actor"), ({"action": "token.drop"}, "action"),
    ({"since": "2026-13-01T00:00:00Z"}, "since"), ({"until": "tomorrow"}, "until"),
    ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
    ({"limit": "0"}, "limit"), ({"limit": "501"}, "limit"), ({"cursor": "forged"}, "cursor"),
    ({"target": ""}, "target"), ({"target": "x" * 301}, "target"),
    ({"verb": "x"}, "verb"),
])
async def test_audit_http__bad_parameters_named(
        app_client: AppClient, admin: tuple[TokenInfo, str], query: dict[str, str],
        named: str) -> None:
    async with app_client.get("/v1/admin/audit", params=query,
                              headers=auth(admin[1])) as resp:
        assert resp.status == 400
        problem = await resp.json()
    assert [e["parameter"] for e in problem["errors"]] == [named]
