"""Shared fixtures: a database per backend, a running gateway, tokens.

Every storage and pipeline test runs on SQLite and on PostgreSQL. Each test
run creates its own PostgreSQL database and drops it at the end; tests within
the run empty its tables between them. Outside CI a missing PostgreSQL skips
those tests with the reason shown; in CI (CI=true) it fails them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import Gateway, start, stop
from gateway.config import Config
from storage.engine import create_engine
from storage.migrate import upgrade
from storage.models import Base
from storage.tokens import create_token
from tests.helpers import make_config

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


async def _truncate(url: str) -> None:
    database = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(_pg_dsn(database), timeout=5)
    try:
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        await conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database on each backend."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'intake.db'}"

        async def migrate() -> None:
            engine = create_engine(url)
            await upgrade(engine)
            await engine.dispose()

        asyncio.run(migrate())
        return url
    url = request.getfixturevalue("pg_database")
    asyncio.run(_truncate(url))
    return url


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The PostgreSQL test database, emptied: for tests that need several processes."""
    asyncio.run(_truncate(pg_database))
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
