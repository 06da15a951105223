"""Each install keys its references; references handed out before still resolve."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Config
from gateway.pipeline.worker import Pipeline
from storage import queries
from storage.engine import create_engine
from storage.inbox import InboxWriter, NewItem, accept_many
from storage.install_key import references
from storage.migrate import downgrade, upgrade
from storage.models import install_keys, requests
from storage.reference import reference_for

MAIL = (b"From: Ann <ann@example.com>\r\nTo: support@localhost\r\nSubject: Hello\r\n"
        b"Message-ID: <k%d@example.com>\r\n\r\nBody text\r\n")


async def _first_reference(path: Path) -> str:
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await upgrade(engine)
        writer = InboxWriter(engine=engine)
        return (await writer.submit_idempotent(NewItem("smtp", MAIL % 1), "k")).reference
    finally:
        await engine.dispose()


async def test_references__two_installs_start_at_different_references(
        tmp_path: Path) -> None:
    one = await _first_reference(tmp_path / "one.db")
    two = await _first_reference(tmp_path / "two.db")
    assert one != two
    assert "7PY9-9T9S" not in (one, two)  # the unkeyed first reference of every install


async def test_references__older_ones_resolve_after_the_upgrade(
        engine: AsyncEngine, config: Config) -> None:
    """Items stored before the install had a key keep their references; items
    after it get keyed ones; both lead to their requests."""
    await downgrade(engine, "0010-1")  # before the install key
    [old_id] = await accept_many(engine, [NewItem("smtp", MAIL % 1)])
    await upgrade(engine)
    refs = await references(engine)
    assert refs.reference_for(old_id) == reference_for(old_id)  # as it was handed out
    [new_id] = await accept_many(engine, [NewItem("smtp", MAIL % 2)])
    assert refs.reference_for(new_id) != reference_for(new_id)
    await Pipeline(engine=engine, config=config).drain()
    async with engine.connect() as conn:
        stored = set((await conn.execute(select(requests.c.reference))).scalars())
    assert stored == {reference_for(old_id), refs.reference_for(new_id)}
    for item_id in (old_id, new_id):
        found = await queries.get_request(engine, refs.reference_for(item_id).lower())
        assert found is not None and found["subject"] == "Hello"


async def test_references__a_missing_key_is_made_once_from_the_next_id(
        engine: AsyncEngine) -> None:
    """A database whose key row is gone (emptied by hand) gets a new key on first
    use, keyed from the next inbox id: references already stored are kept."""
    [before] = await accept_many(engine, [NewItem("smtp", MAIL % 1)])
    async with engine.begin() as conn:
        await conn.execute(delete(install_keys))
    refs = await references(engine)
    assert refs.reference_for(before) == reference_for(before)
    async with engine.connect() as conn:
        row = (await conn.execute(select(install_keys))).one()
    assert row.keyed_from == before + 1 and len(bytes.fromhex(row.secret)) == 32
