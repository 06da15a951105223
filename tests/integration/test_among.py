"""`column IN (values)` as the store path sends it (storage/engine.py `among`):
the same rows as an IN list on both backends; on PostgreSQL one array, so one
statement text for every length and no limit on the number of values."""

from __future__ import annotations

from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.engine import among, create_engine, insert_ids, utcnow
from storage.inbox import NewItem, item_row
from storage.models import inbox_items


async def _items(engine: AsyncEngine, count: int) -> list[int]:
    now = utcnow()
    rows = [item_row(NewItem(channel="api" if n % 3 else "smtp", raw=f"item {n}".encode(),
                             meta={}), now) for n in range(count)]
    async with engine.begin() as conn:
        return await insert_ids(conn, inbox_items, rows)


async def test_among__the_rows_an_in_list_finds(engine: AsyncEngine) -> None:
    ids = await _items(engine, 40)
    wanted_sets: list[list[int]] = [[], [ids[0]], ids[::3], [*ids[5:9], -1, 10**12], ids]
    async with engine.connect() as conn:
        for wanted in wanted_sets:
            found = set((await conn.execute(select(inbox_items.c.id).where(
                among(conn, inbox_items.c.id, wanted)))).scalars())
            expected = set((await conn.execute(select(inbox_items.c.id).where(
                inbox_items.c.id.in_(wanted)))).scalars())
            assert found == expected == set(ids) & set(wanted)
        # Text columns too, with a value that is no channel at all.
        channels = set((await conn.execute(select(inbox_items.c.id).where(
            among(conn, inbox_items.c.channel, ["smtp", "nothing"])))).scalars())
        assert channels == {i for n, i in enumerate(ids) if n % 3 == 0}


async def test_among__one_statement_whatever_the_length_on_postgresql(
        engine: AsyncEngine) -> None:
    ids = await _items(engine, 5)
    sent: list[tuple[str, object]] = []

    def remember(_conn: object, _cursor: object, statement: str, parameters: object,
                 *_: object) -> None:
        sent.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", remember)
    try:
        async with engine.connect() as conn:
            for wanted in (ids[:1], ids[:3], ids):
                await conn.execute(select(inbox_items.c.id).where(
                    among(conn, inbox_items.c.id, wanted)))
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", remember)
    statements = {statement for statement, _ in sent}
    if engine.dialect.name == "postgresql":
        assert len(statements) == 1, statements
        assert "ANY" in next(iter(statements))
        assert [len(parameters[0]) for _, parameters in sent] == [1, 3, 5]  # type: ignore[index]
    else:  # an IN list: a statement per length
        assert len(statements) == 3


async def test_among__beyond_a_statements_parameters_on_postgresql(pg_url: str) -> None:
    # (SQLite's callers keep their lists within its bound: storage/participants.py.)
    engine = create_engine(pg_url)
    try:
        ids = await _items(engine, 3)
        wanted = [*range(-40_000, 0), *ids]  # asyncpg binds at most 32,767 parameters
        async with engine.connect() as conn:
            found = set((await conn.execute(select(inbox_items.c.id).where(
                among(conn, inbox_items.c.id, wanted)))).scalars())
        assert found == set(ids)
    finally:
        await engine.dispose()


async def test_among__a_longer_value_never_matches_its_cut_prefix(engine: AsyncEngine) -> None:
    """A value longer than the column is compared whole, as in an IN list: were
    it cast to the column's VARCHAR(32), it would be cut and match the row."""
    ids = await _items(engine, 2)
    token = "t" * inbox_items.c.claim_token.type.length  # type: ignore[attr-defined]
    async with engine.begin() as conn:
        await conn.execute(update(inbox_items).where(inbox_items.c.id == ids[0])
                           .values(claim_token=token))
    async with engine.connect() as conn:
        for wanted, expected in (([token + "x"], set()), ([token], {ids[0]}),
                                 ([token + "x", token], {ids[0]})):
            found = set((await conn.execute(select(inbox_items.c.id).where(
                among(conn, inbox_items.c.claim_token, wanted)))).scalars())
            assert found == expected, wanted
