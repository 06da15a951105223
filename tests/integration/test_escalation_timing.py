"""Time-based escalations fire on time: a new request's next check is the
earliest moment any time-based condition can become true (an `unclaimed_for`
rule as much as an SLA warning), with or without an SLA policy, and the
scheduler, run on an injected clock, acts within one interval of it."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Config
from gateway.pipeline.scheduler import Scheduler
from gateway.pipeline.worker import Pipeline
from gateway.rules_in_force import RulesHolder
from storage.engine import as_utc
from storage.inbox import NewItem, accept_many
from storage.models import events, requests
from storage.processing import claim_items
from tests.helpers import make_config

INTERVAL = 5.0  # seconds between two scheduler passes
BODY = b'{"requester": {"email": "ann@example.com"}, "subject": "Printer", "body": "x"}'
ESCALATIONS = [
    {"name": "nobody took it", "when": {"unclaimed_for": "3m"}, "then": {"priority": "P1"}},
    {"name": "first response late", "when": {"breached": "first_response"},
     "then": {"queue": "billing"}},
]
# A warning a day away: before the fix, the first check waited for it.
SLA = [{"name": "standard", "first_response": "24h", "resolution": "72h"}]


def timed_config(db_url: str, *, with_sla: bool) -> Config:
    return make_config(db_url, escalation=ESCALATIONS, **({"sla": SLA} if with_sla else {}))


async def store_one(engine: AsyncEngine, config: Config, holder: RulesHolder) -> dict[str, Any]:
    await accept_many(engine, [NewItem("api", BODY, {"token_id": 1})])
    pipeline = Pipeline(engine=engine, config=config, rules=holder)
    await pipeline.process_batch(await claim_items(engine, limit=10, lease_seconds=30))
    return await read(engine)


async def read(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (await conn.execute(select(requests))).one()._asdict()
    return row | {key: as_utc(row[key]) for key in ("created_at", "next_check_at")}


@pytest.mark.parametrize("with_sla", [False, True], ids=["no-policy", "policy"])
async def test_escalation_timing__unclaimed_fires_within_one_interval(
        db_url: str, engine: AsyncEngine, with_sla: bool) -> None:
    config = timed_config(db_url, with_sla=with_sla)
    holder = RulesHolder.load(config)
    stored = await store_one(engine, config, holder)
    created: datetime = stored["created_at"]
    due = created + timedelta(minutes=3)
    assert stored["sla_policy"] == ("standard" if with_sla else None)
    # The first check is the unclaimed rule's moment, not the warning a day away
    # (nor never, without a policy); it may be a little early (the item's
    # receipt), never late.
    assert stored["next_check_at"] is not None
    assert due - timedelta(seconds=30) <= stored["next_check_at"] <= due

    now = created + timedelta(seconds=2.5)  # passes every INTERVAL, in any phase
    scheduler = Scheduler(engine=engine, rules=holder, interval=INTERVAL, clock=lambda: now)
    fired_at = None
    for _ in range(int(timedelta(minutes=4).total_seconds() / INTERVAL)):
        if await scheduler.tick():
            fired_at = now
            break
        now += timedelta(seconds=INTERVAL)
    assert fired_at is not None, "the unclaimed_for rule never fired"
    assert due <= fired_at < due + timedelta(seconds=INTERVAL)
    after = await read(engine)
    assert after["priority"] == "P1"
    async with engine.connect() as conn:
        kinds = list((await conn.execute(
            select(events.c.kind).where(events.c.kind == "escalated"))).scalars())
    assert kinds == ["escalated"]
    # Checked again later (the SLA's warning, or the periodic look), never at once.
    assert after["next_check_at"] is not None and after["next_check_at"] > fired_at


async def test_escalation_timing__a_p1_stays_p1(db_url: str, engine: AsyncEngine,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """The README's example ("nobody took it" sets P2) raises a P3 but never turns a
    P1 into a P2; the step is still taken once, recorded and logged."""
    caplog.set_level(logging.INFO, logger="intake.scheduler")
    config = make_config(db_url, escalation=[
        {"name": "nobody took it", "when": {"unclaimed_for": "30m"},
         "then": {"priority": "P2", "notify": True}}])
    holder = RulesHolder.load(config)
    stored = await store_one(engine, config, holder)
    async with engine.begin() as conn:
        await conn.execute(requests.update().values(priority="P1"))
    later = stored["created_at"] + timedelta(minutes=31)
    assert await Scheduler(engine=engine, rules=holder, clock=lambda: later).tick() == 1
    assert (await read(engine))["priority"] == "P1"
    async with engine.connect() as conn:
        data = (await conn.execute(select(events.c.data)
                                   .where(events.c.kind == "escalated"))).scalar_one()
    assert data["rules"] == ["nobody took it"] and data["changes"] == {}
    [logged] = [r for r in caplog.records if r.name == "intake.scheduler"]
    assert (logged.event, logged.reference, logged.mark) == (  # type: ignore[attr-defined]
        "escalated", stored["reference"], "unclaimed:nobody took it")


async def test_escalation_timing__warning_and_breach_logged(
        db_url: str, engine: AsyncEngine, caplog: pytest.LogCaptureFixture) -> None:
    """A breach with no rule on it is still logged (reference, mark; no content)."""
    caplog.set_level(logging.INFO, logger="intake.scheduler")
    config = make_config(db_url, sla=[{"name": "quick", "first_response": "1h"}])
    holder = RulesHolder.load(config)
    stored = await store_one(engine, config, holder)
    late = stored["created_at"] + timedelta(minutes=61)
    assert await Scheduler(engine=engine, rules=holder, clock=lambda: late).tick() == 2
    logged = [(r.event, r.reference, r.mark)  # type: ignore[attr-defined]
              for r in caplog.records if r.name == "intake.scheduler"]
    assert logged == [("sla_warning", stored["reference"], "first_response:warning"),
                      ("sla_breached", stored["reference"], "first_response:breached")]
    assert all("ann@example.com" not in r.getMessage() for r in caplog.records)
