"""Threat: the database under stress (connection limit, restart, timeouts, locks).

With PostgreSQL's connection limit reached, `POST /v1/requests` answered 500
instead of 503 (asyncpg reports "too many connections" as SQLAlchemy's
generic DBAPIError, which was not taken for a storage fault); an acknowledged
item that met the same fault while being processed was dead-lettered instead
of deferred; an item processed twice after a commit whose outcome was unknown
hit the unique constraint on `requests.inbox_item_id` and was dead-lettered
although its request existed.

Now every storage fault is told apart by SQLSTATE class in one place
(storage/errors.py) and is temporary at every edge (503 with Retry-After, 451)
and in the pipeline (deferred, not an attempt); a retry after an unknown
outcome finds its own earlier success (the item's row is locked first and
read: done is "stored before").

The connection limit is a role's (`CREATE ROLE ... CONNECTION LIMIT n`) on the
shared server; the restart is of a private PostgreSQL this module starts in a
temporary directory (never the shared server).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.errors import GatewayError
from domain.lifecycle import EventKind, ItemState
from gateway.app import Gateway, start, stop
from gateway.config import Config
from gateway.pipeline.worker import Pipeline
from storage import processing as processing_module
from storage import store as store_module
from storage.engine import connection, create_engine, transaction, utcnow
from storage.errors import (
    IdempotencyConflict,
    StorageUnavailable,
    Unstorable,
    is_data_fault,
    is_storage_fault,
    sqlstate,
)
from storage.inbox import InboxWriter, NewItem, accept_many
from storage.migrate import upgrade
from storage.models import events, inbox_items, messages, requests
from storage.processing import claim_items
from storage.tokens import create_token
from tests.adversarial.hostile import SmtpSession, mail
from tests.conftest import IN_CI
from tests.helpers import AppClient, auth, count_rows, make_config, wait_for
from tests.process import free_port

ANSWERS = {"201", "503", "250", "451"}  # stored, or "try later": never a 5xx but these
LOAD_SECONDS = 3.0  # every load loop below stops after this long, or its count
MAX_PER_CLIENT = 200

# --- one place decides what a storage fault is ----------------------------------------


@dataclass
class _Orig(Exception):
    """What asyncpg's error looks like through SQLAlchemy: it carries a SQLSTATE."""

    sqlstate: str


TEMPORARY = {
    "53300": "too many connections (for the server or a role)",
    "53100": "disk full", "53200": "out of memory", "53400": "configuration limit exceeded",
    "57P01": "admin shutdown", "57P02": "crash shutdown", "57P03": "cannot connect now",
    "57014": "statement timeout or cancel", "57P05": "idle session timeout",
    "40001": "serialization failure", "40P01": "deadlock detected",
    "40003": "statement completion unknown",
    "55P03": "lock not available", "25P03": "idle in transaction timeout",
    "08006": "connection failure", "08003": "connection does not exist",
    "08001": "cannot establish connection", "58030": "I/O error",
}
PERMANENT = {
    "22001": "value too long", "22P05": "untranslatable character", "23505": "unique",
    "23503": "foreign key", "42601": "syntax error", "42P01": "undefined table",
    "XX000": "internal error", "28P01": "bad password",
}


@pytest.mark.parametrize("code", sorted(TEMPORARY))
def test_is_storage_fault__server_side_sqlstates_are_temporary(code: str) -> None:
    exc = DBAPIError("SELECT 1", None, _Orig(code))
    assert sqlstate(exc) == code
    assert is_storage_fault(exc), TEMPORARY[code]
    assert not is_data_fault(exc)


@pytest.mark.parametrize("code", sorted(PERMANENT))
def test_is_storage_fault__statement_faults_are_not(code: str) -> None:
    assert not is_storage_fault(DBAPIError("SELECT 1", None, _Orig(code))), PERMANENT[code]


def test_is_storage_fault__connection_invalidated_is_temporary() -> None:
    exc = DBAPIError("SELECT 1", None, Exception("gone"), connection_invalidated=True)
    assert is_storage_fault(exc)


# --- the HTTP edge: temporary is 503, permanent is 4xx, never 500 ----------------------

@pytest.mark.parametrize(("error", "status"), [
    (Unstorable("the input cannot be stored as sent (DataError: 22P05 in inbox_items)"), 422),
    (IdempotencyConflict("key"), 409),
    (GatewayError("a permanent refusal of some other kind"), 422),
    (StorageUnavailable("DBAPIError: too many connections for role"), 503),
])
async def test_problems__gateway_errors_from_intake_are_never_500(
        app_client: AppClient, admin_token: str, monkeypatch: pytest.MonkeyPatch,
        error: Exception, status: int) -> None:
    async def refusing(self: InboxWriter, item: NewItem) -> Any:
        raise error

    monkeypatch.setattr(InboxWriter, "submit", refusing)
    answer = await app_client.post("/v1/requests", data=_api_body("refused"), headers={
        **auth(admin_token), "Content-Type": "application/json"})
    assert answer.status == status
    assert answer.content_type == "application/problem+json"
    document = await answer.json()
    assert document["status"] == status
    assert "DataError" not in json.dumps(document)  # the database's words stay in the log
    assert ("Retry-After" in answer.headers) == (status == 503)


# --- real faults through transaction() and connection() (PostgreSQL) ------------------

async def _side(pg_url: str, **kwargs: Any) -> asyncpg.Connection:
    """A plain asyncpg connection to the test database, beside the engine's."""
    dsn = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    return await asyncpg.connect(dsn, timeout=5, **kwargs)


async def _statement_timeout(engine: AsyncEngine, pg_url: str) -> None:
    async with transaction(engine) as conn:
        await conn.exec_driver_sql("SET LOCAL statement_timeout = '50ms'")
        await conn.exec_driver_sql("SELECT pg_sleep(5)")


async def _lock_timeout(engine: AsyncEngine, pg_url: str) -> None:
    side = await _side(pg_url)
    try:
        async with side.transaction():
            await side.execute("LOCK TABLE inbox_items IN ACCESS EXCLUSIVE MODE")
            async with transaction(engine) as conn:
                await conn.exec_driver_sql("SET LOCAL lock_timeout = '50ms'")
                await conn.execute(select(func.count()).select_from(inbox_items))
    finally:
        await side.close()


async def _admin_shutdown(engine: AsyncEngine, pg_url: str) -> None:
    side = await _side(pg_url)
    try:
        async with connection(engine) as conn:
            pid = (await conn.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one()
            await side.execute("SELECT pg_terminate_backend($1)", pid)
            await asyncio.sleep(0.2)
            await conn.exec_driver_sql("SELECT 1")
    finally:
        await side.close()


async def _serialization_failure(engine: AsyncEngine, pg_url: str) -> None:
    [item_id] = await accept_many(engine, [NewItem("api", b"{}")])
    side = await _side(pg_url)
    try:
        async with transaction(engine) as conn:
            await conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            await conn.execute(select(inbox_items.c.attempts).where(inbox_items.c.id == item_id))
            await side.execute("UPDATE inbox_items SET attempts = 7 WHERE id = $1", item_id)
            await conn.execute(update(inbox_items).where(inbox_items.c.id == item_id)
                               .values(attempts=8))
    finally:
        await side.close()


async def _deadlock(engine: AsyncEngine, pg_url: str) -> None:
    first, second = await accept_many(engine, [NewItem("api", b"{}"), NewItem("api", b"{}")])
    side = await _side(pg_url)
    try:
        await side.execute("SET deadlock_timeout = '10s'")  # so ours is the one told
        async with side.transaction():
            await side.execute("UPDATE inbox_items SET attempts = 1 WHERE id = $1", second)
            async with transaction(engine) as conn:
                await conn.exec_driver_sql("SET LOCAL deadlock_timeout = '50ms'")
                await conn.execute(update(inbox_items).where(inbox_items.c.id == first)
                                   .values(attempts=1))
                waiting = asyncio.create_task(side.execute(
                    "UPDATE inbox_items SET attempts = 2 WHERE id = $1", first))
                await asyncio.sleep(0.2)
                try:
                    await conn.execute(update(inbox_items).where(inbox_items.c.id == second)
                                       .values(attempts=2))
                finally:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(asyncio.shield(waiting), 0.01)
            await waiting
    finally:
        await side.close()


async def _too_many_connections(engine: AsyncEngine, pg_url: str) -> None:
    async with limited_role(pg_url, limit=1) as url:
        limited = create_engine(url, timeout=3)
        try:
            async with connection(limited), connection(limited) as second:
                await second.exec_driver_sql("SELECT 1")
        finally:
            await limited.dispose()


FAULTS: dict[str, Callable[[AsyncEngine, str], Awaitable[None]]] = {
    "statement timeout (57014)": _statement_timeout,
    "lock timeout (55P03)": _lock_timeout,
    "admin shutdown of the backend (57P01)": _admin_shutdown,
    "serialization failure (40001)": _serialization_failure,
    "deadlock (40P01)": _deadlock,
    "too many connections for the role (53300)": _too_many_connections,
}


@pytest.mark.parametrize("fault", FAULTS)
async def test_transaction__every_real_storage_fault_is_unavailable(pg_url: str,
                                                                    fault: str) -> None:
    engine = create_engine(pg_url, timeout=5)
    try:
        with pytest.raises(StorageUnavailable):
            await asyncio.wait_for(FAULTS[fault](engine, pg_url), 20)
    finally:
        await engine.dispose()


# --- a role whose connections are limited -----------------------------------------------

@contextlib.asynccontextmanager
async def limited_role(pg_url: str, *, limit: int) -> AsyncIterator[str]:
    """A login role allowed `limit` connections, with the rights the gateway needs
    on the test database (not a superuser: those are not limited); its URL."""
    role = f"intake_limited_{secrets.token_hex(4)}"
    admin = await _side(pg_url)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT {limit}")
        await admin.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        await admin.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
        yield make_url(pg_url).set(username=role).render_as_string(hide_password=False)
    finally:
        await admin.execute(f"ALTER ROLE {role} CONNECTION LIMIT 0")
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE usename = $1", role)
        await admin.execute(f"DROP OWNED BY {role}")
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()


async def set_limit(pg_url: str, url: str, limit: int) -> None:
    side = await _side(pg_url)
    try:
        await side.execute(f"ALTER ROLE {make_url(url).username} CONNECTION LIMIT {limit}")
    finally:
        await side.close()


# --- load: clients that retry until they are told "stored" --------------------------------

@dataclass
class Tally:
    """What a load's clients were told, and what they sent that was acknowledged."""

    answers: dict[str, int] = field(default_factory=dict)
    acknowledged: list[str] = field(default_factory=list)  # the bodies' own keys
    references: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # told "try later", never stored since
    missing_retry_after: int = 0

    def count(self, answer: str) -> None:
        self.answers[answer] = self.answers.get(answer, 0) + 1


def _api_body(key: str) -> bytes:
    return json.dumps({"requester": {"email": "load@example.com"}, "subject": key,
                       "body": "Under load."}).encode()


async def api_client(base: str, token: str, tally: Tally, name: str, until: float) -> None:
    """POST distinct requests, each retried on 503 (a new key after 201), until `until`."""
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(base_url=base, timeout=timeout) as session:
        for n in range(MAX_PER_CLIENT):
            if time.monotonic() > until:
                return
            key = f"{name}-{n}"
            while time.monotonic() < until + 5:
                try:
                    async with session.post("/v1/requests", data=_api_body(key), headers={
                            **auth(token), "Content-Type": "application/json"}) as answer:
                        tally.count(str(answer.status))
                        if answer.status == 201:
                            tally.acknowledged.append(key)
                            tally.references.append((await answer.json())["reference"])
                            break
                        if answer.status == 503 and "Retry-After" not in answer.headers:
                            tally.missing_retry_after += 1
                        tally.refused.append(key)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    tally.count(type(exc).__name__)
                await asyncio.sleep(0.05)


async def smtp_client(port: int, tally: Tally, name: str, until: float) -> None:
    """Send distinct mails, each retried on 451 with the same Message-ID, until `until`."""
    for n in range(MAX_PER_CLIENT):
        if time.monotonic() > until:
            return
        key = f"{name}-{n}"
        while time.monotonic() < until + 5:
            try:
                session = await SmtpSession.open(port)
            except (OSError, TimeoutError) as exc:
                tally.count(type(exc).__name__)
                await asyncio.sleep(0.05)
                continue
            try:
                await session.command(b"EHLO load.example")
                replies = await session.send(b"<load@example.com>", b"<support@localhost>",
                                             mail(subject=key, sender="load@example.com",
                                                  message_id=f"<{key}@load.example>"))
            finally:
                await session.close()
            tally.count(replies[-1][:3])
            if replies[-1].startswith("250"):
                tally.acknowledged.append(key)
                break
            tally.refused.append(key)
            await asyncio.sleep(0.05)


async def run_load(gateway: Gateway, token: str, *, api: int, smtp: int,
                   seconds: float = LOAD_SECONDS,
                   during: Callable[[], Awaitable[None]] | None = None) -> Tally:
    tally = Tally()
    until = time.monotonic() + seconds
    clients = [api_client(gateway.http_url, token, tally, f"api{i}", until) for i in range(api)]
    clients += [smtp_client(gateway.smtp_port, tally, f"smtp{i}", until) for i in range(smtp)]
    if during is not None:
        clients.append(during())
    await asyncio.wait_for(asyncio.gather(*clients), seconds + 60)
    return tally


async def settled(engine: AsyncEngine, timeout: float = 30.0) -> None:
    """Every committed item processed (none pending, processing or dead)."""
    async def done() -> bool:
        return await count_rows(engine, inbox_items, inbox_items.c.state != ItemState.DONE) == 0
    try:
        await wait_for(done, timeout=timeout, interval=0.2)
    except AssertionError:
        async with engine.connect() as conn:  # what was left, for the failure's text
            left = (await conn.execute(select(
                inbox_items.c.id, inbox_items.c.state, inbox_items.c.attempts,
                inbox_items.c.next_attempt_at, inbox_items.c.lease_until, inbox_items.c.last_error)
                .where(inbox_items.c.state != ItemState.DONE).limit(10))).all()
        raise AssertionError(f"not settled within {timeout}s: {left}") from None


async def stored_keys(engine: AsyncEngine) -> list[str]:
    """The subject of every stored inbound message: one per input stored."""
    async with engine.connect() as conn:
        return list((await conn.execute(
            select(messages.c.subject).where(messages.c.direction == "in"))).scalars())


def check_tally(tally: Tally, stored: list[str]) -> None:
    """No 5xx but 503/451, Retry-After on each 503; everything acknowledged stored
    exactly once; nothing stored twice."""
    assert set(tally.answers) <= ANSWERS, str(sorted(tally.answers.items()))
    assert tally.missing_retry_after == 0
    assert tally.acknowledged, tally.answers
    assert sorted(stored) == sorted(set(stored)), "an input was stored twice"
    assert set(tally.acknowledged) <= set(stored), "an acknowledged input was lost"
    assert len(tally.acknowledged) == len(set(tally.acknowledged))


def stress_config(url: str, **database: Any) -> Config:
    # Rate limits up: the load is one client address with one token.
    return make_config(url, database={"url": url, "timeout_seconds": 2.0,
                                      "migrate_on_start": False, **database},
                       http={"rate_limit_per_token": 1e6, "rate_limit_per_address": 1e6,
                             "rate_limit_burst": 1e6},
                       # A lease shorter than `settled`'s wait: an item whose claim
                       # was lost on a starved machine comes back within it.
                       pipeline={"workers": 2, "poll_seconds": 0.1, "linger_seconds": 0.01,
                                 "lease_seconds": 10.0,
                                 "backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.2,
                                 "max_attempts": 2})


async def test_intake__connection_limit_answers_503_and_451_never_500(pg_url: str) -> None:
    """40 concurrent clients against a role allowed 3 connections: API clients get
    201 or 503 with Retry-After, SMTP clients 250 or 451; once the limit is lifted,
    everything acknowledged is one request, and nothing was dead-lettered."""
    engine = create_engine(pg_url)
    _, token = await create_token(engine, name="load", role="intake", queues=[])
    async with limited_role(pg_url, limit=3) as url:
        gateway = await start(stress_config(url, pool_size=10))
        try:
            tally = await run_load(gateway, token, api=30, smtp=10)
            assert set(tally.answers) <= ANSWERS, str(sorted(tally.answers.items()))
            await set_limit(pg_url, url, -1)
            await settled(engine)
        finally:
            await stop(gateway, grace=3.0)
    try:
        assert tally.answers.get("503", 0) + tally.answers.get("451", 0) > 0, \
            f"the limit was never reached: {tally.answers}"
        check_tally(tally, await stored_keys(engine))
        assert await count_rows(engine, inbox_items, inbox_items.c.state == ItemState.DEAD) == 0
    finally:
        await engine.dispose()


async def test_pipeline__storage_fault_while_processing_defers_never_dead(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Claimed items whose store meets "too many connections" (53300) go back for
    later, their attempt not counted, however often it happens: never dead."""
    engine = create_engine(pg_url)
    config = stress_config(pg_url)
    ids = await accept_many(engine, [NewItem("smtp", mail(subject=f"held {n}",
                                                          message_id=f"<h{n}@x>"))
                                     for n in range(3)])
    real = store_module.transaction
    try:
        async with limited_role(pg_url, limit=1) as url:
            limited = create_engine(url, timeout=2)

            @contextlib.asynccontextmanager
            async def crowded(_engine: AsyncEngine) -> AsyncIterator[Any]:
                async with connection(limited):  # the role's one connection, held
                    async with real(limited) as conn:  # a second one: 53300
                        yield conn

            monkeypatch.setattr(store_module, "transaction", crowded)
            pipeline = Pipeline(engine=engine, config=config)
            try:
                for _ in range(config.pipeline.max_attempts + 1):
                    await requeue_now(engine)
                    items = await claim_items(engine, limit=10, lease_seconds=60)
                    assert [item.id for item in items] == ids
                    await pipeline.process_batch(items)
            finally:
                await limited.dispose()
        async with engine.connect() as conn:
            rows = (await conn.execute(select(inbox_items.c.state, inbox_items.c.attempts)
                                       .where(inbox_items.c.id.in_(ids)))).all()
        assert set(rows) == {(ItemState.PENDING, 0)}, rows
    finally:
        await engine.dispose()


# --- a commit whose outcome is unknown, and two workers on one item ------------------------

def lose_first_commit_answer(monkeypatch: pytest.MonkeyPatch, module: Any,
                             error: str) -> list[bool]:
    """Make `module.transaction`'s next commit go through and its answer be lost
    (StorageUnavailable `error` after COMMIT). The list returned holds True
    once that has happened."""
    real = module.transaction
    lost: list[bool] = []

    @contextlib.asynccontextmanager
    async def commit_then_cut(engine: AsyncEngine) -> AsyncIterator[Any]:
        async with real(engine) as conn:
            yield conn
        if not lost:
            lost.append(True)
            raise StorageUnavailable(error)

    monkeypatch.setattr(module, "transaction", commit_then_cut)
    return lost


async def test_pipeline__claim_whose_answer_was_lost_is_handed_back_not_left_to_its_lease(
        engine: AsyncEngine, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """A claim's commit went through but its answer was lost (a timeout on a
    loaded machine): the worker sees a failed claim. Its items must come back
    at the worker's next round, not after the 60 s lease, their attempt not
    counted."""
    ids = await accept_many(engine, [NewItem("smtp", mail(subject=f"lost {n}",
                                                          message_id=f"<l{n}@x>"))
                                     for n in range(3)])
    lost = lose_first_commit_answer(monkeypatch, processing_module,
                                    "TimeoutError: no answer to COMMIT")
    pipeline = Pipeline(engine=engine, config=config)
    with pytest.raises(StorageUnavailable):
        await pipeline.drain()
    assert lost
    async with engine.connect() as conn:
        held = (await conn.execute(select(inbox_items.c.state, inbox_items.c.attempts)
                                   .where(inbox_items.c.id.in_(ids)))).all()
    assert set(held) == {(ItemState.PROCESSING, 1)}, held  # claimed unseen, leased
    assert await pipeline.drain() == 3
    async with engine.connect() as conn:
        done = (await conn.execute(select(inbox_items.c.state, inbox_items.c.attempts)
                                   .where(inbox_items.c.id.in_(ids)))).all()
    assert set(done) == {(ItemState.DONE, 1)}, done


async def test_pipeline__retry_after_unknown_commit_finds_its_request(
        engine: AsyncEngine, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commit reached the database, its answer did not: the worker defers the
    items, but that must not undo what was committed (a duplicate delivery,
    which adds no message, would be placed twice); the next attempt adds nothing."""
    first = mail(subject="cut", sender="ann@example.com", message_id="<c0@x>")
    await accept_many(engine, [NewItem("smtp", first)])
    await Pipeline(engine=engine, config=config).drain()
    lost = lose_first_commit_answer(monkeypatch, store_module,
                                    "ConnectionResetError: lost after COMMIT was sent")
    await accept_many(engine, [NewItem("smtp", first),  # the same mail delivered again
                               NewItem("smtp", mail(subject="cut 1", message_id="<c1@x>"))])
    pipeline = Pipeline(engine=engine, config=config)
    items = await claim_items(engine, limit=10, lease_seconds=60)
    await pipeline.process_batch(items)
    assert lost
    async with engine.connect() as conn:
        states = set((await conn.execute(select(inbox_items.c.state))).scalars())
    assert states == {ItemState.DONE}, "the deferral undid a commit that went through"
    await requeue_now(engine)
    await pipeline.drain()
    assert await count_rows(engine, requests) == 2
    assert await count_rows(engine, messages, messages.c.direction == "in") == 2
    assert await count_rows(engine, events, events.c.kind == EventKind.DUPLICATE_DELIVERY) == 1


async def requeue_now(engine: AsyncEngine) -> None:
    """Make deferred items due now (the test does not wait out the backoff)."""
    async with engine.begin() as conn:
        await conn.execute(update(inbox_items).where(inbox_items.c.state == ItemState.PENDING)
                           .values(next_attempt_at=inbox_items.c.received_at))


async def test_pipeline__two_workers_store_one_item_once(
        engine: AsyncEngine, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lease ran out under a slow worker and another took the item over, at its
    last attempt: both store it at the same moment (each has read that nothing
    is stored yet). One request, no IntegrityError, nothing failed or dead."""
    real = store_module.read_known
    arrived = 0
    both = asyncio.Event()

    async def meet(*args: Any) -> Any:
        # Each store waits here for the other (at most a second), so both have
        # read what is stored before either writes.
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            both.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(both.wait(), 1.0)
        return await real(*args)

    monkeypatch.setattr(store_module, "read_known", meet)
    await accept_many(engine, [NewItem("smtp", mail(subject="twice", message_id="<t@x>"))])
    later = utcnow()
    claims = []
    for _ in range(config.pipeline.max_attempts):  # each lease runs out: the last is current
        later += timedelta(seconds=61)
        claims += await claim_items(engine, limit=1, lease_seconds=60, now=later)
    slow, taken = claims[0], claims[-1]
    assert taken.id == slow.id and taken.attempts == config.pipeline.max_attempts
    first, second = Pipeline(engine=engine, config=config), Pipeline(engine=engine, config=config)
    await asyncio.gather(first.process_batch([slow]), second.process_batch([taken]))
    assert await count_rows(engine, requests) == 1
    assert await count_rows(engine, messages, messages.c.direction == "in") == 1
    async with engine.connect() as conn:
        state, error = (await conn.execute(
            select(inbox_items.c.state, inbox_items.c.last_error))).one()
    assert (state, error) == (ItemState.DONE, None)


# --- a private PostgreSQL, restarted mid-load ---------------------------------------------

PG_BIN = Path("/usr/lib/postgresql")


def _pg_bin() -> Path | None:
    found = sorted(PG_BIN.glob("*/bin/initdb"))
    return found[-1].parent if found else None


@dataclass
class PrivateServer:
    """A PostgreSQL of our own in a temporary directory (initdb, pg_ctl)."""

    bin: Path
    data: Path
    port: int
    user: str | None  # run as this user (initdb refuses to run as root)

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, timeout=timeout, capture_output=True)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8")

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c max_connections=30 "
                   f"-c unix_socket_directories={self.data} -c fsync=off")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-w", "-t", "30",
                  "-l", str(self.data / "log"), "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/intake"


@pytest.fixture
def private_pg() -> Iterator[PrivateServer]:
    binaries = _pg_bin()
    if binaries is None:
        message = "PostgreSQL server binaries not found under /usr/lib/postgresql"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    # Not under pytest's tmp_path: its parents are private to this user, and as
    # root the server runs as `postgres` (initdb refuses to run as root).
    home = Path(tempfile.mkdtemp(prefix="intake-pg-"))
    user = None
    if os.geteuid() == 0:
        user = "postgres"
        info = pwd.getpwnam(user)
        os.chown(home, info.pw_uid, info.pw_gid)
    server = PrivateServer(binaries, home / "data", free_port(), user)
    try:
        server.init()
        server.start()
        asyncio.run(_create_database(server))
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop("immediate")
        shutil.rmtree(home, ignore_errors=True)


async def _create_database(server: PrivateServer) -> None:
    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{server.port}/postgres",
                                 timeout=10)
    try:
        await conn.execute("CREATE DATABASE intake")
    finally:
        await conn.close()
    engine = create_engine(server.url)
    await upgrade(engine)
    await engine.dispose()


async def test_intake__database_restart_mid_load_loses_and_duplicates_nothing(
        private_pg: PrivateServer) -> None:
    """A private PostgreSQL is restarted (fast shutdown: sessions cut, commits in
    flight) while 30 clients send: only 201/503 and 250/451 answers; afterwards
    every acknowledged input is stored once, nothing is dead-lettered."""
    engine = create_engine(private_pg.url)
    _, token = await create_token(engine, name="load", role="intake", queues=[])
    gateway = await start(stress_config(private_pg.url, pool_size=10))

    async def restart() -> None:
        await asyncio.sleep(LOAD_SECONDS / 3)
        await asyncio.to_thread(private_pg.stop, "fast")
        await asyncio.sleep(0.5)
        await asyncio.to_thread(private_pg.start)

    try:
        tally = await run_load(gateway, token, api=20, smtp=10, during=restart)
        await settled(engine)
    finally:
        await stop(gateway, grace=3.0)
    try:
        assert tally.answers.get("503", 0) + tally.answers.get("451", 0) > 0, tally.answers
        check_tally(tally, await stored_keys(engine))
        assert await count_rows(engine, inbox_items, inbox_items.c.state == ItemState.DEAD) == 0
    finally:
        await engine.dispose()
