"""Agents as people, on both databases: admins keep agents (name, email, queues,
active) and issue their tokens; what such a token does is the person's, on the
timeline and in replies. Replies carry copies, files and an HTML part; canned
responses are rendered with the request's context."""

from __future__ import annotations

import base64
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.delivery.mailer import compose
from gateway.pipeline.worker import Pipeline
from storage import queries
from storage.models import outbox
from tests.helpers import AppClient, auth


async def _create(http: AppClient, token: str, subject: str = "Printer") -> str:
    async with http.post("/v1/requests", headers=auth(token), json={
            "requester": {"email": "ann@example.com", "name": "Ann Customer"},
            "subject": subject, "body": "it is broken"}) as resp:
        assert resp.status == 201
        return str((await resp.json())["reference"])


async def _agent(http: AppClient, admin: str, **fields: Any) -> dict[str, Any]:
    async with http.post("/v1/admin/agents", headers=auth(admin), json=fields) as resp:
        assert resp.status == 201, await resp.text()
        agent: dict[str, Any] = await resp.json()
    async with http.post(f"/v1/admin/agents/{agent['id']}/tokens", headers=auth(admin),
                         json={}) as resp:
        assert resp.status == 201, await resp.text()
        agent["token"] = (await resp.json())["token"]
    return agent


async def _read(http: AppClient, token: str, ref: str) -> dict[str, Any]:
    async with http.get(f"/v1/requests/{ref}", headers=auth(token)) as resp:
        assert resp.status == 200, await resp.text()
        found: dict[str, Any] = await resp.json()
        return found


async def test_agents__admin_keeps_agents_and_their_actions_name_them(
        app_client: AppClient, engine: AsyncEngine, pipeline: Pipeline,
        admin_token: str) -> None:
    http = app_client
    sam = await _agent(http, admin_token, name="Sam Agent", email="Sam@Example.com",
                       queues=["general"])
    assert (sam["email"], sam["queues"], sam["active"]) == ("sam@example.com", ["general"], True)
    # Refused: a second agent with the same address, an address that is not one,
    # an unknown queue; and anyone but an admin.
    for body, status, pointers in (
            ({"name": "Other", "email": "sam@example.com"}, 409, None),
            ({"name": "Other", "email": "a@b.c, d@e.f"}, 422, ["/email"]),
            ({"name": "Other", "email": "o@example.com", "queues": ["nope"]}, 422, ["/queues"]),
            ({"name": " ", "email": "o@example.com", "colour": 1}, 422, ["/name", "/colour"])):
        async with http.post("/v1/admin/agents", headers=auth(admin_token), json=body) as resp:
            assert resp.status == status, body
            if pointers:
                assert [e["pointer"] for e in (await resp.json())["errors"]] == pointers
    async with http.get("/v1/admin/agents", headers=auth(sam["token"])) as resp:
        assert resp.status == 403
    async with http.get("/v1/admin/agents", headers=auth(admin_token)) as resp:
        assert [a["name"] for a in (await resp.json())["items"]] == ["Sam Agent"]

    ref = await _create(http, admin_token)
    await pipeline.drain()
    async with http.post("/v1/queues/general/claim", json={"limit": 1},
                         headers=auth(sam["token"])) as resp:
        assert [c["reference"] for c in (await resp.json())["items"]] == [ref]
    async with http.post(f"/v1/requests/{ref}/notes", json={"body": "on it"},
                         headers=auth(sam["token"])) as resp:
        assert resp.status == 201
    found = await _read(http, admin_token, ref)
    who = f"agent:{sam['id']}"
    assert (found["claimed_by"], found["claimed_by_name"]) == (who, "Sam Agent")
    note = [e for e in found["timeline"] if e["kind"] == "note"][-1]
    assert (note["actor"], note["actor_name"]) == (who, "Sam Agent")
    assert all(e["actor_name"] is None for e in found["timeline"] if e["kind"] == "received")
    async with http.get("/v1/queues/general/requests", params={"claimed_by": who},
                        headers=auth(admin_token)) as resp:
        [item] = (await resp.json())["items"]
        assert item["claimed_by_name"] == "Sam Agent"

    # The agent's queues are the token's scope, as they are now; inactive: no access.
    async with http.patch(f"/v1/admin/agents/{sam['id']}", json={"queues": ["billing"]},
                          headers=auth(admin_token)) as resp:
        assert resp.status == 200 and (await resp.json())["queues"] == ["billing"]
    async with http.get(f"/v1/requests/{ref}", headers=auth(sam["token"])) as resp:
        assert resp.status == 404
    async with http.patch(f"/v1/admin/agents/{sam['id']}", json={"active": False},
                          headers=auth(admin_token)) as resp:
        assert resp.status == 200
    async with http.get("/v1/queues", headers=auth(sam["token"])) as resp:
        assert resp.status == 401
    async with http.post(f"/v1/admin/agents/{sam['id']}/tokens", json={},
                         headers=auth(admin_token)) as resp:
        assert resp.status == 409
    async with http.patch("/v1/admin/agents/999", json={"active": True},
                          headers=auth(admin_token)) as resp:
        assert resp.status == 404


async def test_reply__copies_files_html_and_the_agents_signature(
        app_client: AppClient, engine: AsyncEngine, pipeline: Pipeline,
        admin_token: str) -> None:
    http = app_client
    sam = await _agent(http, admin_token, name="Sam Agent", email="sam@example.com")
    ref = await _create(http, admin_token)
    await pipeline.drain()
    pdf = b"%PDF-1.4 not really\x00\xff"
    good = {"body": "Here is the form.", "cc": ["boss@example.com", "BOSS@example.com"],
            "html": '<p onclick="steal()">Here is the <b>form</b>.<script>x()</script>'
                    '<a href="javascript:x()">link</a></p>',
            "attachments": [{"filename": "form.pdf", "content_type": "application/pdf",
                             "content_base64": base64.b64encode(pdf).decode()}]}
    refused = [
        (good | {"cc": ["ok@example.com", "a@b.c, evil@example.com"]}, "/cc/1"),
        (good | {"cc": ["root@localhost"]}, "/cc/0"),
        (good | {"attachments": [{"filename": "x", "content_base64": "not base64!"}]},
         "/attachments/0/content_base64"),
        (good | {"attachments": [{"filename": "x", "content_type": "message/rfc822",
                                  "content_base64": ""}]}, "/attachments/0/content_type"),
        (good | {"attachments": [{"filename": "x", "content_base64": ""}] * 11},
         "/attachments"),
        (good | {"cc": [f"c{n}@example.com" for n in range(21)]}, "/cc"),
        ({"body": " "}, "/body"),
    ]
    for body, pointer in refused:
        async with http.post(f"/v1/requests/{ref}/replies", json=body,
                             headers=auth(sam["token"])) as resp:
            assert resp.status == 422, (pointer, await resp.text())
            assert [e["pointer"] for e in (await resp.json())["errors"]] == [pointer]
    async with http.post(f"/v1/requests/{ref}/replies", json=good,
                         headers=auth(sam["token"])) as resp:
        assert resp.status == 201, await resp.text()
    found = await queries.get_request(engine, ref)
    assert found is not None
    [reply] = [m for m in found["messages"] if m["direction"] == "out"
               and (m["flags"] or {}).get("kind") == "reply"]
    assert reply["cc"] == [{"name": "", "address": "boss@example.com"}]
    assert reply["text"].startswith("Here is the form.\n\nSam Agent")
    assert reply["from"]["name"].startswith("Sam Agent")
    [stored] = reply["attachments"]
    assert (stored["filename"], stored["content_type"], stored["size"]) == (
        "form.pdf", "application/pdf", len(pdf))
    async with http.get(f"/v1/requests/{ref}/attachments/{stored['id']}",
                        headers=auth(admin_token)) as resp:
        assert await resp.read() == pdf
    replied = [e for e in found["timeline"] if e["kind"] == "replied"][-1]
    assert replied["actor"] == f"agent:{sam['id']}" and replied["data"]["attachments"] == 1
    # The mail as it will be sent: sanitised HTML alternative, the file, the copy.
    async with engine.connect() as conn:
        payloads = (await conn.execute(select(outbox.c.payload).where(
            outbox.c.kind == "email"))).scalars().all()
    [payload] = [p for p in payloads if p.get("purpose") == "reply"]
    mail = compose(payload["message"])
    html = mail.message.get_body(("html",))
    assert html is not None
    content = html.get_content()
    assert "<b>form</b>" in content and "Sam Agent" in content
    for bad in ("script", "onclick", "javascript:"):
        assert bad not in content
    [file] = list(mail.message.iter_attachments())
    assert (file.get_filename(), file.get_content()) == ("form.pdf", pdf)
    assert [m.addr_spec for m in mail.recipients] == ["ann@example.com", "boss@example.com"]
    assert "Sam Agent" in str(mail.message["From"])


async def test_reply__a_bare_token_acts_as_before(
        app_client: AppClient, pipeline: Pipeline, admin_token: str) -> None:
    ref = await _create(app_client, admin_token)
    await pipeline.drain()
    async with app_client.post(f"/v1/requests/{ref}/replies", json={"body": "Hello"},
                               headers=auth(admin_token)) as resp:
        assert resp.status == 201
    found = await _read(app_client, admin_token, ref)
    replied = [e for e in found["timeline"] if e["kind"] == "replied"][-1]
    assert replied["actor"].startswith("token:") and replied["actor_name"] is None
    [reply] = [m for m in found["messages"] if (m["flags"] or {}).get("kind") == "reply"]
    assert reply["text"].startswith("Hello") and "Sam" not in reply["text"]


async def test_canned_responses__per_queue_and_language_rendered_for_the_request(
        app_client: AppClient, engine: AsyncEngine, pipeline: Pipeline,
        admin_token: str) -> None:
    http = app_client
    admin = auth(admin_token)
    sam = await _agent(http, admin_token, name="Sam Agent", email="sam@example.com",
                       queues=["general"])
    bea = await _agent(http, admin_token, name="Bea", email="bea@example.com",
                       queues=["billing"])
    # A template that cannot render is refused when saved, naming the body.
    for body in ("Hi {{ nam }}", "{% if requester.name %}unclosed",
                 "{{ ''.__class__.__mro__ }}"):
        async with http.post("/v1/admin/canned-responses", headers=admin, json={
                "queue": "general", "name": "bad", "body": body}) as resp:
            assert resp.status == 422, body
            assert [e["pointer"] for e in (await resp.json())["errors"]] == ["/body"]
    made = {}
    for language, text in (("en", "Hello {{ requester.name }}, about {{ reference }}: "
                                   "we are on it. {{ agent.name }}"),
                           ("de", "Hallo {{ requester.name }}")):
        async with http.post("/v1/admin/canned-responses", headers=admin, json={
                "queue": "general", "language": language, "name": "on it",
                "body": text}) as resp:
            assert resp.status == 201, await resp.text()
            made[language] = (await resp.json())["id"]
    async with http.post("/v1/admin/canned-responses", headers=admin, json={
            "queue": "general", "language": "en", "name": "on it", "body": "x"}) as resp:
        assert resp.status == 409
    async with http.post("/v1/admin/canned-responses", headers=auth(sam["token"]), json={
            "queue": "general", "name": "mine", "body": "x"}) as resp:
        assert resp.status == 403

    ref = await _create(http, admin_token)
    await pipeline.drain()
    path = "/v1/queues/general/canned-responses"
    async with http.get(path, params={"lang": "en", "reference": ref},
                        headers=auth(sam["token"])) as resp:
        assert resp.status == 200, await resp.text()
        [item] = (await resp.json())["items"]
    assert item["rendered"] == f"Hello Ann Customer, about {ref}: we are on it. Sam Agent"
    async with http.get(path, params={"lang": "de"}, headers=auth(sam["token"])) as resp:
        assert [i["body"] for i in (await resp.json())["items"]] == [
            "Hallo {{ requester.name }}"]
    async with http.get(path, params={"language": "de"}, headers=auth(sam["token"])) as resp:
        assert resp.status == 400
    # A regional tag falls back to its language, name by name; case does not matter.
    async with http.post("/v1/admin/canned-responses", headers=admin, json={
            "queue": "general", "language": "de-AT", "name": "servus",
            "body": "Servus {{ requester.name }}"}) as resp:
        assert resp.status == 201, await resp.text()
        servus = (await resp.json())["id"]
    for lang, expected in (("de-at", ["on it", "servus"]), ("DE", ["on it"]),
                           ("de-CH", ["on it"]), ("fr", [])):
        async with http.get(path, params={"lang": lang}, headers=auth(sam["token"])) as resp:
            found = [(i["name"], i["language"]) for i in (await resp.json())["items"]]
        assert [name for name, _ in found] == expected, (lang, found)
        assert all(language.lower() in (lang.lower(), "de") for _, language in found)
    async with http.delete(f"/v1/admin/canned-responses/{servus}", headers=admin) as resp:
        assert resp.status == 204
    async with http.get(path, headers=auth(bea["token"])) as resp:
        assert resp.status == 404  # not a queue Bea works

    # Inserted in a reply: after what the agent wrote, rendered for this request.
    async with http.post(f"/v1/requests/{ref}/replies", headers=auth(sam["token"]),
                         json={"body": "Thanks.", "canned_response": made["en"]}) as resp:
        assert resp.status == 201, await resp.text()
    async with http.post(f"/v1/requests/{ref}/replies", headers=auth(bea["token"]),
                         json={"canned_response": made["en"]}) as resp:
        assert resp.status == 404  # Bea cannot see the request at all
    found = await queries.get_request(engine, ref)
    assert found is not None
    [reply] = [m for m in found["messages"] if (m["flags"] or {}).get("kind") == "reply"]
    assert reply["text"].startswith(
        f"Thanks.\n\nHello Ann Customer, about {ref}: we are on it. Sam Agent\n\nSam Agent")
    # Edit and delete.
    async with http.patch(f"/v1/admin/canned-responses/{made['de']}", headers=admin,
                          json={"body": "Guten Tag {{ requester.name }}"}) as resp:
        assert resp.status == 200 and (await resp.json())["body"].startswith("Guten Tag")
    async with http.patch(f"/v1/admin/canned-responses/{made['de']}", headers=admin,
                          json={"body": "{{ oops }}"}) as resp:
        assert resp.status == 422
    async with http.delete(f"/v1/admin/canned-responses/{made['de']}", headers=admin) as resp:
        assert resp.status == 204
    async with http.get("/v1/admin/canned-responses", headers=admin) as resp:
        assert [i["id"] for i in (await resp.json())["items"]] == [made["en"]]


async def test_agents__own_notification_settings_set_checked_and_cleared(
        app_client: AppClient, admin_token: str) -> None:
    http = app_client
    cy = await _agent(http, admin_token, name="Cy", email="cy@example.com",
                      quiet_hours="19:00-07:00", digest_minutes=60)
    assert (cy["quiet_hours"], cy["digest_minutes"]) == ("19:00-07:00", 60)
    path = f"/v1/admin/agents/{cy['id']}"
    for body, pointer in (({"quiet_hours": "25:00-07:00"}, "/quiet_hours"),
                          ({"quiet_hours": "evenings"}, "/quiet_hours"),
                          ({"digest_minutes": -1}, "/digest_minutes"),
                          ({"digest_minutes": 1441}, "/digest_minutes")):
        async with http.patch(path, headers=auth(admin_token), json=body) as resp:
            assert resp.status == 422, (body, await resp.text())
            assert [e["pointer"] for e in (await resp.json())["errors"]] == [pointer]
    # null: back to the queue's settings.
    async with http.patch(path, headers=auth(admin_token),
                          json={"quiet_hours": None, "digest_minutes": 15}) as resp:
        assert resp.status == 200, await resp.text()
        assert ((await resp.json())["quiet_hours"], (await resp.json())["digest_minutes"]) == (
            None, 15)
