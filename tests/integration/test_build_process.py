"""The build process (gateway/pipeline/builder.py): a real child process builds
what this one would, the pipeline stores it on both backends, and whatever
goes wrong with the child, items are built here instead and none is lost."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Config, load_config
from gateway.pipeline import builder as builder_module
from gateway.pipeline import worker as worker_module
from gateway.pipeline.builder import Builder
from gateway.pipeline.stages import Started
from gateway.pipeline.worker import Pipeline, build_request, build_steps
from gateway.rules_in_force import RulesHolder
from storage.inbox import NewItem, accept_many
from storage.models import inbox_items, requests
from storage.processing import ClaimedItem, claim_items
from storage.reference import References
from tests.helpers import make_config, normal, wait_for

RULES = {"rule": [{"name": "invoices", "when": {"subject": {"contains": "invoice"}},
                   "then": {"queue": "billing"}}]}


def mail(n: int, subject: str, body: str = "The export fails since this morning.") -> bytes:
    return (f"From: Person {n} <p{n}@d{n}.example.com>\r\nTo: support@localhost\r\n"
            f"Subject: {subject}\r\nMessage-ID: <b{n}@example.com>\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode()


def api(n: int, subject: str) -> bytes:
    return json.dumps({"requester": {"email": f"a{n}@e{n}.example.com", "name": "Ann"},
                       "subject": subject, "body": "Bonjour, la facture ne s'ouvre pas.",
                       "custom_fields": {"n": n, "ratio": 0.5}}).encode()


ITEMS = [
    NewItem("smtp", mail(1, "Invoice 12 is wrong"), {"mail_from": "p1@d1.example.com",
                                                     "rcpt_to": ["support@localhost"]}),
    NewItem("smtp", mail(2, "=?utf-8?q?Dr=C3=BCcker_kaputt?=",
                         "Hallo,\r\n\r\n> quoted\r\n\r\nDer Drucker druckt nicht.\r\n--\r\nBen"),
            {"mail_from": "p2@d2.example.com", "rcpt_to": ["support@localhost"]}),
    NewItem("lmtp", mail(3, "A NUL \x00 in the subject"), {"rcpt_to": ["billing@localhost"]}),
    NewItem("api", api(4, "invoice export"), {}),
    NewItem("api", api(5, "login fails"), {}),
]


def claimed(items: list[NewItem]) -> list[ClaimedItem]:
    refs = References(b"a key of this install", 1000)
    at = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    return [ClaimedItem(n + 1, i.channel, i.raw, i.meta, 1, at, "c" * 32, refs)
            for n, i in enumerate(items)]


async def ready(builder: Builder, config: Config) -> None:
    builder.prepare(config)
    await wait_for(lambda: _ready(builder), timeout=60)


async def _ready(builder: Builder) -> bool:
    return builder._child is not None  # noqa: SLF001 - what the tests wait for


@pytest.fixture
def built_here(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Ids of the items the pipeline built in this process."""
    ids: list[int] = []

    def counted(item: ClaimedItem, *args: Any) -> Started:
        ids.append(item.id)
        return build_steps(item, *args)

    monkeypatch.setattr(worker_module, "build_steps", counted)
    return ids


async def test_builder__builds_what_this_process_builds() -> None:
    config = make_config("sqlite+aiosqlite:///unused.db", **RULES)
    items = claimed(ITEMS)
    builder = Builder(timeout=60)
    try:
        await ready(builder, config)
        there = await builder.build(items, config, {})
    finally:
        await builder.close()
    here = [build_request(item, config, config.rules, config.sla) for item in items]
    assert builder.batches == 1
    assert all(new is not None for new in there)
    assert [normal(new) for new in there if new is not None] == [normal(n) for n in here]
    assert [new.queue for new in here] == ["billing", "general", "general", "billing",
                                           "general"]
    # What the fitting changed (the NUL), recorded alike.
    assert there[2] is not None and "\x00" not in there[2].message.subject


async def test_pipeline__stores_what_the_build_process_built(
        engine: AsyncEngine, db_url: str, built_here: list[int]) -> None:
    config = make_config(db_url, **RULES)
    pipeline = Pipeline(engine=engine, config=config, build_process=True)
    builder = pipeline._builder  # noqa: SLF001
    assert builder is not None
    await ready(builder, config)
    ids = await accept_many(engine, ITEMS)
    assert await pipeline.drain() == len(ITEMS)
    assert builder.batches >= 1 and built_here == []
    async with engine.connect() as conn:
        rows = dict((await conn.execute(
            select(requests.c.inbox_item_id, requests.c.queue))).all())
    assert [rows[i] for i in ids] == ["billing", "general", "general", "billing", "general"]


async def test_pipeline__a_dead_build_process_loses_nothing(
        engine: AsyncEngine, db_url: str, built_here: list[int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(builder_module, "FIRST_PAUSE", 0.2)
    config = make_config(db_url, **RULES)
    pipeline = Pipeline(engine=engine, config=config, build_process=True)
    builder = pipeline._builder  # noqa: SLF001
    assert builder is not None
    await ready(builder, config)
    ask = builder_module._Child.ask  # noqa: SLF001

    async def dies_midway(child: Any, request: tuple[Any, ...]) -> tuple[Any, ...]:
        if request[0] == "build":  # the batch is on its way when the child dies
            os.kill(child.process.pid, signal.SIGKILL)
        return await ask(child, request)

    monkeypatch.setattr(builder_module._Child, "ask", dies_midway)  # noqa: SLF001
    first = await accept_many(engine, ITEMS[:3])
    assert await pipeline.drain() == 3
    assert sorted(built_here) == sorted(first)  # built here instead, at once
    assert builder.batches == 0

    # Started again after its pause, it builds the next batch.
    monkeypatch.setattr(builder_module._Child, "ask", ask)  # noqa: SLF001
    await asyncio.sleep(0.3)
    await ready(builder, config)
    built_here.clear()
    await accept_many(engine, ITEMS[3:])
    assert await pipeline.drain() == 2
    assert built_here == [] and builder.batches == 1
    async with engine.connect() as conn:
        stored = (await conn.execute(select(requests.c.inbox_item_id))).scalars().all()
        states = set((await conn.execute(select(inbox_items.c.state))).scalars())
    assert len(stored) == len(set(stored)) == len(ITEMS) and states == {"done"}


async def test_pipeline__an_item_that_fails_there_fails_here_as_before(
        engine: AsyncEngine, db_url: str, built_here: list[int]) -> None:
    config = make_config(db_url)
    pipeline = Pipeline(engine=engine, config=config, build_process=True)
    builder = pipeline._builder  # noqa: SLF001
    assert builder is not None
    await ready(builder, config)
    [good, bad] = await accept_many(engine, [ITEMS[3], NewItem("api", b"{not json", {})])
    assert await pipeline.drain() == 1
    # Built again here, where its error is recorded (once per attempt made).
    assert built_here and set(built_here) == {bad}
    async with engine.connect() as conn:
        rows = {row.id: row for row in await conn.execute(
            select(inbox_items.c.id, inbox_items.c.state, inbox_items.c.last_error))}
    assert rows[good].state == "done"
    assert rows[bad].state in ("pending", "dead")
    assert (rows[bad].last_error or "").startswith(
        "ValueError: stored API body no longer validates"), rows[bad]


async def test_pipeline__a_reload_reaches_the_build_process(
        engine: AsyncEngine, db_url: str, tmp_path: Path, built_here: list[int]) -> None:
    file = tmp_path / "intake.toml"
    text = (f'[database]\nurl = "{db_url}"\n[pipeline]\nbuild_process = true\n'
            '[[queue]]\nname = "general"\n[[queue]]\nname = "billing"\n'
            '[[rule]]\nname = "invoices"\nwhen = { subject.contains = "invoice" }\n'
            'then = { queue = "billing" }\n')
    file.write_text(text)
    holder = RulesHolder.load(load_config(file, env={}))
    pipeline = Pipeline(engine=engine, config=holder.config, rules=holder, build_process=True)
    builder = pipeline._builder  # noqa: SLF001
    assert builder is not None
    await ready(builder, holder.config)
    try:
        [before] = await accept_many(engine, [ITEMS[3]])
        await pipeline.process_batch(await claim_items(engine, limit=10, lease_seconds=30))

        # The same child is given the reloaded config before its next batch.
        child = builder._child  # noqa: SLF001
        file.write_text(text.replace('contains = "invoice"', 'contains = "login"'))
        assert holder.reload().ok
        after = await accept_many(engine, ITEMS[3:])
        await pipeline.process_batch(await claim_items(engine, limit=10, lease_seconds=30))
        assert builder._child is child  # noqa: SLF001
    finally:
        await builder.close()
    assert built_here == [] and builder.batches == 2
    async with engine.connect() as conn:
        rows = dict((await conn.execute(
            select(requests.c.inbox_item_id, requests.c.queue))).all())
    assert rows[before] == "billing"
    assert [rows[i] for i in after] == ["general", "billing"]  # the reloaded rule


async def test_pipeline__a_config_changed_by_hand_is_built_here(
        engine: AsyncEngine, db_url: str, built_here: list[int]) -> None:
    config = make_config(db_url, **RULES)
    changed = config.model_copy(update={"queue": config.queue})  # no recipe makes this
    pipeline = Pipeline(engine=engine, config=changed, build_process=True)
    builder = pipeline._builder  # noqa: SLF001
    assert builder is not None
    builder.prepare(changed)
    ids = await accept_many(engine, ITEMS)
    assert await pipeline.drain() == len(ITEMS)
    assert sorted(built_here) == sorted(ids) and builder.batches == 0
    assert builder._child is None and builder._starting is None  # noqa: SLF001


async def test_builder__a_batch_does_not_wait_long_behind_a_slow_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(builder_module, "TURN_WAIT", 0.2)
    config = make_config("sqlite+aiosqlite:///unused.db")
    items = claimed(ITEMS)
    builder = Builder(timeout=60)
    try:
        await ready(builder, config)
        async with builder._turn:  # noqa: SLF001 - another batch is in the child
            async with asyncio.timeout(5):
                waited = await builder.build(items, config, {})
        assert waited == [None] * len(items)  # built in the gateway process instead
        assert all(new is not None for new in await builder.build(items, config, {}))
    finally:
        await builder.close()
    assert builder.batches == 1
