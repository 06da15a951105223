"""Claims, leases and queue listings on both backends."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import claims
from storage.engine import utcnow
from storage.inbox import NewItem, accept_many
from storage.models import requests
from storage.processing import claim_items
from storage.records import NewMessage, NewRequest
from storage.store import complete_items


async def make_requests(engine: AsyncEngine, count: int, *, queue: str = "general",
                        **fields: Any) -> list[str]:
    """Committed, processed requests, made in batches (no parsing involved)."""
    references: list[str] = []
    for start in range(0, count, 500):
        n = min(500, count - start)
        await accept_many(engine, [NewItem("api", b"{}") for _ in range(n)])
        items = await claim_items(engine, limit=n, lease_seconds=60)
        work = [(item, NewRequest(
            queue=queue, message=NewMessage(subject=f"r{start + i}", text="t", new_text="t",
                                            from_address="a@example.com", from_name=None),
            requester_email="a@example.com", requester_name=None, **fields))
            for i, item in enumerate(items)]
        references += [s.reference for s in await complete_items(engine, work)]
    return references


async def test_claims__concurrent_claimers_take_each_request_once(engine: AsyncEngine) -> None:
    total = 2000 if engine.dialect.name == "postgresql" else 400
    created = set(await make_requests(engine, total))
    taken: dict[str, list[str]] = {}

    async def agent(n: int) -> None:
        while got := await claims.claim(engine, "general", f"agent-{n}", limit=5,
                                        lease_seconds=300):
            taken.setdefault(f"agent-{n}", []).extend(c.reference for c in got)

    await asyncio.gather(*(agent(n) for n in range(16)))
    every = [ref for refs in taken.values() for ref in refs]
    assert len(every) == len(set(every)) == total  # each claimed exactly once
    assert set(every) == created
    assert len(taken) > 1  # the work was really shared


async def test_claims__expired_lease_returns_request(engine: AsyncEngine) -> None:
    [ref] = await make_requests(engine, 1)
    [first] = await claims.claim(engine, "general", "ann", limit=1, lease_seconds=300)
    assert first.reference == ref
    assert await claims.claim(engine, "general", "bob", limit=1, lease_seconds=300) == []
    async with engine.begin() as conn:  # the lease runs out (ann's tool died)
        await conn.execute(update(requests).values(claim_until=utcnow() - timedelta(seconds=1)))
    [again] = await claims.claim(engine, "general", "bob", limit=1, lease_seconds=300)
    assert again.reference == ref
    assert await claims.renew(engine, ref, "ann", 300) is None  # ann lost it


async def test_claims__renewed_lease_holds(engine: AsyncEngine) -> None:
    [ref] = await make_requests(engine, 1)
    await claims.claim(engine, "general", "ann", limit=1, lease_seconds=1)
    until = await claims.renew(engine, ref, "ann", 120)
    assert until is not None and until > utcnow() + timedelta(seconds=100)
    await asyncio.sleep(1.2)  # past the first lease
    assert await claims.claim(engine, "general", "bob", limit=1, lease_seconds=300) == []


async def test_claims__release_puts_work_back(engine: AsyncEngine) -> None:
    [ref] = await make_requests(engine, 1)
    await claims.claim(engine, "general", "ann", limit=1, lease_seconds=300)
    assert not await claims.release(engine, ref, "bob")
    assert await claims.release(engine, ref, "ann")
    [again] = await claims.claim(engine, "general", "bob", limit=1, lease_seconds=300)
    assert again.reference == ref


async def test_claims__priority_then_due_order(engine: AsyncEngine) -> None:
    low = await make_requests(engine, 2, priority="P4")
    high = await make_requests(engine, 2, priority="P1")
    now = utcnow()
    async with engine.begin() as conn:
        await conn.execute(update(requests).where(requests.c.reference == high[1])
                           .values(due_at=now + timedelta(hours=1)))
        await conn.execute(update(requests).where(requests.c.reference == high[0])
                           .values(due_at=now + timedelta(hours=2)))
    got = await claims.claim(engine, "general", "ann", limit=4, lease_seconds=60)
    assert [c.reference for c in got][:2] == [high[1], high[0]]
    items, _ = await claims.list_queue(engine, "general", filters=claims.ListFilters(),
                                       limit=10, cursor=None)
    assert [i["reference"] for i in items] == [high[1], high[0], *low]


async def test_claims__listing_pages_with_cursor_and_filters(engine: AsyncEngine) -> None:
    refs = await make_requests(engine, 25, priority="P3", tags=["vip"])
    await make_requests(engine, 5, priority="P2", tags=["other"])
    seen: list[str] = []
    cursor = None
    while True:
        items, cursor = await claims.list_queue(engine, "general",
                                                filters=claims.ListFilters(tag="vip"),
                                                limit=10, cursor=cursor)
        seen += [i["reference"] for i in items]
        if cursor is None:
            break
    assert seen == refs
    items, _ = await claims.list_queue(engine, "general",
                                       filters=claims.ListFilters(priority="P2"),
                                       limit=50, cursor=None)
    assert len(items) == 5
    items, _ = await claims.list_queue(engine, "general",
                                       filters=claims.ListFilters(text="R1"), limit=50,
                                       cursor=None)
    assert {i["subject"] for i in items} <= {f"r{n}" for n in range(30)} and items
    with pytest.raises(ValueError):
        await claims.list_queue(engine, "general", filters=claims.ListFilters(), limit=5,
                                cursor="garbage")


async def test_claims__queue_overview(engine: AsyncEngine) -> None:
    await make_requests(engine, 3)
    await make_requests(engine, 2, queue="billing")
    async with engine.begin() as conn:
        await conn.execute(update(requests).where(requests.c.queue == "billing")
                           .values(due_at=utcnow() - timedelta(minutes=5)))
    await claims.claim(engine, "general", "ann", limit=1, lease_seconds=60)
    overview = {q["name"]: q for q in await claims.queue_overview(engine, ["general", "billing",
                                                                           "empty"])}
    assert (overview["general"]["depth"], overview["general"]["unclaimed"]) == (3, 2)
    assert overview["billing"]["past_due"] == 2
    assert overview["empty"] == {"name": "empty", "depth": 0, "unclaimed": 0,
                                 "oldest_waiting_seconds": None, "past_due": 0}
    assert overview["general"]["oldest_waiting_seconds"] >= 0
