"""The HTTP API over real HTTP: the app alone (no SMTP, LMTP or workers), its
pipeline drained inline where a test needs the request processed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import Gateway
from gateway.pipeline.worker import Pipeline
from storage.models import inbox_items, requests
from storage.tokens import create_token
from tests.helpers import AppClient, auth, count_rows, wait_for

BODY = {"requester": {"email": "Bob@Example.com", "name": "Bob"}, "subject": "VPN down",
        "body": "Cannot connect since 9am.", "custom_fields": {"order": "A-17"}}


@pytest.fixture
def http(app_client: AppClient) -> AppClient:
    """Every test here talks to the HTTP app alone."""
    return app_client


async def _get_processed(http: AppClient, token: str, ref: str) -> dict[str, Any]:
    async def fetch() -> dict[str, Any] | None:
        async with http.get(f"/v1/requests/{ref}", headers=auth(token)) as resp:
            data = await resp.json()
            return data if data.get("status") == "new" else None
    return await wait_for(fetch)


async def test_http__post_then_get(http: AppClient, admin_token: str,
                                   pipeline: Pipeline) -> None:
    async with http.post("/v1/requests", json=BODY, headers=auth(admin_token)) as resp:
        assert resp.status == 201
        created = await resp.json()
        assert resp.headers["Location"] == created["url"]
    assert created["url"].endswith(f"/v1/requests/{created['reference']}")
    await pipeline.drain()
    request = await _get_processed(http, admin_token, created["reference"])
    assert request["subject"] == "VPN down"
    assert request["requester"] == {"email": "bob@example.com", "name": "Bob"}
    assert request["custom_fields"] == {"order": "A-17"}
    assert request["messages"][0]["text"] == "Cannot connect since 9am."
    assert request["channel"] == "api"


async def test_http__reference_lookup_forgives_case(
        http: AppClient, admin_token: str, pipeline: Pipeline) -> None:
    async with http.post("/v1/requests", json=BODY, headers=auth(admin_token)) as resp:
        ref = (await resp.json())["reference"]
    await pipeline.drain()
    await _get_processed(http, admin_token, ref)
    async with http.get(f"/v1/requests/{ref.lower().replace('-', '')}",
                        headers=auth(admin_token)) as resp:
        assert resp.status == 200
        assert (await resp.json())["reference"] == ref


async def test_http__reads_need_a_token(http: AppClient, admin_token: str) -> None:
    async with http.post("/v1/requests", json=BODY, headers=auth(admin_token)) as resp:
        ref = (await resp.json())["reference"]
    for headers in ({}, auth("itk_wrong"), {"Authorization": "Basic abc"}):
        async with http.get(f"/v1/requests/{ref}", headers=headers) as resp:
            assert resp.status == 401
            assert resp.content_type == "application/problem+json"
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_http__post_needs_a_token(http: AppClient, engine: AsyncEngine) -> None:
    async with http.post("/v1/requests", json=BODY) as resp:
        assert resp.status == 401
    assert await count_rows(engine, inbox_items) == 0


async def test_http__intake_token_may_post_not_read(
        http: AppClient, engine: AsyncEngine) -> None:
    _, token = await create_token(engine, name="web", role="intake", queues=[])
    async with http.post("/v1/requests", json=BODY, headers=auth(token)) as resp:
        assert resp.status == 201
        ref = (await resp.json())["reference"]
    async with http.get(f"/v1/requests/{ref}", headers=auth(token)) as resp:
        assert resp.status == 404


async def test_http__queue_scope_hides_other_queues(
        http: AppClient, engine: AsyncEngine, admin_token: str,
        pipeline: Pipeline) -> None:
    _, billing = await create_token(engine, name="b", role="agent", queues=["billing"])
    _, general = await create_token(engine, name="g", role="agent", queues=["general"])
    async with http.post("/v1/requests", json=BODY, headers=auth(admin_token)) as resp:
        ref = (await resp.json())["reference"]
    await pipeline.drain()
    await _get_processed(http, admin_token, ref)
    async with http.get(f"/v1/requests/{ref}", headers=auth(billing)) as resp:
        assert resp.status == 404  # the same answer as for a reference that does not exist
    async with http.get(f"/v1/requests/{ref}", headers=auth(general)) as resp:
        assert resp.status == 200


@pytest.mark.parametrize(("body", "pointers"), [
    ({"subject": "x", "body": "y"}, ["/requester"]),
    ({"requester": {"email": "nope"}, "subject": "x", "body": "y"}, ["/requester/email"]),
    ({"requester": {"email": "a@b.c"}, "subject": 5, "body": "y"}, ["/subject"]),
    ({"requester": {"email": "a@b.c"}, "subject": "x"}, ["/body"]),
    ({"requester": {"email": "a@b.c"}, "subject": "x", "body": "y", "colour": "red"},
     ["/colour"]),
    ({"requester": {"email": "a@b.c"}, "subject": "x", "body": "y",
      "custom_fields": {"a/b": [1]}}, ["/custom_fields/a~1b"]),
])
async def test_http__bad_fields_named(http: AppClient, admin_token: str,
                                      engine: AsyncEngine, body: dict[str, Any],
                                      pointers: list[str]) -> None:
    async with http.post("/v1/requests", json=body, headers=auth(admin_token)) as resp:
        assert resp.status == 422
        assert resp.content_type == "application/problem+json"
        doc = await resp.json()
    assert doc["status"] == 422
    assert [e["pointer"] for e in doc["errors"]] == pointers
    assert await count_rows(engine, inbox_items) == 0


async def test_http__malformed_json(http: AppClient, admin_token: str) -> None:
    async with http.post("/v1/requests", data=b"{not json", headers=auth(admin_token)) as resp:
        assert resp.status == 422
        doc = await resp.json(content_type=None)
    assert doc["errors"][0]["pointer"] == ""
    assert "not valid JSON" in doc["errors"][0]["detail"]


async def test_http__oversized_body_413(http: AppClient, admin_token: str,
                                        engine: AsyncEngine) -> None:
    big = dict(BODY, body="x" * 150_000)
    async with http.post("/v1/requests", json=big, headers=auth(admin_token)) as resp:
        assert resp.status == 413
        assert resp.content_type == "application/problem+json"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked upload
        for _ in range(20):
            yield b"x" * 10_000

    async with http.post("/v1/requests", data=chunks(), headers=auth(admin_token)) as resp:
        assert resp.status == 413
    assert await count_rows(engine, inbox_items) == 0


async def test_http__idempotency_key(http: AppClient, admin_token: str,
                                     engine: AsyncEngine, pipeline: Pipeline) -> None:
    headers = auth(admin_token) | {"Idempotency-Key": "form-42"}
    async with http.post("/v1/requests", json=BODY, headers=headers) as resp:
        assert resp.status == 201
        first = await resp.json()
    async with http.post("/v1/requests", json=BODY, headers=headers) as resp:
        assert resp.status == 201
        assert resp.headers["Idempotent-Replayed"] == "true"
        assert await resp.json() == first
    other = dict(BODY, subject="Something else")
    async with http.post("/v1/requests", json=other, headers=headers) as resp:
        assert resp.status == 422
        assert "Idempotency-Key" in (await resp.json())["detail"]
    await pipeline.drain()
    await _get_processed(http, admin_token, first["reference"])
    assert await count_rows(engine, inbox_items) == 1
    assert await count_rows(engine, requests) == 1


async def test_http__idempotency_key_concurrent_twins(
        http: AppClient, admin_token: str, engine: AsyncEngine) -> None:
    headers = auth(admin_token) | {"Idempotency-Key": "twin"}

    async def post() -> str:
        async with http.post("/v1/requests", json=BODY, headers=headers) as resp:
            assert resp.status == 201
            return (await resp.json())["reference"]

    refs = await asyncio.gather(*(post() for _ in range(8)))
    assert len(set(refs)) == 1
    assert await count_rows(engine, inbox_items) == 1


async def test_http__find_by_message_id(gateway: Gateway, http: AppClient,
                                        admin_token: str) -> None:
    import smtplib

    data = (b"From: c@example.com\r\nTo: support@localhost\r\nSubject: where is it\r\n"
            b"Message-ID: <lost-mail@example.com>\r\n\r\nhello\r\n")

    def send() -> None:
        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=10) as client:
            client.sendmail("c@example.com", ["support@localhost"], data)

    await asyncio.to_thread(send)

    async def find() -> list[dict[str, Any]]:
        async with http.get("/v1/requests", params={"message_id": "<lost-mail@example.com>"},
                            headers=auth(admin_token)) as resp:
            assert resp.status == 200
            return (await resp.json())["items"]

    items = await wait_for(find)
    assert items[0]["subject"] == "where is it"
    async with http.get("/v1/requests", params={"message_id": "lost-mail@example.com"},
                        headers=auth(admin_token)) as resp:
        assert (await resp.json())["items"][0]["reference"] == items[0]["reference"]
    async with http.get("/v1/requests", params={"message_id": "<nothing@x>"},
                        headers=auth(admin_token)) as resp:
        assert (await resp.json())["items"] == []
    async with http.get("/v1/requests", headers=auth(admin_token)) as resp:
        assert resp.status == 400


async def test_http__unknown_reference_404(http: AppClient, admin_token: str) -> None:
    for ref in ("ZZZZ-ZZZZ", "not-a-ref", "7PY9-9T9S"):
        async with http.get(f"/v1/requests/{ref}", headers=auth(admin_token)) as resp:
            assert resp.status == 404
            assert (await resp.json(content_type=None))["title"] == "Not Found"


async def test_http__errors_are_problem_documents(http: AppClient) -> None:
    async with http.get("/nowhere") as resp:
        assert resp.status == 404
        assert resp.content_type == "application/problem+json"
    async with http.delete("/v1/requests") as resp:
        assert resp.status == 405
        assert "Allow" in resp.headers
        assert json.loads(await resp.text())["status"] == 405


async def test_http__health_and_readiness(http: AppClient) -> None:
    async with http.get("/healthz") as resp:
        assert resp.status == 200
    async with http.get("/readyz") as resp:
        assert resp.status == 200
        assert (await resp.json())["status"] == "ready"
