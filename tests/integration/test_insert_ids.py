"""New rows' ids in the order of their rows (storage/engine.py `insert_ids`), on
both backends: on SQLite the ids come back unordered from one statement per
few hundred rows and are sorted, not one statement per row; on PostgreSQL one
statement of one array per column, the same text for every number of rows."""

from __future__ import annotations

from sqlalchemy import delete, event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.engine import insert_ids, utcnow
from storage.inbox import NewItem, item_row
from storage.models import inbox_items


def _rows(start: int, count: int) -> list[dict[str, object]]:
    now = utcnow()
    return [item_row(NewItem(channel="api", raw=f"row {n}".encode(), meta={"n": n}), now)
            for n in range(start, start + count)]


async def test_insert_ids__each_id_is_its_own_rows_in_few_statements(
        engine: AsyncEngine) -> None:
    statements = 0

    def count(*_: object) -> None:
        nonlocal statements
        statements += 1

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        async with engine.begin() as conn:
            first = await insert_ids(conn, inbox_items, _rows(0, 300))
            # A gap below the table's largest id, and the largest one gone.
            await conn.execute(delete(inbox_items).where(inbox_items.c.id.in_(
                [first[10], first[11], first[-1]])))
            before = statements
            ids = await insert_ids(conn, inbox_items, _rows(300, 2500))
            used = statements - before
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert used <= 5, f"{used} statements for 2,500 rows"
    assert len(ids) == len(set(ids)) == 2500
    async with engine.connect() as conn:
        stored = dict((await conn.execute(select(inbox_items.c.id, inbox_items.c.raw)
                                          .where(inbox_items.c.id.in_(ids)))).all())
    assert [bytes(stored[i]) for i in ids] == [f"row {n}".encode() for n in range(300, 2800)]


async def test_insert_ids__one_statement_text_for_every_size(
        engine: AsyncEngine) -> None:
    texts: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        texts.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        async with engine.begin() as conn:
            first = await insert_ids(conn, inbox_items, _rows(0, 40))
            await conn.execute(delete(inbox_items).where(inbox_items.c.id.in_(
                [first[3], first[-1]])))
            before = len(texts)
            ids = await insert_ids(conn, inbox_items, _rows(40, 7))
            ids += await insert_ids(conn, inbox_items, _rows(47, 900))
            used = texts[before:]
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)
    if engine.dialect.name == "postgresql":
        assert len(used) == 2 and used[0] == used[1] == texts[0], "one text for every size"
    assert len(ids) == len(set(ids)) == 907
    async with engine.connect() as conn:
        stored = {row.id: row for row in (await conn.execute(
            select(inbox_items.c.id, inbox_items.c.raw, inbox_items.c.meta,
                   inbox_items.c.state, inbox_items.c.attempts)
            .where(inbox_items.c.id.in_(ids)))).all()}
    assert [bytes(stored[i].raw) for i in ids] == [f"row {n}".encode() for n in range(40, 947)]
    assert [stored[i].meta for i in ids] == [{"n": n} for n in range(40, 947)]
    assert {(stored[i].state, stored[i].attempts) for i in ids} == {("pending", 0)}
