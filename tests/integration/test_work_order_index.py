"""Claims and queue listings walk ix_requests_queue_work_order and stop at their
LIMIT, on both backends: their statements sort and filter by exactly the
indexed expressions (a bound constant, or a rebuilt table that lost the index,
sends them back to reading and sorting a queue's whole backlog)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import claims
from storage.inbox import NewItem, accept_many
from storage.processing import claim_items
from storage.records import NewMessage, NewRequest
from storage.store import complete_items

INDEX = "ix_requests_queue_work_order"


async def make_requests(engine: AsyncEngine, count: int, queue: str) -> None:
    await accept_many(engine, [NewItem("api", b"{}") for _ in range(count)])
    items = await claim_items(engine, limit=count, lease_seconds=60)
    await complete_items(engine, [(item, NewRequest(
        queue=queue, message=NewMessage(subject=f"r{item.id}", text="t", new_text="t",
                                        from_address=None, from_name=None),
        requester_email="a@example.com", requester_name=None)) for item in items])


async def plan_of(engine: AsyncEngine, step: Callable[[], Awaitable[Any]]) -> list[str]:
    """The plan of the statement on `requests` that `step` sends, as sent."""
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                many: bool) -> None:
        sent.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        await step()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    statement, parameters = next((s, p) for s, p in sent
                                 if "ORDER BY" in s and "FROM requests" in s)
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            return [str(row[-1]) for row in rows]
        # A tiny table is cheapest to read whole: price that out, so the plan
        # shows whether the index can give the order, not what it costs.
        await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        await conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
        # The plan a prepared statement may settle on, its parameters unknown
        # (EXPLAIN with values plans for those values only).
        await conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.exec_driver_sql("PREPARE work_order AS " + statement)
        # EXECUTE takes no parameters: the values as literals, typed by PREPARE.
        values = ", ".join("NULL" if v is None else "'" + str(v).replace("'", "''") + "'"
                           for v in parameters)
        rows = await conn.exec_driver_sql(f"EXPLAIN EXECUTE work_order({values})")
        plan = [str(row[0]) for row in rows]
        await conn.rollback()
        await conn.exec_driver_sql("DEALLOCATE work_order")
        return plan


def assert_walks_index(plan: list[str]) -> None:
    text = "\n".join(plan)
    assert INDEX in text, text
    # SQLite: "USE TEMP B-TREE FOR ORDER BY"; PostgreSQL: a Sort node.
    assert "TEMP B-TREE" not in text and "Sort" not in text, text


async def test_work_order__claim_and_listing_pages_walk_the_index(engine: AsyncEngine) -> None:
    await make_requests(engine, 30, "general")
    await make_requests(engine, 10, "billing")
    await claims.claim(engine, "general", "ann", limit=2, lease_seconds=60)

    assert_walks_index(await plan_of(engine, lambda: claims.claim(
        engine, "general", "bob", limit=1, lease_seconds=60)))
    first = await plan_of(engine, lambda: claims.list_queue(
        engine, "general", filters=claims.ListFilters(), limit=10, cursor=None))
    assert_walks_index(first)
    _, cursor = await claims.list_queue(engine, "general", filters=claims.ListFilters(),
                                        limit=10, cursor=None)
    assert cursor is not None
    assert_walks_index(await plan_of(engine, lambda: claims.list_queue(
        engine, "general", filters=claims.ListFilters(), limit=10, cursor=cursor)))
