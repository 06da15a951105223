"""The HTTP API's token cache: requests that miss one token at once share one
lookup, and a revoke seen by `forget` is not undone by a lookup begun before it.
On both backends, counting the statements that read api_tokens."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.http.auth import TokenCache
from storage.tokens import create_token, revoke_token


@pytest.fixture
def lookups(engine: AsyncEngine) -> Iterator[list[str]]:
    """Every statement sent that reads api_tokens."""
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM api_tokens" in statement:
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    yield seen
    event.remove(engine.sync_engine, "before_cursor_execute", count)


async def test_token_cache__misses_at_once_share_one_lookup(
        engine: AsyncEngine, lookups: list[str]) -> None:
    info, secret = await create_token(engine, name="crm", role="intake", queues=[])
    cache = TokenCache(engine, ttl=0.2)
    found = await asyncio.gather(*(cache.get(secret) for _ in range(50)))
    assert [f.id if f else None for f in found] == [info.id] * 50
    assert len(lookups) == 1
    assert await cache.get(secret) == found[0] and len(lookups) == 1  # cached
    await asyncio.sleep(0.25)  # the entry runs out: the next burst looks once more
    await asyncio.gather(*(cache.get(secret) for _ in range(20)))
    assert len(lookups) == 2
    assert await cache.get("no such token") is None


async def test_token_cache__a_caller_that_gives_up_leaves_the_lookup_to_the_others(
        engine: AsyncEngine, lookups: list[str]) -> None:
    info, secret = await create_token(engine, name="crm", role="intake", queues=[])
    cache = TokenCache(engine)
    first = asyncio.create_task(cache.get(secret))
    second = asyncio.create_task(cache.get(secret))
    await asyncio.sleep(0)
    first.cancel()
    got = await second
    assert got is not None and got.id == info.id
    assert len(lookups) == 1


async def test_token_cache__forget_drops_a_lookup_begun_before_a_revoke(
        engine: AsyncEngine, lookups: list[str]) -> None:
    info, secret = await create_token(engine, name="crm", role="intake", queues=[])
    cache = TokenCache(engine)
    before = asyncio.create_task(cache.get(secret))
    await asyncio.sleep(0)  # its lookup is on its way
    assert await revoke_token(engine, info.id)
    cache.forget()
    await before  # whatever it read, it is not kept
    assert await cache.get(secret) is None
    assert len(lookups) == 2
