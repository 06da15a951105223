"""Request events to webhooks (a real aiohttp receiver) and to RabbitMQ."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import aiohttp
import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import Gateway, start, stop
from gateway.config import Config, build_config
from gateway.delivery.webhooks import verify
from storage.outbox import dead_rows
from tests.helpers import make_config, wait_for

SECRET = "s3cret-for-tests"
RABBIT = "amqp://guest:guest@127.0.0.1:5672/"


class Receiver:
    """A webhook endpoint on 127.0.0.1; it can fail the first calls."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.calls: list[dict[str, Any]] = []
        self.accepted: list[dict[str, Any]] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        call = {"event": request.headers["X-Intake-Event"],
                "delivery": request.headers["X-Intake-Delivery"],
                "verified": verify(SECRET, request.headers["X-Intake-Timestamp"], body,
                                   request.headers["X-Intake-Signature"], int(time.time())),
                "body": json.loads(body)}
        self.calls.append(call)
        if len(self.calls) <= self.fail_first:
            return web.Response(status=500)
        self.accepted.append(call)
        return web.Response(status=204)

    async def up(self) -> str:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return f"http://127.0.0.1:{self.port}/hook"

    async def down(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def config_with(db_url: str, **extra: Any) -> Config:
    base = make_config(db_url, outbound={"backoff_initial_seconds": 0.05,
                                         "backoff_max_seconds": 0.2})
    data = json.loads(base.model_dump_json(exclude={"source"}))
    return build_config(data | extra, "<test>", {})


async def post_request(gateway: Gateway, token: str, subject: str = "Hook me") -> str:
    async with aiohttp.ClientSession(base_url=gateway.http_url) as http:
        async with http.post("/v1/requests", headers={"Authorization": f"Bearer {token}"},
                             json={"requester": {"email": "w@example.com"}, "subject": subject,
                                   "body": "x"}) as resp:
            assert resp.status == 201
            return str((await resp.json())["reference"])


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver(fail_first=1)
    yield r
    await r.down()


async def test_events__signed_webhooks_retried_until_accepted_once(
        db_url: str, receiver: Receiver, admin_token: str) -> None:
    url = await receiver.up()
    gateway = await start(config_with(db_url, webhook=[{
        "name": "crm", "url": url, "events": ["created", "status_changed"], "secret": SECRET,
        "allow_private": True, "timeout": 5}]))
    try:
        ref = await post_request(gateway, admin_token)

        async def delivered() -> bool:
            return len(receiver.accepted) >= 1

        await wait_for(delivered)
        await asyncio.sleep(0.5)
    finally:
        await stop(gateway, grace=3)
    assert [c["event"] for c in receiver.accepted] == ["created"]  # "routed" not subscribed
    assert all(c["verified"] for c in receiver.calls)
    assert receiver.accepted[0]["body"]["reference"] == ref
    # The first attempt got 500, the retry 200: same delivery id, accepted once.
    assert [c["delivery"] for c in receiver.calls] == [receiver.accepted[0]["delivery"]] * 2


async def test_events__loopback_target_refused_unless_allowed(
        db_url: str, engine: AsyncEngine, admin_token: str) -> None:
    receiver = Receiver()
    url = await receiver.up()
    gateway = await start(config_with(db_url, webhook=[{
        "name": "inside", "url": url, "events": ["created"], "secret": SECRET}]))
    try:
        await post_request(gateway, admin_token)

        async def dead() -> list[dict[str, Any]]:
            return await dead_rows(engine)

        [row] = await wait_for(dead)
    finally:
        await stop(gateway, grace=3)
        await receiver.down()
    assert row["kind"] == "webhook" and row["attempts"] == 1
    assert receiver.calls == []


async def test_events__published_to_rabbitmq_once_per_event(
        db_url: str, admin_token: str) -> None:
    exchange_name = f"intake.test.{secrets.token_hex(4)}"
    try:
        connection = await aio_pika.connect_robust(RABBIT, timeout=5)
    except (OSError, aio_pika.exceptions.AMQPError) as exc:  # pragma: no cover - env check
        pytest.fail(f"RabbitMQ not reachable at 127.0.0.1:5672: {exc}")
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(exchange_name, aio_pika.ExchangeType.TOPIC,
                                                  durable=True)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, routing_key="#")
        gateway = await start(config_with(db_url, broker={"url": RABBIT,
                                                          "exchange": exchange_name}))
        try:
            refs = [await post_request(gateway, admin_token, f"event {i}") for i in range(5)]
            seen: list[tuple[str, str, str]] = []

            async def all_arrived() -> bool:
                while (message := await queue.get(fail=False, timeout=1)) is not None:
                    await message.ack()
                    body = json.loads(message.body)
                    seen.append((message.routing_key or "", body["reference"],
                                 message.message_id or ""))
                return len(seen) >= 10

            await wait_for(all_arrived, timeout=20)
            await asyncio.sleep(0.5)
            await all_arrived()
        finally:
            await stop(gateway, grace=3)
            await exchange.delete()
    counts = Counter((key, ref) for key, ref, _ in seen)
    assert set(counts) == {(e, r) for r in refs for e in ("created", "routed")}
    assert set(counts.values()) == {1}  # each event once
    assert len({mid for _, _, mid in seen}) == len(seen)
