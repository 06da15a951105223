"""Audit listing and purge speed over a large audit trail, on both backends.

    .venv/bin/python benchmarks/audit_listing.py [--count 500000] [--repeat 5] [--no-postgres]

Generates --count audit events in SQL (one a second back from now, 50 actors,
a handful of actions, 10,000 targets) in a scratch PostgreSQL database and a
scratch SQLite file, then times, best of --repeat, what GET /v1/admin/audit
runs (storage.audit.list_events, 100 a page): the first page, the page after a
cursor deep in the trail, a page filtered by actor, by action, by target, and
by a one-day window; and one purge batch of 1,000 (purge_before).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import scratch_database  # noqa: E402, I001

from storage.audit import AuditFilters, list_events, purge_before  # noqa: E402
from storage.engine import create_engine  # noqa: E402
from storage.migrate import upgrade  # noqa: E402

NOW = datetime(2026, 6, 1, tzinfo=UTC)
ACTIONS = ("token.create", "request.reroute", "request.merge", "quarantine.release",
           "dead_letter.retry", "report.download")

PG_GENERATE = """
INSERT INTO audit_events (at, actor, action, target, client, data)
SELECT timestamptz '2026-06-01 00:00:00+00' - make_interval(secs => g),
       'agent:' || (g % 50), (ARRAY['token.create','request.reroute','request.merge',
       'quarantine.release','dead_letter.retry','report.download'])[1 + g % 6],
       'T-' || (g % 10000), '192.0.2.' || (g % 250), '{"n": 1}'
FROM generate_series(1, :count) AS g
"""
SQLITE_GENERATE = """
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :count)
INSERT INTO audit_events (at, actor, action, target, client, data)
SELECT strftime('%Y-%m-%d %H:%M:%f', '2026-06-01 00:00:00', '-' || n || ' seconds'),
       'agent:' || (n % 50),
       CASE n % 6 WHEN 0 THEN 'token.create' WHEN 1 THEN 'request.reroute'
                  WHEN 2 THEN 'request.merge' WHEN 3 THEN 'quarantine.release'
                  WHEN 4 THEN 'dead_letter.retry' ELSE 'report.download' END,
       'T-' || (n % 10000), '192.0.2.' || (n % 250), '{"n": 1}'
FROM g
"""


async def _best(repeat: int, run: Callable[[], Awaitable[object]]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await run()
        times.append(time.perf_counter() - start)
    return min(times)


async def measure(url: str, label: str, count: int, repeat: int) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
        started = time.perf_counter()
        async with engine.begin() as conn:
            generate = PG_GENERATE if engine.dialect.name == "postgresql" else SQLITE_GENERATE
            await conn.execute(text(generate), {"count": count})
            if engine.dialect.name == "postgresql":
                await conn.execute(text("ANALYZE audit_events"))
        print(f"{label}: {count:,} events generated in {time.perf_counter() - started:.1f} s")
        # A cursor about half-way back.
        deep = (NOW - timedelta(seconds=count // 2), count)
        day = NOW - timedelta(days=2)
        cases: list[tuple[str, AuditFilters, tuple[datetime, int] | None]] = [
            ("first page", AuditFilters(), None),
            ("page after a deep cursor", AuditFilters(), deep),
            ("by actor", AuditFilters(actor="agent:7"), None),
            ("by action", AuditFilters(action="request.merge"), None),
            ("by target", AuditFilters(target="T-1234"), None),
            ("one-day window", AuditFilters(since=day, until=day + timedelta(days=1)), None),
        ]
        for name, filters, after in cases:
            async def page(f: AuditFilters = filters,
                           a: tuple[datetime, int] | None = after) -> object:
                return await list_events(engine, f, limit=100, after=a)
            best = await _best(repeat, page)
            print(f"  {name:28s} {best * 1000:8.2f} ms")
        cutoff = NOW - timedelta(seconds=count - 5_000 * repeat)
        best = await _best(repeat, lambda: purge_before(engine, cutoff, limit=1000))
        print(f"  {'purge batch of 1,000':28s} {best * 1000:8.2f} ms")
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(measure(f"sqlite+aiosqlite:///{tmp}/audit.db", "SQLite", args.count,
                            args.repeat))
    if not args.no_postgres:
        with scratch_database() as dsn:
            asyncio.run(measure(dsn.replace("postgresql://", "postgresql+asyncpg://"),
                                "PostgreSQL", args.count, args.repeat))


if __name__ == "__main__":
    main()
