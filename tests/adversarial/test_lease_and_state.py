"""Threat: a claim that runs out under its worker, and a worker that then changes
an item it no longer holds.

The one-by-one fallback with retries outlived the 60 s lease, which was never
renewed; another worker re-claimed the items, and marking an item dead
overwrote `done`. Now a worker renews its batch's lease while it works, and
every change of an item's state (renewed, done, failed, dead, deferred) is made
only under the worker's own claim token (storage/processing.py): a worker
whose lease ran out changes nothing, and leaves the item to its new claimant.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.lifecycle import ItemState
from gateway.config import Config
from gateway.pipeline import worker as worker_module
from gateway.pipeline.worker import Pipeline
from storage.engine import create_engine, utcnow
from storage.inbox import NewItem, accept_many
from storage.models import inbox_items, requests
from storage.processing import ClaimedItem, claim_items, defer_items, fail_item
from tests.adversarial.hostile import mail
from tests.helpers import count_rows, make_config

LATER = timedelta(seconds=61)  # past the 60 s lease the tests claim with


async def _state(engine: AsyncEngine, item_id: int) -> tuple[str, str | None]:
    async with engine.connect() as conn:
        row = (await conn.execute(select(inbox_items.c.state, inbox_items.c.last_error)
                                  .where(inbox_items.c.id == item_id))).one()
    return row[0], row[1]


async def _taken_over(engine: AsyncEngine) -> tuple[ClaimedItem, ClaimedItem]:
    """One item claimed by a worker whose lease then ran out, and by another since."""
    await accept_many(engine, [NewItem("smtp", mail(subject="leased", message_id="<l@x>"))])
    [stale] = await claim_items(engine, limit=1, lease_seconds=60)
    [current] = await claim_items(engine, limit=1, lease_seconds=60, now=utcnow() + LATER)
    assert current.id == stale.id
    return stale, current


async def test_pipeline__expired_claim_cannot_dead_letter_an_item_done_since(
        engine: AsyncEngine, config: Config) -> None:
    stale, current = await _taken_over(engine)
    await Pipeline(engine=engine, config=config).process_batch([current])
    assert await _state(engine, current.id) == (ItemState.DONE, None)
    # The stale worker now finds the item failing for good (claimed too often).
    await Pipeline(engine=engine, config=config).process_batch(
        [replace(stale, attempts=10_000)])
    assert await _state(engine, current.id) == (ItemState.DONE, None)


async def test_pipeline__expired_claim_cannot_fail_or_store_an_item_another_holds(
        engine: AsyncEngine, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    stale, current = await _taken_over(engine)
    original = worker_module.BUILDERS["smtp"]

    def broken(*args: Any) -> Any:
        raise RuntimeError("the stale worker's parse fails")

    monkeypatch.setitem(worker_module.BUILDERS, "smtp", broken)
    await Pipeline(engine=engine, config=config).process_batch([stale])
    assert await _state(engine, stale.id) == (ItemState.PROCESSING, None)
    monkeypatch.setitem(worker_module.BUILDERS, "smtp", original)
    await Pipeline(engine=engine, config=config).process_batch([stale])
    # Not stored by the stale worker: the item is still the current claimant's.
    assert await _state(engine, stale.id) == (ItemState.PROCESSING, None)
    assert await count_rows(engine, requests) == 0
    await Pipeline(engine=engine, config=config).process_batch([current])
    assert await _state(engine, current.id) == (ItemState.DONE, None)
    assert await count_rows(engine, requests) == 1


async def test_pipeline__expired_claim_cannot_defer_an_item_done_since(
        engine: AsyncEngine, config: Config) -> None:
    stale, current = await _taken_over(engine)
    await Pipeline(engine=engine, config=config).process_batch([current])
    assert await defer_items(engine, [stale], "late", retry_at=utcnow()) == 0
    assert not await fail_item(engine, stale.id, "late", dead=False, claim=stale.claim)
    assert not await fail_item(engine, stale.id, "late", dead=True, claim=stale.claim)
    assert await _state(engine, current.id) == (ItemState.DONE, None)


async def test_pipeline__lease_renewed_while_the_worker_is_on_its_batch(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store that takes three leases long: no other worker may claim the items
    meanwhile, and they end done, stored once."""
    lease = 1.0
    config = make_config(db_url, pipeline={"lease_seconds": lease})
    real = worker_module.complete_items

    async def slow(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(lease * 3)
        return await real(*args, **kwargs)

    monkeypatch.setattr(worker_module, "complete_items", slow)
    engine = create_engine(db_url)
    try:
        await accept_many(engine, [NewItem("smtp", mail(subject=f"slow {n}",
                                                        message_id=f"<s{n}@x>"))
                                   for n in range(3)])
        pipeline = Pipeline(engine=engine, config=config)
        items = await claim_items(engine, limit=10, lease_seconds=lease)
        working = asyncio.create_task(pipeline.process_batch(items))
        taken: list[ClaimedItem] = []
        while not working.done():
            taken += await claim_items(engine, limit=10, lease_seconds=lease)
            await asyncio.sleep(0.1)
        await working
        assert taken == []
        assert await count_rows(engine, requests) == 3
        assert await count_rows(engine, inbox_items,
                                inbox_items.c.state == ItemState.DONE) == 3
    finally:
        with contextlib.suppress(Exception):
            await engine.dispose()
