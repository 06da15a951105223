"""The agents' API over real HTTP: roles and scopes, actions, leases, status pages."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import Gateway
from gateway.config import Config
from gateway.http.app import init_app
from storage import queries
from storage.tokens import create_token
from tests.helpers import AppClient, auth, make_config, wait_for


def inbound(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The customer's messages (acknowledgements and replies are ours)."""
    return [m for m in request["messages"] if m["direction"] == "in"]


def send_mail(gateway: Gateway, *, subject: str, body: str, sender: str = "cust@example.com",
              extra: dict[str, str] | None = None, attachment: tuple[str, str, bytes] | None = None,
              to: str = "support@localhost") -> str:
    msg = EmailMessage()
    msg["From"] = f"Customer <{sender}>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.com")
    for key, value in (extra or {}).items():
        msg[key] = value
    msg.set_content(body)
    if attachment:
        name, ctype, data = attachment
        main, sub = ctype.split("/")
        msg.add_attachment(data, maintype=main, subtype=sub, filename=name)
    with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=10) as client:
        client.ehlo()
        client.mail(sender)
        client.rcpt(to)
        code, reply = client.data(msg.as_bytes(policy=msg.policy.clone(linesep="\r\n")))
    assert code == 250, reply
    return reply.split()[-1].decode()


async def processed(engine: AsyncEngine, reference: str) -> dict[str, Any]:
    async def get() -> dict[str, Any] | None:
        found = await queries.get_request(engine, reference)
        return found if found and found.get("status") != "received" else None

    return await wait_for(get)


@pytest.fixture
async def tokens(engine: AsyncEngine, admin_token: str) -> dict[str, str]:
    _, agent = await create_token(engine, name="all", role="agent", queues=[])
    _, billing = await create_token(engine, name="b", role="agent", queues=["billing"])
    _, intake = await create_token(engine, name="i", role="intake", queues=[])
    return {"admin": admin_token, "agent": agent, "billing-agent": billing, "intake": intake}


async def test_agents__authorisation_matrix(gateway: Gateway, http: aiohttp.ClientSession,
                                           engine: AsyncEngine,
                                           tokens: dict[str, str]) -> None:
    ref = await asyncio.to_thread(send_mail, gateway, subject="Matrix", body="hello")
    request = await processed(engine, ref)
    etag = f'"v{request["version"]}"'
    # (method, path, json body, extra headers) -> expected status per caller
    cases: list[tuple[str, str, Any, dict[str, str], dict[str, int]]] = [
        ("GET", f"/v1/requests/{ref}", None, {},
         {"none": 401, "intake": 404, "billing-agent": 404, "agent": 200, "admin": 200}),
        ("GET", "/v1/queues", None, {},
         {"none": 401, "intake": 403, "billing-agent": 200, "agent": 200, "admin": 200}),
        ("GET", "/v1/queues/general/requests", None, {},
         {"none": 401, "intake": 404, "billing-agent": 404, "agent": 200, "admin": 200}),
        ("PATCH", f"/v1/requests/{ref}", {"priority": "P2"}, {"If-Match": etag},
         {"none": 401, "intake": 404, "billing-agent": 404, "agent": 200, "admin": 412}),
        ("PATCH", f"/v1/requests/{ref}", {"escalation_level": 3}, {"If-Match": '"v99"'},
         {"none": 401, "intake": 404, "billing-agent": 404, "agent": 422, "admin": 412}),
        ("PATCH", f"/v1/requests/{ref}", {"reference": "X"}, {"If-Match": '"v99"'},
         {"none": 401, "intake": 404, "billing-agent": 404, "agent": 422, "admin": 422}),
        ("POST", "/v1/queues/general/claim", {"limit": 1, "lease_seconds": 5}, {},
         {"none": 401, "intake": 404, "billing-agent": 404, "agent": 200, "admin": 200}),
        ("POST", f"/v1/requests/{ref}/notes", {"body": "internal"}, {},
         {"none": 401, "intake": 404, "billing-agent": 404, "agent": 201, "admin": 201}),
        ("POST", "/v1/requests", {"requester": {"email": "a@b.c"}, "subject": "s", "body": "b"},
         {}, {"none": 401, "intake": 201, "billing-agent": 201, "agent": 201, "admin": 201}),
        ("GET", "/v1/admin/tokens", None, {},
         {"none": 401, "intake": 403, "billing-agent": 403, "agent": 403, "admin": 200}),
        ("GET", "/v1/admin/rules", None, {},
         {"none": 401, "intake": 403, "billing-agent": 403, "agent": 403, "admin": 200}),
        ("GET", "/v1/quarantine", None, {},
         {"none": 401, "intake": 403, "billing-agent": 200, "agent": 200, "admin": 200}),
    ]
    failures = []
    for method, path, body, headers, expected in cases:
        for who in ("none", "intake", "billing-agent", "agent", "admin"):
            hdrs = dict(headers) | (auth(tokens[who]) if who != "none" else {})
            async with http.request(method, path, json=body, headers=hdrs) as resp:
                if resp.status != expected[who]:
                    failures.append(f"{who} {method} {path}: {resp.status} != {expected[who]}")
                if resp.status >= 400:
                    assert resp.content_type == "application/problem+json", (who, path)
    assert failures == []


async def test_agents__other_queue_by_reference_is_not_found(
        gateway: Gateway, http: aiohttp.ClientSession, engine: AsyncEngine,
        tokens: dict[str, str]) -> None:
    ref = await asyncio.to_thread(send_mail, gateway, subject="Scoped", body="x")
    await processed(engine, ref)
    unknown = "ZZZZ-ZZZZ"
    for path in (f"/v1/requests/{ref}", f"/v1/requests/{unknown}"):
        async with http.get(path, headers=auth(tokens["billing-agent"])) as resp:
            assert resp.status == 404
            assert (await resp.json())["detail"] == "no request with this reference"
    async with http.patch(f"/v1/requests/{ref}", json={"queue": "billing"},
                          headers=auth(tokens["billing-agent"]) | {"If-Match": '"v1"'}) as resp:
        assert resp.status == 404


async def test_agents__patch_needs_current_version(
        gateway: Gateway, http: aiohttp.ClientSession, engine: AsyncEngine,
        tokens: dict[str, str]) -> None:
    ref = await asyncio.to_thread(send_mail, gateway, subject="Versions", body="x")
    await processed(engine, ref)
    headers = auth(tokens["agent"])
    async with http.get(f"/v1/requests/{ref}", headers=headers) as resp:
        etag = resp.headers["ETag"]
    async with http.patch(f"/v1/requests/{ref}", json={"status": "open"}, headers=headers) as r:
        assert r.status == 428
    async with http.patch(f"/v1/requests/{ref}", json={"status": "open", "tags": ["a", "a"]},
                          headers=headers | {"If-Match": etag}) as resp:
        assert resp.status == 200
        new_etag = resp.headers["ETag"]
    assert new_etag != etag
    async with http.patch(f"/v1/requests/{ref}", json={"priority": "P1"},
                          headers=headers | {"If-Match": etag}) as resp:
        assert resp.status == 412  # someone changed it since
    async with http.patch(f"/v1/requests/{ref}", json={"status": "bogus"},
                          headers=headers | {"If-Match": new_etag}) as resp:
        assert resp.status == 422
        assert (await resp.json())["errors"][0]["pointer"] == "/status"
    request = await queries.get_request(engine, ref)
    assert request is not None
    assert (request["status"], request["tags"]) == ("open", ["a"])
    update = [e for e in request["timeline"] if e["kind"] == "updated"][0]
    assert update["actor"].startswith("token:") and update["data"]["changes"]["status"] == "open"


async def test_agents__reply_note_escalate_and_customer_answer_threads_back(
        gateway: Gateway, http: aiohttp.ClientSession, engine: AsyncEngine,
        tokens: dict[str, str]) -> None:
    ref = await asyncio.to_thread(send_mail, gateway, subject="Need a hand", body="Help me")
    await processed(engine, ref)
    headers = auth(tokens["agent"])
    async with http.post(f"/v1/requests/{ref}/notes", json={"body": "customer is a VIP"},
                         headers=headers) as resp:
        assert resp.status == 201
    async with http.post(f"/v1/requests/{ref}/replies",
                         json={"body": "Try turning it off and on.", "status": "waiting"},
                         headers=headers) as resp:
        assert resp.status == 201
        reply = await resp.json()
    async with http.post(f"/v1/requests/{ref}/escalate", json={"reason": "slow"},
                         headers=headers) as resp:
        assert resp.status == 200
    request = await queries.get_request(engine, ref)
    assert request is not None
    assert (request["status"], request["escalation_level"]) == ("waiting", 1)
    outbound = request["messages"][-1]
    assert outbound["direction"] == "out" and outbound["message_id"] == reply["message_id"]
    assert f"[#{ref}]" in outbound["subject"]
    kinds = [e["kind"] for e in request["timeline"]]
    assert {"note", "replied", "escalated"} <= set(kinds)
    # The customer answers our reply: it lands on the same request.
    await asyncio.to_thread(send_mail, gateway, subject=f"Re: {outbound['subject']}",
                            body="Did that, still broken.",
                            extra={"In-Reply-To": f"<{reply['message_id']}>"})

    async def answered() -> dict[str, Any] | None:
        found = await queries.get_request(engine, ref)
        return found if found and len(inbound(found)) == 2 else None

    assert inbound(await wait_for(answered))[-1]["new_text"] == "Did that, still broken."

    # The customer's status page: status and public messages, never internal notes.
    status_url = request["status_token"]
    async with http.get(f"/v1/status/{status_url}") as resp:
        assert resp.status == 200
        page = await resp.json()
    # The customer answered while we waited on them: open again, clock running.
    assert page["reference"] == ref and page["status"] == "open"
    texts = [m["text"] for m in page["messages"]]
    assert "Try turning it off and on." in texts
    assert all("VIP" not in t for t in texts)
    async with http.get("/v1/status/not-a-real-token") as resp:
        assert resp.status == 404


async def test_agents__merge_duplicate(gateway: Gateway, http: aiohttp.ClientSession,
                                       engine: AsyncEngine, tokens: dict[str, str]) -> None:
    first = await asyncio.to_thread(send_mail, gateway, subject="Printer", body="broken")
    second = await asyncio.to_thread(send_mail, gateway, subject="Printer again", body="still")
    await processed(engine, first)
    dup = await processed(engine, second)
    headers = auth(tokens["agent"])
    async with http.post(f"/v1/requests/{second}/merge", json={"into": first},
                         headers=headers) as resp:
        assert resp.status == 200
    async with http.post(f"/v1/requests/{second}/merge", json={"into": first},
                         headers=headers) as resp:
        assert resp.status == 409
    async with http.post(f"/v1/requests/{first}/merge", json={"into": first},
                         headers=headers) as resp:
        assert resp.status == 422
    merged = await queries.get_request(engine, second)
    assert merged is not None and merged["status"] == "merged"
    # A reply to the merged request's mail lands on the request it was merged into.
    await asyncio.to_thread(send_mail, gateway, subject="Re: Printer again", body="any news?",
                            extra={"In-Reply-To": f"<{dup['messages'][0]['message_id']}>"})

    async def landed() -> dict[str, Any] | None:
        found = await queries.get_request(engine, first)
        return found if found and len(inbound(found)) == 2 else None

    target = await wait_for(landed)
    assert "merged_from" in [e["kind"] for e in target["timeline"]]


async def test_agents__attachment_is_a_download_never_inline_html(
        gateway: Gateway, http: aiohttp.ClientSession, engine: AsyncEngine,
        tokens: dict[str, str]) -> None:
    payload = b"<html><script>alert(1)</script></html>"
    ref = await asyncio.to_thread(send_mail, gateway, subject="Page", body="see file",
                                  attachment=("page.html", "text/html", payload))
    request = await processed(engine, ref)
    [attachment] = request["messages"][0]["attachments"]
    path = f"/v1/requests/{ref}/attachments/{attachment['id']}"
    async with http.get(path, headers=auth(tokens["agent"])) as resp:
        assert resp.status == 200
        assert await resp.read() == payload
        assert resp.headers["Content-Disposition"].startswith("attachment;")
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Content-Security-Policy"] == "sandbox"
    async with http.get(path, headers=auth(tokens["billing-agent"])) as resp:
        assert resp.status == 404
    async with http.get(f"/v1/requests/{ref}/attachments/999999",
                        headers=auth(tokens["agent"])) as resp:
        assert resp.status == 404


async def test_agents__claim_renew_release_over_http(
        gateway: Gateway, http: aiohttp.ClientSession, engine: AsyncEngine,
        tokens: dict[str, str]) -> None:
    ref = await asyncio.to_thread(send_mail, gateway, subject="Claim me", body="x")
    await processed(engine, ref)
    ann, bob = auth(tokens["agent"]), auth(tokens["admin"])
    async with http.post("/v1/queues/general/claim", json={"limit": 5, "lease_seconds": 60},
                         headers=ann) as resp:
        assert [i["reference"] for i in (await resp.json())["items"]] == [ref]
    async with http.post("/v1/queues/general/claim", json={"limit": 5}, headers=bob) as resp:
        assert (await resp.json())["items"] == []
    async with http.put(f"/v1/requests/{ref}/lease", json={"lease_seconds": 120},
                        headers=ann) as resp:
        assert resp.status == 200
    async with http.put(f"/v1/requests/{ref}/lease", json={}, headers=bob) as resp:
        assert resp.status == 409
    async with http.delete(f"/v1/requests/{ref}/lease", headers=ann) as resp:
        assert resp.status == 204
    async with http.post("/v1/queues/general/claim", json={"limit": 5}, headers=bob) as resp:
        assert [i["reference"] for i in (await resp.json())["items"]] == [ref]
    async with http.get("/v1/queues", headers=ann) as resp:
        general = [q for q in (await resp.json())["items"] if q["name"] == "general"][0]
    assert (general["depth"], general["unclaimed"]) == (1, 0)
    async with http.post("/v1/queues/general/claim", json={"limit": 500},
                         headers=ann) as resp:
        assert resp.status == 422


async def test_agents__waiting_agent_woken_by_new_email(
        gateway: Gateway, http: aiohttp.ClientSession, tokens: dict[str, str]) -> None:
    loop = asyncio.get_running_loop()

    async def wait_for_work() -> tuple[list[dict[str, Any]], float]:
        async with http.post("/v1/queues/general/claim", json={"wait": 20, "limit": 1},
                             headers=auth(tokens["agent"])) as resp:
            items = (await resp.json())["items"]
        return items, loop.time()

    waiter = asyncio.create_task(wait_for_work())
    await asyncio.sleep(0.5)  # the agent is waiting on an empty queue
    assert not waiter.done()
    ref = await asyncio.to_thread(send_mail, gateway, subject="Wake up", body="x")
    accepted_at = loop.time()
    items, woken_at = await waiter
    assert [i["reference"] for i in items] == [ref]
    # Woken by the new request's signal: a waiting claim looks again by itself
    # only every 5 s (gateway/http/queues.py), 4.5 s after the mail's 250 here.
    # The bound leaves the pipeline time on a loaded machine.
    assert woken_at - accepted_at < 2.5


async def test_agents__rate_limit_answers_429(
        db_url: str, engine: AsyncEngine, admin_token: str,
        aiohttp_client: Callable[[web.Application], Awaitable[AppClient]]) -> None:
    config: Config = make_config(db_url, http={"rate_limit_per_token": 1.0,
                                               "rate_limit_burst": 3.0})
    http = await aiohttp_client(init_app(config))  # the HTTP app alone
    statuses = []
    for _ in range(6):
        async with http.get("/v1/queues", headers=auth(admin_token)) as resp:
            statuses.append(resp.status)
            if resp.status == 429:
                assert int(resp.headers["Retry-After"]) >= 1
    assert statuses[:3] == [200, 200, 200] and 429 in statuses
    async with http.get("/healthz") as resp:
        assert resp.status == 200  # health checks are never limited


async def test_agents__token_administration(app_client: AppClient,
                                            tokens: dict[str, str]) -> None:
    http = app_client  # the HTTP app alone
    admin = auth(tokens["admin"])
    async with http.post("/v1/admin/tokens", json={"role": "agent", "queues": ["billing"],
                                                   "name": "night shift"},
                         headers=admin) as resp:
        assert resp.status == 201
        created = await resp.json()
    async with http.get("/v1/queues", headers=auth(created["token"])) as resp:
        assert [q["name"] for q in (await resp.json())["items"]] == ["billing"]
    async with http.post("/v1/admin/tokens", json={"role": "root", "queues": ["nope"]},
                         headers=admin) as resp:
        assert resp.status == 422
        assert {e["pointer"] for e in (await resp.json())["errors"]} == {"/role", "/queues"}
    async with http.get("/v1/admin/tokens", headers=admin) as resp:
        listed = (await resp.json())["items"]
    assert all("token" not in row and "token_hash" not in row for row in listed)
    async with http.delete(f"/v1/admin/tokens/{created['id']}", headers=admin) as resp:
        assert resp.status == 204
    async with http.get("/v1/queues", headers=auth(created["token"])) as resp:
        assert resp.status == 401
