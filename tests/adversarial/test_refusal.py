"""Threat: a refusal that is not one. An input answered 451/503 was committed
anyway, so a client that retried (as told) made a second request.

During a 20 s lock on the inbox table, 39 of 80 inputs refused with 451/503
were stored: a submitter's timeout ran out while its item waited for the
writer, or while the writer's batch was held by the lock, and the batch
committed once the lock was released. Now a submitter that gives up withdraws
its item: the writer skips it, or deletes its row in the same transaction
before COMMIT; once COMMIT is sent for an item, its submitter waits for the
outcome (bounded by the writer's own timeout) instead of answering "try
later" for something that may be stored. A refusal means not stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.lifecycle import ItemState
from gateway.app import Gateway
from gateway.config import Config
from storage.engine import create_engine
from storage.errors import StorageUnavailable
from storage.inbox import InboxWriter, NewItem
from storage.models import inbox_items, messages
from storage.tokens import create_token
from tests.adversarial.hostile import SmtpSession, mail
from tests.helpers import auth, count_rows, make_config, wait_for

TIMEOUT = 1.0  # the database timeout: a submission waits this long, then 451/503
LOCK_SECONDS = 2.5
SEND_UNTIL = 2.3  # inputs are sent until just before the lock is released


@pytest.fixture
def config(db_url: str) -> Config:
    return make_config(db_url, database={"timeout_seconds": TIMEOUT},
                       http={"rate_limit_per_token": 1e6, "rate_limit_per_address": 1e6,
                             "rate_limit_burst": 1e6})


@contextlib.asynccontextmanager
async def inbox_locked(db_url: str) -> AsyncIterator[None]:
    """Nothing can be written to the inbox while this is held (reads go on)."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        # The one write lock of the database, as a long transaction would hold it.
        # Taken in a thread: the gateway in this event loop may hold the lock for
        # a moment, and a wait on this loop's thread would keep it from letting go.
        def take() -> sqlite3.Connection:
            conn = sqlite3.connect(url.database or "", isolation_level=None,
                                   check_same_thread=False)
            conn.execute("BEGIN IMMEDIATE")
            return conn

        lock = await asyncio.to_thread(take)
        try:
            yield
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        return
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE inbox_items IN EXCLUSIVE MODE")
            yield
    finally:
        await conn.close()


async def post(session: aiohttp.ClientSession, token: str, subject: str) -> int:
    body = json.dumps({"requester": {"email": "r@example.com"}, "subject": subject,
                       "body": "Sent while the inbox is locked."})
    async with session.post("/v1/requests", data=body, headers={
            **auth(token), "Content-Type": "application/json"}) as answer:
        return answer.status


async def send_mail(port: int, subject: str) -> int:
    session = await SmtpSession.open(port)
    try:
        await session.command(b"EHLO refusal.example")
        replies = await session.send(b"<r@example.com>", b"<support@localhost>",
                                     mail(subject=subject, sender="r@example.com",
                                          message_id=f"<{subject}@refusal.example>"))
    finally:
        await session.close()
    return int(replies[-1][:3])


async def test_intake__refused_while_the_inbox_is_locked_is_never_stored(
        gateway: Gateway, engine: AsyncEngine, db_url: str) -> None:
    """Inputs sent all through a lock held past the timeout: each answered 451/503
    is not stored once the lock is gone; each answered 201/250 is, once."""
    _, token = await create_token(engine, name="refusal", role="intake", queues=[])
    answers: dict[str, int] = {}
    async with aiohttp.ClientSession(base_url=gateway.http_url,
                                     timeout=aiohttp.ClientTimeout(total=20)) as session:

        async def one(n: int) -> None:
            subject = f"locked-{n}"
            answers[subject] = await (post(session, token, subject) if n % 3
                                      else send_mail(gateway.smtp_port, subject))

        sending: list[asyncio.Task[None]] = []
        async with inbox_locked(db_url):
            started = time.monotonic()
            n = 0
            while time.monotonic() - started < SEND_UNTIL:
                sending.append(asyncio.create_task(one(n)))
                n += 1
                await asyncio.sleep(0.05)
            await asyncio.sleep(LOCK_SECONDS - (time.monotonic() - started))
        await asyncio.wait_for(asyncio.gather(*sending), 30)
        assert await post(session, token, "after the lock") == 201

    async def marker_stored() -> bool:
        return "after the lock" in await subjects(engine)

    await wait_for(marker_stored, timeout=15)
    await asyncio.sleep(0.5)  # a held batch, if any, has had time to commit
    refused = {s for s, status in answers.items() if status in (451, 503)}
    accepted = {s for s, status in answers.items() if status in (201, 250)}
    assert refused, f"nothing was refused: {sorted(answers.items())}"
    assert refused | accepted == set(answers), sorted(answers.items())
    stored = await subjects(engine)
    assert sorted(refused & set(stored)) == [], "refused, then stored anyway"
    assert sorted(stored) == sorted({*accepted, "after the lock"})


async def subjects(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(messages.c.subject)
                                        .where(messages.c.direction == "in"))).scalars())


# --- the writer alone -------------------------------------------------------------------

async def test_writer__submitter_gone_before_its_batch_is_not_stored(db_url: str) -> None:
    """Submitters that time out while their items wait behind a held batch:
    none of their items is stored when the writer gets to them."""
    # As the gateway makes them: SQLite's busy timeout (0.8 of the engine's)
    # ends a locked statement before the writer's timeout would cancel it, which
    # on aiosqlite leaves the cancelled connection's transaction open.
    engine = create_engine(db_url, timeout=TIMEOUT)
    writer = InboxWriter(engine=engine, timeout=TIMEOUT)
    task = asyncio.create_task(writer.run())
    try:
        async with inbox_locked(db_url):
            results = await asyncio.gather(
                *(writer.submit(NewItem("api", b'{"n": %d}' % n)) for n in range(10)),
                return_exceptions=True)
        assert all(isinstance(r, StorageUnavailable) for r in results), results
        accepted = await writer.submit(NewItem("api", b'{"after": true}'))
        await asyncio.sleep(0.3)
        async with engine.connect() as conn:
            raws = list((await conn.execute(select(inbox_items.c.raw))).scalars())
        assert raws == [b'{"after": true}']
        assert accepted.item_id > 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await engine.dispose()


async def test_writer__commit_under_way_is_waited_for(
        engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A submitter whose item's COMMIT is under way when its own time runs out is
    told the outcome (stored), not "try later" for something stored."""
    from sqlalchemy.ext.asyncio import AsyncTransaction

    real = AsyncTransaction.commit

    async def slow_commit(self: Any) -> None:
        await asyncio.sleep(TIMEOUT * 0.8)
        await real(self)

    writer = InboxWriter(engine=engine, timeout=TIMEOUT)
    task = asyncio.create_task(writer.run())
    try:
        await writer.submit(NewItem("api", b"{}"))  # the writer's connection is made
        monkeypatch.setattr(AsyncTransaction, "commit", slow_commit)
        first = asyncio.create_task(writer.submit(NewItem("api", b'{"n": 1}')))
        await asyncio.sleep(TIMEOUT * 0.5)  # the second waits while the first commits
        second = asyncio.create_task(writer.submit(NewItem("api", b'{"n": 2}')))
        results = await asyncio.gather(first, second, return_exceptions=True)
        monkeypatch.undo()
        await asyncio.sleep(TIMEOUT)  # a commit still under way has ended
        stored = await count_rows(engine, inbox_items, inbox_items.c.state == ItemState.PENDING)
        told = sum(1 for r in results if not isinstance(r, BaseException))
        assert stored == 1 + told, results
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
