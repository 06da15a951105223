"""Flat growth: intake, pipeline, claim and listing rates with 0, 100k and 1M stored requests.

    .venv/bin/python benchmarks/growth.py [--sizes 0 100000 1000000] [--items N]

On a scratch PostgreSQL database, preloads stored requests generated in SQL
(INSERT ... SELECT generate_series: each with its inbox item, one message and
two timeline events; 1 in --open-every (50: 2%) still workable, in four
queues, the rest closed)
and at each size measures, through the gateway's own storage functions:

  intake    storage.inbox.accept_many, N items in batches of 50
  pipeline  storage.processing.claim_items + storage.store.complete_items on
            those items, batches of 50 (the store path; no parsing or routing)
  claim     storage.claims.claim, one request at a time, 4 agents
  listing   storage.claims.list_queue, the first page of 50 of a queue

The round's own requests (all in queue "general") are closed after it, so the
workable backlog a claim or listing walks is that round's N plus the preloaded
open ones. Each size is measured --repeat times; the best rate counts (other
load on a shared machine only ever slows a round).

then prints the rates and their ratios to the empty database, the indexes'
sizes (pg_relation_size), and EXPLAIN of the claim and the listing statements
exactly as the gateway sends them (captured from the driver), noting any
sequential scan.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import migrate, scratch_database  # noqa: E402, I001

from storage import claims  # noqa: E402
from storage.engine import create_engine  # noqa: E402
from storage.inbox import NewItem, accept_many  # noqa: E402
from storage.processing import claim_items  # noqa: E402
from storage.records import NewMessage, NewRequest  # noqa: E402
from storage.store import complete_items  # noqa: E402

BATCH = 50
# g / 7: the workable ones (every n-th) spread over all four queues too.
QUEUES = "(ARRAY['general','billing','it','sales'])[(g / 7) % 4 + 1]"
BODY = b'{"subject": "Invoice export fails", "body": "' + b"Lorem ipsum " * 60 + b'"}'

# Ids follow the tables' current maximum, then the sequences are moved past them.
PRELOAD = [
    """INSERT INTO inbox_items (id, channel, received_at, raw, meta, state, attempts,
                                next_attempt_at)
       SELECT $1 + g, 'api', now() - g * interval '20 seconds', convert_to('{}', 'UTF8'),
              '{}'::jsonb, 'done', 1, now() - g * interval '20 seconds'
       FROM generate_series(1, $2) g""",
    f"""INSERT INTO requests (id, reference, inbox_item_id, status, queue, channel, priority,
                             requester_email, subject, custom_fields, tags,
                             escalation_level, created_at, updated_at, version, reopened_count)
       SELECT $1 + g, 'PRE-' || ($1 + g), $1 + g,
              CASE WHEN $3 > 0 AND g % $3 = 0 THEN 'open' ELSE 'closed' END, {QUEUES}, 'api',
              (ARRAY['P1','P2','P3','P4'])[g % 4 + 1], 'user' || (g % 5000) || '@example.com',
              'Preloaded request ' || g, '{{}}'::jsonb, '[]'::jsonb, 0,
              now() - g * interval '20 seconds', now() - g * interval '10 seconds', 1, 0
       FROM generate_series(1, $2) g""",
    """INSERT INTO messages (request_id, inbox_item_id, direction, "references", "to", cc,
                            subject, new_text, text, flags, created_at)
       SELECT $1 + g, $1 + g, 'in', '[]'::jsonb, '[]'::jsonb, '[]'::jsonb,
              'Preloaded request ' || g, 'Hello, it does not work.', 'Hello, it does not work.',
              '{}'::jsonb, now() - g * interval '20 seconds'
       FROM generate_series(1, $2) g""",
    """INSERT INTO events (request_id, kind, actor, at, data)
       SELECT $1 + g, k, 'gateway', now() - g * interval '20 seconds', '{}'::jsonb
       FROM generate_series(1, $2) g, unnest(ARRAY['received', 'classified']) k""",
]


async def preload(dsn: str, count: int, open_every: int) -> float:
    """Add `count` stored requests; returns the seconds it took."""
    if count <= 0:
        return 0.0
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        base = max(await conn.fetchval("SELECT coalesce(max(id), 0) FROM inbox_items"),
                   await conn.fetchval("SELECT coalesce(max(id), 0) FROM requests"))
        async with conn.transaction():
            for sql in PRELOAD:
                await conn.execute(sql, base, count, *((open_every,) if "$3" in sql else ()))
            for table in ("inbox_items", "requests", "messages", "events"):
                await conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                    f" (SELECT max(id) FROM {table}))")
        await conn.execute("VACUUM ANALYZE inbox_items, requests, messages, events")
    finally:
        await conn.close()
    return time.perf_counter() - started


def request_for(n: int) -> NewRequest:
    return NewRequest(queue="general", message=NewMessage(
        subject=f"bench {n}", text="Hello, it does not work.", new_text="Hello, it does not work.",
        from_address=None, from_name=None), requester_email="bench@example.com",
        requester_name=None)


async def rates(url: str, items: int, claims_n: int, listings: int) -> dict[str, float]:
    engine = create_engine(url, pool_size=8)
    out: dict[str, float] = {}
    try:
        started = time.perf_counter()
        for start in range(0, items, BATCH):
            await accept_many(engine, [NewItem("api", BODY, {"bench": True})
                                       for _ in range(min(BATCH, items - start))])
        out["intake"] = items / (time.perf_counter() - started)

        started, done = time.perf_counter(), 0
        while batch := await claim_items(engine, limit=BATCH, lease_seconds=60):
            await complete_items(engine, [(item, request_for(item.id)) for item in batch])
            done += len(batch)
        out["pipeline"] = done / (time.perf_counter() - started)

        claimed = 0

        async def agent(n: int) -> None:
            nonlocal claimed
            for _ in range(claims_n // 4):
                if await claims.claim(engine, "general", f"agent-{n}", limit=1,
                                      lease_seconds=300):
                    claimed += 1

        started = time.perf_counter()
        await asyncio.gather(*(agent(n) for n in range(4)))
        out["claim"] = claimed / (time.perf_counter() - started)

        started = time.perf_counter()
        for _ in range(listings):
            page, _cursor = await claims.list_queue(engine, "general",
                                                    filters=claims.ListFilters(), limit=50,
                                                    cursor=None)
            assert page, "the queue is not empty"
        out["listing"] = listings / (time.perf_counter() - started)
        # Close this round's requests, so the next round's (and size's) workable
        # backlog is its own plus the preloaded open ones, not every round's.
        async with engine.begin() as conn:
            await conn.exec_driver_sql(
                "UPDATE requests SET status = 'closed', claimed_by = NULL, claim_until = NULL"
                " WHERE reference NOT LIKE 'PRE-%' AND status <> 'closed'")
    finally:
        await engine.dispose()
    return out


async def explain(url: str) -> list[str]:
    """EXPLAIN the claim and the listing as the driver receives them."""
    engine = create_engine(url)
    captured: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                many: bool) -> None:
        captured.append((statement, parameters))

    lines: list[str] = []
    try:
        steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("claim", lambda: claims.claim(engine, "general", "explainer", limit=1,
                                           lease_seconds=1)),
            ("listing", lambda: claims.list_queue(engine, "general",
                                                  filters=claims.ListFilters(), limit=50,
                                                  cursor=None)),
        ]
        for name, step in steps:
            captured.clear()
            event.listen(engine.sync_engine, "before_cursor_execute", capture)
            try:
                await step()
            finally:
                event.remove(engine.sync_engine, "before_cursor_execute", capture)
            statement, parameters = next(
                (s, p) for s, p in captured if s.lstrip().upper().startswith(("WITH", "SELECT",
                                                                              "UPDATE")))
            async with engine.connect() as conn:
                plan = [row[0] for row in await conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)]
                await conn.rollback()  # EXPLAIN ANALYZE ran the claim: undo it
            seq = [p.strip() for p in plan if "Seq Scan" in p]
            lines.append(f"-- {name}: " + (f"SEQUENTIAL SCAN: {seq}" if seq else "no seq scan"))
            lines += ["   " + p for p in plan]
    finally:
        await engine.dispose()
    return lines


async def index_sizes(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT relname, indexrelname, pg_relation_size(indexrelid) AS size"
            " FROM pg_stat_user_indexes"
            " WHERE relname IN ('requests', 'messages', 'inbox_items', 'events')"
            " ORDER BY relname, indexrelname")
    finally:
        await conn.close()
    return [f"   {r['relname']:<12} {r['indexrelname']:<48} {r['size'] / 2**20:8.1f} MiB"
            for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 100_000, 1_000_000])
    parser.add_argument("--items", type=int, default=2000, help="intake and pipeline items")
    parser.add_argument("--claims", type=int, default=1000)
    parser.add_argument("--listings", type=int, default=300)
    parser.add_argument("--open-every", type=int, default=50,
                        help="1 in this many preloaded requests is still workable (0: none)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="measure this often at each size; the best rate counts")
    parser.add_argument("--explain", action="store_true", help="print the full plans")
    args = parser.parse_args()
    results: list[tuple[int, dict[str, float]]] = []
    report: list[str] = []
    with scratch_database() as dsn:
        url = dsn.replace("postgresql://", "postgresql+asyncpg://")
        asyncio.run(migrate(url))
        stored = 0
        for size in sorted(args.sizes):
            seconds = asyncio.run(preload(dsn, size - stored, args.open_every))
            stored = size
            # Best of several: this shared machine's other load only ever slows a run.
            rounds = [asyncio.run(rates(url, args.items, args.claims, args.listings))
                      for _ in range(args.repeat)]
            measured = {k: max(r[k] for r in rounds) for k in rounds[0]}
            results.append((size, measured))
            report.append(f"== {size:,} preloaded (in {seconds:.0f} s): "
                          + "  ".join(f"{k} {v:,.0f}/s" for k, v in measured.items()))
            plans = asyncio.run(explain(url))
            report += plans if args.explain else [p for p in plans if p.startswith("--")]
            report.append("   index sizes:")
            report += asyncio.run(index_sizes(dsn))
    print("\n".join(report))
    empty = results[0][1]
    print(f"\nrates (per second; ratio to {results[0][0]:,} preloaded):")
    for size, measured in results:
        print(f"  {size:>9,}  " + "   ".join(
            f"{k} {v:7,.0f} ({v / empty[k]:.2f}x)" for k, v in measured.items()))


if __name__ == "__main__":
    main()
