"""Migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

import hashlib

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.pipeline.worker import Pipeline
from storage.engine import create_engine
from storage.inbox import NewItem, accept_many
from storage.migrate import current_revision, downgrade, head_revision, upgrade
from storage.models import Base, api_tokens
from tests.helpers import make_config


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


async def test_migrations__raw_bytes_use_lz4_on_postgresql_and_read_back(
        engine: AsyncEngine) -> None:
    """0019: raw mail and attachment chunks compress with lz4 where the server
    has it (Debian's PostgreSQL does); what is written reads back exactly, and
    the downgrade returns the columns to the server's default."""
    if engine.dialect.name != "postgresql":
        return  # SQLite stores bytes as they are: the migration does nothing there
    query = text("SELECT CAST(attcompression AS text) FROM pg_attribute WHERE attname = :c "
                 "AND attrelid = CAST(:t AS regclass)")

    async def methods() -> set[str]:
        async with engine.connect() as conn:
            return {await conn.scalar(query, {"t": "inbox_items", "c": "raw"}),
                    await conn.scalar(query, {"t": "blob_chunks", "c": "data"})}

    assert await methods() == {"l"}
    raw = b"Subject: compressible\r\n\r\n" + b"the same line again\r\n" * 500
    async with engine.begin() as conn:
        item_id = await conn.scalar(text(
            "INSERT INTO inbox_items (channel, received_at, raw, meta, state, attempts, "
            "next_attempt_at) VALUES ('smtp', now(), :raw, '{}', 'done', 1, now()) "
            "RETURNING id"), {"raw": raw})
    async with engine.connect() as conn:
        stored = await conn.scalar(text(
            "SELECT pg_column_compression(raw) || ':' || encode(sha256(raw), 'hex') "
            "FROM inbox_items WHERE id = :id"), {"id": item_id})
    assert stored == f"lz4:{hashlib.sha256(raw).hexdigest()}"
    await downgrade(engine, "0018")
    assert await methods() == {""}  # the server's default_toast_compression
    await upgrade(engine)


async def test_migrations__message_texts_use_lz4_on_postgresql(pg_url: str) -> None:
    """0020: a stored message's text, new text and HTML compress with lz4; the
    mail reads back exactly, and the downgrade returns them to the default.
    (SQLite stores text as it is: the migration does nothing there.)"""
    engine = create_engine(pg_url)
    query = text("SELECT CAST(attcompression AS text) FROM pg_attribute WHERE attname = :c "
                 "AND attrelid = CAST('messages' AS regclass)")

    async def methods() -> list[str]:
        async with engine.connect() as conn:
            return [await conn.scalar(query, {"c": c}) for c in ("text", "new_text", "html")]

    try:
        assert await methods() == ["l", "l", "l"]
        body = "\r\n".join(f"Line {n}: the export stopped at record {n * 7919 % 10007}."
                           for n in range(150))
        raw = (f"From: Ann <ann@example.com>\r\nTo: support@localhost\r\nSubject: Export\r\n"
               f"Message-ID: <lz4-test@example.com>\r\n\r\n{body}\r\n").encode()
        await accept_many(engine, [NewItem(channel="smtp", raw=raw, meta={
            "mail_from": "ann@example.com", "rcpt_to": ["support@localhost"]})])
        assert await Pipeline(engine=engine, config=make_config(pg_url)).drain() == 1
        async with engine.connect() as conn:
            row = (await conn.execute(text(
                "SELECT pg_column_compression(text) AS method, text FROM messages "
                "WHERE direction = 'in'"))).one()
        assert row.method == "lz4"
        assert row.text.replace("\r\n", "\n").strip() == body.replace("\r\n", "\n").strip()
        await downgrade(engine, "0019")
        assert await methods() == ["", "", ""]  # the server's default_toast_compression
        await upgrade(engine)
        assert await methods() == ["l", "l", "l"]
    finally:
        await engine.dispose()
