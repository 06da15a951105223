"""Shared fixtures: a database per backend, the HTTP app alone or a running
gateway, tokens.

Every storage and pipeline test runs on SQLite and on PostgreSQL. Each test
run creates its own PostgreSQL database and drops it at the end; tests within
the run empty its tables between them. Each SQLite test gets a copy of one
database migrated once per run. Outside CI a missing PostgreSQL skips those
tests with the reason shown; in CI (CI=true) it fails them.

Tests of the HTTP API that need nothing else use `app_client` (the app factory
under pytest-aiohttp, no listeners or workers) and `await pipeline.drain()` to
have what they posted processed; tests of SMTP, processes, shutdown, faults or
delivery use `gateway`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import Gateway, start, stop
from gateway.config import Config
from gateway.http.app import init_app
from gateway.http.shared import RULES, SIGNALS
from gateway.pipeline.worker import Pipeline
from storage.engine import create_engine
from storage.migrate import upgrade
from storage.models import Base
from storage.tokens import create_token
from tests.helpers import AppClient, make_config

PG_SERVER = os.environ.get("INTAKE_TEST_PG", "postgres@127.0.0.1:5432")
IN_CI = os.environ.get("CI") == "true"
BACKENDS = ["sqlite", "postgresql"]


def _pg_dsn(database: str) -> str:
    return f"postgresql://{PG_SERVER}/{database}"


async def _pg_admin(statement: str) -> None:
    conn = await asyncpg.connect(_pg_dsn("postgres"), timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, migrated, dropped at the end."""
    name = f"intake_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL not reachable at {PG_SERVER}: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    url = f"postgresql+asyncpg://{PG_SERVER}/{name}"

    async def migrate() -> None:
        engine = create_engine(url)
        await upgrade(engine)
        await engine.dispose()

    asyncio.run(migrate())
    yield url
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _empty(url: str) -> None:
    """What TRUNCATE ... RESTART IDENTITY does, several times faster on the few
    rows a test leaves: delete every row (dependants first), restart every id."""
    database = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(_pg_dsn(database), timeout=5)
    try:
        # The install key stays, as in production: the migration made it once.
        # The audit's triggers refuse DELETE but in its own purge (migration 0014).
        statements = ["SELECT set_config('intake.audit_purge', 'on', false)"]
        statements += [f"DELETE FROM {t.name}" for t in reversed(Base.metadata.sorted_tables)
                       if t.name != "install_keys"]
        sequences = await conn.fetch(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'")
        statements += [f'ALTER SEQUENCE "{row[0]}" RESTART' for row in sequences]
        await conn.execute(";\n".join(statements))  # one round trip, one transaction
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite database migrated once for the run (each test copies it)."""
    path = tmp_path_factory.mktemp("template") / "intake.db"

    async def migrate() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        await upgrade(engine)
        await engine.dispose()

    asyncio.run(migrate())
    # Closed cleanly, everything is in the one file (no -wal or -journal beside it).
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    return path


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "intake.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url = request.getfixturevalue("pg_database")
    asyncio.run(_empty(url))
    return url


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The PostgreSQL test database, emptied: for tests that need several processes."""
    asyncio.run(_empty(pg_database))
    return pg_database


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def config(db_url: str) -> Config:
    return make_config(db_url)


@pytest.fixture
def app(config: Config) -> web.Application:
    """The HTTP API alone: its own engine and inbox writer, no listeners or workers."""
    return init_app(config)


@pytest.fixture
async def app_client(app: web.Application,
                     aiohttp_client: Callable[[web.Application], Awaitable[AppClient]]
                     ) -> AppClient:
    """A client of `app` on a local test server (relative URLs, like `http`)."""
    return await aiohttp_client(app)


@pytest.fixture
def pipeline(app: web.Application, engine: AsyncEngine, config: Config) -> Pipeline:
    """The pipeline for `app`'s inbox; `await pipeline.drain()` processes what was
    accepted so far, in the test's own task, instead of waiting for a worker."""
    return Pipeline(engine=engine, config=config, rules=app[RULES],
                    on_new_work=app[SIGNALS].signal)


@pytest.fixture
async def gateway(config: Config) -> AsyncIterator[Gateway]:
    gw = await start(config)
    yield gw
    await stop(gw, grace=3.0)


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[aiohttp.ClientSession]:
    """A client of the running gateway's HTTP API (relative URLs)."""
    async with aiohttp.ClientSession(base_url=gateway.http_url) as session:
        yield session


@pytest.fixture
async def admin_token(engine: AsyncEngine) -> str:
    _, secret = await create_token(engine, name="test admin", role="admin", queues=[])
    return secret


from tests.dovecot import Dovecot, require_dovecot  # noqa: E402 (kept with its fixture)


@pytest.fixture
def dovecot(tmp_path: Path) -> Iterator[Dovecot]:
    """A started throwaway Dovecot (tests/dovecot.py) with its own TokenServer as
    `.tokens`; stopped and removed after the test (its log kept in tmp_path).
    No Dovecot installed: skipped with the reason outside CI, failed in CI."""
    require_dovecot()
    server = Dovecot()
    try:
        server.start()
        yield server
    finally:
        server.close(keep_log=tmp_path / "dovecot.log")


from tests.dns_server import DnsServer  # noqa: E402 (kept with its fixture)


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    """A started local DNS server (tests/dns_server.py) on 127.0.0.1 and an
    ephemeral port, empty until the test adds records; stopped after."""
    server = DnsServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
