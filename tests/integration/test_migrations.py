"""Migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.migrate import current_revision, downgrade, head_revision, upgrade
from storage.models import Base, api_tokens


async def test_migrations__at_head_and_match_models(engine: AsyncEngine) -> None:
    assert await current_revision(engine) == head_revision()
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata))
    assert diff == []


async def test_migrations__down_and_up_again(engine: AsyncEngine) -> None:
    await downgrade(engine, "base")
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    assert set(tables) <= {"alembic_version"}
    await upgrade(engine)
    await upgrade(engine)  # idempotent
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    assert set(Base.metadata.tables) <= set(tables)


async def test_migrations__tokens_that_existed_keep_handing_off(engine: AsyncEngine) -> None:
    """0009 adds `may_hand_off`: tokens made before it may move requests between
    queues as they could, and belong to no agent."""
    await downgrade(engine, "0008")
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO api_tokens (name, role, queues, token_hash, created_at) "
            "VALUES ('old', 'agent', '[\"general\"]', 'h', CURRENT_TIMESTAMP)"))
    await upgrade(engine)
    async with engine.connect() as conn:
        row = (await conn.execute(select(api_tokens.c.may_hand_off, api_tokens.c.agent_id)
                                  .where(api_tokens.c.name == "old"))).one()
    assert (row.may_hand_off, row.agent_id) == (True, None)
