"""The store path is lean: a batch of new requests writes each table in one
statement (executemany of a statement built once), its outbox rows (events and
acknowledgements) together, and what it runs comes from the compiled cache, not
compiled again per batch. JSON columns are encoded by orjson, and what orjson
refuses by the stdlib encoder."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.engine.interfaces import CacheStats
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Config
from gateway.pipeline import worker as pipeline_module
from gateway.rules_in_force import RulesHolder
from storage.engine import json_text, transaction, utcnow
from storage.inbox import NewItem, accept_many
from storage.models import messages, outbox
from storage.outbox import enqueue_rows, outbox_row
from storage.processing import claim_items
from storage.store import complete_items
from tests.helpers import count_rows


def mail(n: int) -> bytes:
    return (f"From: Person {n} <person{n}@example.com>\r\nTo: support@localhost\r\n"
            f"Subject: Question {n}\r\nMessage-ID: <lean{n}@example.com>\r\n\r\n"
            f"Question number {n}.\r\n").encode()


class Statements:
    """The INSERTs run on an engine, by table, and whether each came compiled
    from the cache."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.inserts: Counter[str] = Counter()
        self.compiled: list[str] = []
        event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
              executemany: bool) -> None:
        found = re.match(r"\s*INSERT INTO (\w+)", statement)
        if found:
            self.inserts[found.group(1)] += 1
        if context is not None and context.compiled is not None \
                and context.cache_hit is not CacheStats.CACHE_HIT:
            self.compiled.append(statement.split("\n")[0][:60])


async def test_lean_store__one_insert_per_table_per_batch(engine: AsyncEngine,
                                                          config: Config) -> None:
    await accept_many(engine, [NewItem("smtp", mail(n)) for n in range(7)])
    items = await claim_items(engine, limit=10, lease_seconds=30)
    rules = RulesHolder.load(config).rules
    work = [(item, pipeline_module.build_request(item, config, rules)) for item in items]
    assert len(work) == 7
    await complete_items(engine, work[:3])  # a first batch compiles what it runs
    seen = Statements(engine)
    stored = await complete_items(engine, work[3:])  # another size, the same statements
    assert [one.kind for one in stored] == ["new"] * 4
    # Events and acknowledgements of 4 new requests: 12 outbox rows, one INSERT;
    # 4 messages in and 4 acknowledgements out: one INSERT. On SQLite too, though
    # it cannot promise the order of a multi-row INSERT's RETURNING (SQLAlchemy
    # would insert such rows one at a time): storage/engine.py `insert_ids`.
    assert dict(seen.inserts) == {"requests": 1, "messages": 1, "outbox": 1, "events": 1}
    assert seen.compiled == []
    assert await count_rows(engine, outbox) == 7 * 3
    assert await count_rows(engine, messages, messages.c.direction == "out") == 7
    async with engine.connect() as conn:
        payloads = (await conn.execute(
            select(outbox.c.kind, outbox.c.payload).order_by(outbox.c.id))).all()
    # In the order they were before: each batch's events (created, routed per
    # request), then its acknowledgements.
    kinds = [p["event"] if kind == "event" else p["purpose"] for kind, p in payloads]
    assert kinds == (["created", "routed"] * 3 + ["acknowledgement"] * 3
                     + ["created", "routed"] * 4 + ["acknowledgement"] * 4)


def test_json_text__orjson_and_what_it_refuses() -> None:
    value = {"subject": "Grüße", "n": [1, 2.5, None, True]}
    assert json.loads(json_text(value)) == value
    # orjson refuses these; the stdlib encoder takes them as it always did.
    for refused in ({"big": 2 ** 70}, {1: "int key"}, {"s": "\ud800"}):
        assert json_text(refused) == json.dumps(refused)


async def test_json_text__columns_round_trip(engine: AsyncEngine) -> None:
    data = {"subject": "Grüße ✓", "big": 2 ** 70, "nested": {"list": [1, "two"]}}
    async with transaction(engine) as conn:
        await enqueue_rows(conn, [outbox_row("event", data, utcnow())])
    async with engine.connect() as conn:
        assert (await conn.execute(select(outbox.c.payload))).scalar_one() == data
