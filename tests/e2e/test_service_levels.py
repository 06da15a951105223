"""Service levels end to end: deadlines, pauses, first response, escalations once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import Gateway, start, stop
from gateway.config import load_config
from gateway.pipeline.scheduler import Scheduler
from storage import queries
from storage.engine import utcnow
from storage.models import outbox, requests, sla_marks
from tests.helpers import wait_for

CONFIG = '''
[intake]
addresses = ["support@localhost"]
[pipeline]
workers = 1
poll_seconds = 0.2
linger_seconds = 0.01
scheduler_seconds = 3600   # the tests run passes by hand

[[queue]]
name = "general"
[[queue]]
name = "duty"

[[sla]]
name = "standard"
first_response = "1h"
resolution = "8h"
warn_at = 0.5

[[escalation]]
name = "first response breached"
when = { breached = "first_response" }
then = { queue = "duty", escalation = "+1", notify = true }

[[escalation]]
name = "nobody took it"
when = { unclaimed_for = "30m" }
then = { priority = "P2" }
'''


@pytest.fixture
async def sla_gateway(db_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    path = tmp_path / "intake.toml"
    path.write_text(CONFIG)
    config = load_config(path, env={"INTAKE_DATABASE_URL": db_url,
                                    "INTAKE_SMTP_LISTEN": "127.0.0.1:0",
                                    "INTAKE_HTTP_LISTEN": "127.0.0.1:0"})
    gateway = await start(config)
    yield gateway
    await stop(gateway, grace=3)


async def new_request(gateway: Gateway, token: str, engine: AsyncEngine) -> dict[str, Any]:
    async with aiohttp.ClientSession(base_url=gateway.http_url) as http:
        async with http.post("/v1/requests", headers={"Authorization": f"Bearer {token}"},
                             json={"requester": {"email": "s@example.com"}, "subject": "Slow",
                                   "body": "x"}) as resp:
            reference = (await resp.json())["reference"]

    async def stored() -> dict[str, Any] | None:
        found = await queries.get_request(engine, reference)
        return found if found and found.get("status") == "new" else None

    return await wait_for(stored)


async def age(engine: AsyncEngine, reference: str, by: timedelta) -> None:
    """Move a request's life into the past, as if time had passed."""
    def aware(value: datetime | None) -> datetime | None:
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)

    async with engine.begin() as conn:
        row = (await conn.execute(select(requests.c.created_at, requests.c.first_response_at)
                                  .where(requests.c.reference == reference))).one()
        values: dict[str, Any] = {"created_at": aware(row.created_at) - by,  # type: ignore[operator]
                                  "next_check_at": utcnow()}
        if row.first_response_at is not None:
            values["first_response_at"] = aware(row.first_response_at) - by  # type: ignore[operator]
        await conn.execute(update(requests).where(requests.c.reference == reference)
                           .values(values))


async def api_request(gateway: Gateway, token: str, reference: str) -> dict[str, Any]:
    async with aiohttp.ClientSession(base_url=gateway.http_url) as http:
        async with http.get(f"/v1/requests/{reference}",
                            headers={"Authorization": f"Bearer {token}"}) as resp:
            return dict(await resp.json())


def close_to(value: str | datetime, expected: datetime, slack: float = 5.0) -> bool:
    actual = datetime.fromisoformat(value) if isinstance(value, str) else value
    return abs((actual - expected).total_seconds()) < slack


async def test_sla__deadlines_shown_with_warning_threshold(
        sla_gateway: Gateway, engine: AsyncEngine, admin_token: str) -> None:
    request = await new_request(sla_gateway, admin_token, engine)
    shown = await api_request(sla_gateway, admin_token, request["reference"])
    created = datetime.fromisoformat(shown["created_at"])
    sla = shown["sla"]
    assert sla["policy"] == "standard" and sla["warn_at_fraction"] == 0.5
    assert close_to(sla["first_response"]["due_at"], created + timedelta(hours=1))
    assert close_to(sla["first_response"]["warn_at"], created + timedelta(minutes=30))
    assert close_to(sla["resolution"]["due_at"], created + timedelta(hours=8))
    assert sla["first_response"]["status"] == "ok"
    assert close_to(shown["due_at"], created + timedelta(hours=1))


async def test_sla__breach_escalates_once_across_schedulers(
        sla_gateway: Gateway, engine: AsyncEngine, admin_token: str) -> None:
    request = await new_request(sla_gateway, admin_token, engine)
    ref = request["reference"]
    await age(engine, ref, timedelta(minutes=90))
    holder = sla_gateway.rules
    # two processes' worth
    a, b = Scheduler(engine=engine, rules=holder), Scheduler(engine=engine, rules=holder)
    await asyncio.gather(a.tick(), b.tick())
    for _ in range(3):
        async with engine.begin() as conn:
            await conn.execute(update(requests).values(next_check_at=utcnow()))
        await asyncio.gather(a.tick(), b.tick())
    after = await queries.get_request(engine, ref)
    assert after is not None
    assert (after["queue"], after["escalation_level"], after["priority"]) == ("duty", 1, "P2")
    kinds = [e["kind"] for e in after["timeline"]]
    # Once each: the warning (no rule fires on it), the breach and "nobody took it".
    assert (kinds.count("sla_warning"), kinds.count("escalated")) == (1, 2)
    async with engine.connect() as conn:
        marks = set((await conn.execute(select(sla_marks.c.mark))).scalars())
        escalation_events = (await conn.execute(
            select(outbox.c.payload).where(outbox.c.kind == "event"))).scalars().all()
    assert marks == {"first_response:warning", "first_response:breached",
                     "unclaimed:nobody took it"}
    notified = [p for p in escalation_events if p["event"] == "escalated"]
    assert len(notified) == 2  # the breach (notify) and the unclaimed rule (changed fields)
    assert a.steps_taken + b.steps_taken == 3


async def test_sla__first_reply_stops_first_response_clock(
        sla_gateway: Gateway, engine: AsyncEngine, admin_token: str) -> None:
    request = await new_request(sla_gateway, admin_token, engine)
    ref = request["reference"]
    async with aiohttp.ClientSession(base_url=sla_gateway.http_url) as http:
        async with http.post(f"/v1/requests/{ref}/replies", json={"body": "On it."},
                             headers={"Authorization": f"Bearer {admin_token}"}) as resp:
            assert resp.status == 201
    await age(engine, ref, timedelta(minutes=90))
    await Scheduler(engine=engine, rules=sla_gateway.rules).tick()
    shown = await api_request(sla_gateway, admin_token, ref)
    assert shown["sla"]["first_response"]["status"] == "met"
    assert shown["queue"] == "general"  # no breach, no escalation to duty


async def test_sla__waiting_on_customer_pauses_the_clock(
        sla_gateway: Gateway, engine: AsyncEngine, admin_token: str) -> None:
    request = await new_request(sla_gateway, admin_token, engine)
    ref = request["reference"]
    await age(engine, ref, timedelta(hours=1))  # it came in an hour ago
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with aiohttp.ClientSession(base_url=sla_gateway.http_url) as http:
        async with http.get(f"/v1/requests/{ref}", headers=headers) as resp:
            etag = resp.headers["ETag"]
            before = (await resp.json())["sla"]["resolution"]["due_at"]
        async with http.patch(f"/v1/requests/{ref}", json={"status": "waiting"},
                              headers=headers | {"If-Match": etag}) as resp:
            assert resp.status == 200
            etag = resp.headers["ETag"]
        shown = await api_request(sla_gateway, admin_token, ref)
        assert shown["sla"]["resolution"]["paused"] is True
        # The customer took 30 minutes to answer (the pause, moved into the past).
        async with engine.begin() as conn:
            start = utcnow() - timedelta(minutes=30)
            await conn.execute(update(requests).where(requests.c.reference == ref)
                               .values(sla_paused_at=start))
        async with http.patch(f"/v1/requests/{ref}", json={"status": "open"},
                              headers=headers | {"If-Match": etag}) as resp:
            assert resp.status == 200
    await Scheduler(engine=engine, rules=sla_gateway.rules).tick()
    shown = await api_request(sla_gateway, admin_token, ref)
    moved = datetime.fromisoformat(shown["sla"]["resolution"]["due_at"]) - \
        datetime.fromisoformat(before)
    assert timedelta(minutes=29) < moved < timedelta(minutes=32)
    assert shown["sla"]["resolution"]["paused"] is False
    assert close_to(shown["resolution_due_at"], datetime.fromisoformat(
        shown["sla"]["resolution"]["due_at"]))
