"""SQLite's writers of one process take turns (storage.engine.write_gate): the
intake's group commit and the pipeline's batches queue in order instead of
sleeping in SQLite's busy handler, what arrives while the turn is taken shares
the intake's next commit, a task's nested transaction passes its own turn, and
the readiness probe calls a turn held past its short wait a lock."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.engine import create_engine, is_sqlite, transaction, write_gate
from storage.errors import StorageUnavailable
from storage.inbox import InboxWriter, NewItem
from storage.models import inbox_items
from storage.queries import NotWritable, writable


def item(n: int) -> NewItem:
    return NewItem(channel="api", raw=f'{{"subject": "gate {n}"}}'.encode())


def sqlite_copy(template: Path, tmp_path: Path) -> str:
    path = tmp_path / "gate.db"
    shutil.copyfile(template, path)
    return f"sqlite+aiosqlite:///{path}"


@asynccontextmanager
async def writing(url: str, *, engine_timeout: float = 5,
                  on_commit: Callable[[], None] | None = None
                  ) -> AsyncIterator[tuple[AsyncEngine, InboxWriter, asyncio.Task[None]]]:
    """An engine and a running group-commit writer on it (its task, to stop it)."""
    engine = create_engine(url, timeout=engine_timeout)
    writer = InboxWriter(engine=engine, timeout=5, on_commit=on_commit)
    running = asyncio.create_task(writer.run())
    try:
        yield engine, writer, running
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await engine.dispose()


async def test_write_gate__writers_take_turns_in_order(db_url: str) -> None:
    engine = create_engine(db_url)
    spans: list[tuple[str, str]] = []
    try:
        async def writer(name: str) -> None:
            async with transaction(engine) as conn:
                spans.append((name, "in"))
                await conn.execute(select(1))
                await asyncio.sleep(0.01)  # others try to start meanwhile
                spans.append((name, "out"))

        await asyncio.gather(*(writer(f"w{n}") for n in range(6)))
    finally:
        await engine.dispose()
    if is_sqlite(engine):
        # One at a time, first come first served.
        assert spans == [(f"w{n}", side) for n in range(6) for side in ("in", "out")]
    else:
        # PostgreSQL has no gate: the transactions overlap.
        assert [side for _, side in spans[:2]] == ["in", "in"]


async def test_write_gate__a_nested_transaction_passes_its_own_turn(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        async with asyncio.timeout(5):  # a gate that waited for itself would hang here
            async with write_gate(engine), write_gate(engine):
                pass
    finally:
        await engine.dispose()


async def test_write_gate__intake_commits_while_the_pipeline_holds_its_turn(
        sqlite_template: Path, tmp_path: Path) -> None:
    """The group commit waits for the pipeline's turn and then commits, with
    no 'database is locked' on the way."""
    async with writing(sqlite_copy(sqlite_template, tmp_path)) as (engine, writer, _):
        async with transaction(engine) as conn:  # the pipeline's batch, held
            submitted = [asyncio.create_task(writer.submit(item(n))) for n in range(20)]
            await asyncio.sleep(0.2)
            assert not any(task.done() for task in submitted)  # waiting for the turn
            await conn.execute(select(1))
        accepted = await asyncio.gather(*submitted)
        async with engine.connect() as conn:
            ids = set((await conn.execute(select(inbox_items.c.id))).scalars())
        assert {a.item_id for a in accepted} == ids and len(ids) == 20


async def test_write_gate__what_waits_for_the_turn_shares_one_commit(
        sqlite_template: Path, tmp_path: Path) -> None:
    """The group commit gathers its batch once the turn is its own: items that
    arrive while another writer holds the turn share one commit (one fsync),
    instead of a batch taken before the wait and a second one after it."""
    commits: list[None] = []
    async with writing(sqlite_copy(sqlite_template, tmp_path),
                       on_commit=lambda: commits.append(None)) as (engine, writer, _):
        await writer.submit(item(-1))  # the writer's connection and references, ready
        commits.clear()
        async with transaction(engine) as conn:  # the pipeline's batch, held
            early = [asyncio.create_task(writer.submit(item(n))) for n in range(10)]
            await asyncio.sleep(0.1)  # the writer has the first and waits for the turn
            late = [asyncio.create_task(writer.submit(item(n))) for n in range(10, 20)]
            await asyncio.sleep(0.1)
            assert not any(task.done() for task in early + late)
            await conn.execute(select(1))
        accepted = await asyncio.gather(*early, *late)
        assert len({a.item_id for a in accepted}) == 20
        assert len(commits) == 1


async def test_write_gate__a_turn_that_never_comes_is_try_later(
        sqlite_template: Path, tmp_path: Path) -> None:
    """The group commit waits for its turn as long as the engine's timeout; then
    the item waiting is answered "try later" (never stored), and the writer
    goes on once the turn is free."""
    async with writing(sqlite_copy(sqlite_template, tmp_path),
                       engine_timeout=0.3) as (engine, writer, _):
        async with write_gate(engine):  # held past the engine's timeout
            with pytest.raises(StorageUnavailable, match="write turn"):
                await writer.submit(item(1))
        accepted = await writer.submit(item(2))
        async with engine.connect() as conn:
            ids = list((await conn.execute(select(inbox_items.c.id))).scalars())
        assert ids == [accepted.item_id]


async def test_write_gate__a_writer_stopped_while_waiting_for_its_turn_answers(
        sqlite_template: Path, tmp_path: Path) -> None:
    """Stopped while it waits for the turn, the writer answers the item it took
    "try later" at once, as it answers a batch it was writing."""
    async with writing(sqlite_copy(sqlite_template, tmp_path)) as (engine, writer, running):
        async with write_gate(engine):
            submitted = asyncio.create_task(writer.submit(item(1)))
            await asyncio.sleep(0.1)  # taken, and waiting for the turn
            running.cancel()
            with pytest.raises(StorageUnavailable, match="shutting down"):
                async with asyncio.timeout(1):
                    await submitted


async def test_write_gate__readiness_calls_a_held_turn_a_lock(
        sqlite_template: Path, tmp_path: Path) -> None:
    engine = create_engine(sqlite_copy(sqlite_template, tmp_path), timeout=5)
    held = asyncio.Event()
    release = asyncio.Event()

    async def stuck_writer() -> None:
        async with write_gate(engine):
            held.set()
            await release.wait()

    task = asyncio.create_task(stuck_writer())
    try:
        await held.wait()
        with pytest.raises(NotWritable, match="locked"):
            await writable(engine, lock_ms=100)
        with pytest.raises(StorageUnavailable, match="write turn"):
            async with write_gate(engine, 0.05):
                pass
        release.set()
        await task
        await writable(engine, lock_ms=100)  # free again: no exception
    finally:
        release.set()
        await engine.dispose()
