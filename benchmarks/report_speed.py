"""Report speed: `storage.reports.report` over 1M stored requests on PostgreSQL.

    .venv/bin/python benchmarks/report_speed.py [--count 1000000] [--repeat 3] [--explain]

On a scratch PostgreSQL database, generates --count requests in SQL (INSERT ...
SELECT generate_series), spread evenly over 2025 in four queues: 90% answered
within a day, 80% resolved within a week, business-hours times measured (so
the report's sweep finds nothing to do), due times set; and a timeline of 3.1
events per request (received, classified, the reply, 3% reopened, 10% breached,
2% escalated). Then times, best of --repeat, the whole report over the whole
year (every request in the period) per grouping, through the gateway's own
function, and a bare baseline over the same rows: `SELECT queue, count(*) FROM
requests GROUP BY queue`. Prints each time and its ratio to the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import migrate, scratch_database  # noqa: E402, I001

from storage.engine import create_engine  # noqa: E402
from storage.reports import ReportQuery, _measures, report  # noqa: E402

START = datetime(2025, 1, 1, tzinfo=UTC)
END = datetime(2026, 1, 1, tzinfo=UTC)
GROUPINGS = ("queue", "priority", "agent", "day", "week")
BASELINE = "SELECT queue, count(*) FROM requests GROUP BY queue"

# g-th request of n: created at an even step through 2025; answered (9 in 10)
# up to a day later, resolved (8 in 10) up to a week later; business-hours
# times a third of the wall-clock ones.
GENERATE = [
    """INSERT INTO requests (id, reference, status, queue, channel, priority, type, component,
                            requester_email, subject, custom_fields, tags, escalation_level,
                            created_at, updated_at, version, reopened_count, sla_policy,
                            first_response_due_at, resolution_due_at, first_response_at,
                            resolved_at, first_response_business_seconds,
                            resolution_business_seconds, resolution_measured_for,
                            first_responder)
       SELECT g, 'R-' || g, CASE WHEN g % 10 < 8 THEN 'resolved' ELSE 'open' END,
              (ARRAY['general','billing','it','sales'])[g % 4 + 1],
              (ARRAY['smtp','api'])[g % 2 + 1], (ARRAY['P1','P2','P3','P4'])[g % 4 + 1],
              (ARRAY['incident','question','request'])[g % 3 + 1],
              (ARRAY['mail','vpn','printer','billing','web'])[g % 5 + 1],
              'user' || (g % 5000) || '@example.com', 'Generated request ' || g,
              '{}'::jsonb, '[]'::jsonb, 0, c, coalesce(r, c), 1, 0, 'standard',
              c + interval '8 hours', c + interval '3 days', f, r,
              extract(epoch from f - c) / 3, extract(epoch from r - c) / 3, r,
              CASE WHEN f IS NOT NULL THEN 'agent:' || (g % 20) END
       FROM (SELECT g, c,
                    CASE WHEN g % 10 < 9 THEN c + ((g * 7919) % 86400) * interval '1 second'
                    END AS f,
                    CASE WHEN g % 10 < 8 THEN c + interval '1 hour'
                         + ((g * 104729) % 604800) * interval '1 second' END AS r
             FROM (SELECT g, $1::timestamptz + (g - 1) * ($2::timestamptz - $1) / $3 AS c
                   FROM generate_series(1::bigint, $3) g) t) s""",
    """INSERT INTO events (request_id, kind, actor, at, data)
       SELECT g, k, 'system', created_at, '{}'::jsonb
       FROM (SELECT id AS g, created_at FROM requests) r,
            unnest(ARRAY['received', 'classified']) k""",
    """INSERT INTO events (request_id, kind, actor, at, data)
       SELECT id, 'replied', 'agent:' || (id % 20), first_response_at, '{}'::jsonb
       FROM requests WHERE first_response_at IS NOT NULL""",
    """INSERT INTO events (request_id, kind, actor, at, data)
       SELECT id, k, 'scheduler', created_at + interval '9 hours', '{}'::jsonb
       FROM requests, LATERAL (VALUES ('reopened', 3), ('sla_breached', 10),
                                      ('escalated', 2)) v(k, pct)
       WHERE (id * 31) % 100 < pct""",
]


async def generate(dsn: str, count: int) -> float:
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        for sql in GENERATE:
            await conn.execute(sql, *((START, END, count) if "$3" in sql else ()))
        for table in ("requests", "events"):
            await conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                               f" (SELECT max(id) FROM {table}))")
        await conn.execute("VACUUM ANALYZE requests, events")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def timings(url: str, repeat: int, explain: bool) -> list[str]:
    engine = create_engine(url)
    lines = []
    try:
        async with engine.connect() as conn:
            best = float("inf")
            for _ in range(repeat):
                started = time.perf_counter()
                rows = (await conn.execute(text(BASELINE))).all()
                best = min(best, time.perf_counter() - started)
        baseline = best
        total = sum(n for _, n in rows)
        lines.append(f"baseline  {baseline * 1000:8.0f} ms  ({BASELINE}; {total:,} rows)")
        for grouping in GROUPINGS:
            query = ReportQuery(start=START, end=END, grouping=grouping, now=END)
            best = float("inf")
            for _ in range(repeat):
                started = time.perf_counter()
                found = await report(engine, query)
                best = min(best, time.perf_counter() - started)
            created = sum(int(row["created"]) for row in found)
            lines.append(f"{grouping:<9} {best * 1000:8.0f} ms  {best / baseline:5.1f}x baseline"
                         f"  ({len(found)} groups, {created:,} created)")
            if explain and grouping == "queue":
                statement = _measures(query, "postgresql").compile(
                    dialect=engine.dialect, compile_kwargs={"literal_binds": True})
                async with engine.connect() as conn:
                    plan = (await conn.execute(
                        text(f"EXPLAIN (ANALYZE, COSTS OFF) {statement}"))).scalars().all()
                lines += [f"   {line}" for line in plan]
    finally:
        await engine.dispose()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="the best of this many counts")
    parser.add_argument("--explain", action="store_true",
                        help="EXPLAIN ANALYZE of the queue report's main statement")
    args = parser.parse_args()
    with scratch_database() as dsn:
        url = dsn.replace("postgresql://", "postgresql+asyncpg://")
        asyncio.run(migrate(url))
        seconds = asyncio.run(generate(dsn, args.count))
        print(f"{args.count:,} requests generated in {seconds:.0f} s; "
              f"report over {START:%Y-%m-%d} to {END:%Y-%m-%d} (all of them), "
              f"best of {args.repeat}:")
        print("\n".join(asyncio.run(timings(url, args.repeat, args.explain))))


if __name__ == "__main__":
    main()
