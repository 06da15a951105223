"""The database's figures for /metrics: right on both backends, read by one
process per database (the advisory-lock lead on PostgreSQL), and at most once
per `[metrics] database_seconds` however often it is scraped."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.lifecycle import ItemState
from gateway.metrics_export import Exporter
from gateway.pipeline.worker import Pipeline
from storage.engine import create_engine, transaction, utcnow
from storage.inbox import NewItem, accept_many
from storage.models import inbox_items, requests
from storage.monitoring import Lead, figures
from tests.helpers import make_config

MAIL = (b"From: Ann <ann@example.com>\r\nTo: support@localhost\r\nSubject: Printer\r\n"
        b"Message-ID: <%d@example.com>\r\n\r\nIt is on fire.\r\n")


async def _accept(engine: AsyncEngine, count: int) -> list[int]:
    return await accept_many(engine, [NewItem("smtp", MAIL % n, {"rcpt_tos": ["support@localhost"]})
                                      for n in range(count)])


async def test_figures__backlog_queues_and_claims(engine: AsyncEngine, db_url: str) -> None:
    config = make_config(db_url)
    await _accept(engine, 3)
    assert await Pipeline(engine=engine, config=config).drain() == 3
    ids = await _accept(engine, 2)
    now = utcnow()
    async with transaction(engine) as conn:
        await conn.execute(update(inbox_items).where(inbox_items.c.id == ids[0]).values(
            state=ItemState.DEAD))
        await conn.execute(update(inbox_items).where(inbox_items.c.id == ids[1]).values(
            next_attempt_at=now - timedelta(seconds=42)))
        # One request claimed by an agent whose lease ran out, one past due.
        first, second = [row.id for row in (await conn.execute(
            requests.select().order_by(requests.c.id).limit(2))).all()]
        await conn.execute(update(requests).where(requests.c.id == first).values(
            claimed_by="token:1", claim_until=now - timedelta(seconds=5)))
        await conn.execute(update(requests).where(requests.c.id == second).values(
            claimed_by="token:1", claim_until=now + timedelta(seconds=60),
            due_at=now - timedelta(seconds=1)))
    found = await figures(engine, ["general", "billing"])
    assert found.inbox == {"pending": 1, "dead": 1}
    assert 42 <= found.lag_seconds < 60
    general, billing = found.queues
    assert (general.open, general.unclaimed, general.past_due, general.expired_claims) == (
        3, 2, 1, 1)
    assert general.oldest_waiting_seconds > 0
    assert (billing.open, billing.unclaimed, billing.oldest_waiting_seconds) == (0, 0, 0.0)
    assert found.dead == 1


async def test_figures__one_lead_per_postgresql_database(pg_url: str) -> None:
    engines = [create_engine(pg_url) for _ in range(2)]
    leads = [Lead(engine) for engine in engines]
    try:
        assert await leads[0].figures(["general"]) is not None
        assert await leads[1].figures(["general"]) is None  # the other process leads
        assert (leads[0].holding, leads[1].holding) == (True, False)
        await leads[0].close()  # its process stops (or dies: the lock goes with it)
        assert await leads[1].figures(["general"]) is not None
        assert await leads[0].figures(["general"]) is None
    finally:
        for lead in leads:
            await lead.close()
        for engine in engines:
            await engine.dispose()


async def test_figures__read_at_most_once_per_interval(engine: AsyncEngine, db_url: str) -> None:
    now = [1000.0]
    config = make_config(db_url, metrics={"database_seconds": 15})
    exporter = Exporter(config=config, engine=engine, listeners=[], clock=lambda: now[0])
    try:
        await exporter.refresh()
        first = exporter.figures
        assert first is not None
        await _accept(engine, 2)
        for _ in range(5):  # scrapes within the interval: the figures kept
            now[0] += 2.0
            body, _ = await exporter.exposition()
            assert exporter.figures is first
        assert _pending(body) == 0
        now[0] += 6.0  # 16 s since the read
        body, content_type = await exporter.exposition()
        assert exporter.figures is not first
        assert _pending(body) == 2
        assert content_type.startswith("text/plain; version=0.0.4")
    finally:
        await exporter.stop()


def _pending(body: bytes) -> float:
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == "intake_pipeline_items" and sample.labels == {"state": "pending"}:
                return sample.value
    raise AssertionError("intake_pipeline_items not exported")
