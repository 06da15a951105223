"""Dashboard speed: the figures of one /dashboard page over 1M stored requests.

    .venv/bin/python benchmarks/dashboard_speed.py [--count 1000000] [--repeat 3]

On a scratch PostgreSQL database, generates the requests as
benchmarks/report_speed.py does (spread over 2025, four queues, due times
set, 10% breached) and times, best of --repeat, each statement a dashboard
page runs for the last 30 days of 2025 (the clock at 2026-01-01): the two
reports (per day, per queue), the first-response histogram, compliance per
queue and priority, the breaches open now; then the page's figures one after
another (as on SQLite) and all at once (as the handler runs them on PostgreSQL).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import scratch_database  # noqa: E402, I001
from report_speed import END, generate, migrate  # noqa: E402

from storage.dashboard import (  # noqa: E402
    compliance_by_queue_and_priority,
    current_breaches,
    first_response_histogram,
)
from storage.engine import create_engine  # noqa: E402
from storage.reports import ReportQuery, report  # noqa: E402

START = END - timedelta(days=30)


async def timings(url: str, repeat: int) -> list[str]:
    engine = create_engine(url)
    steps: dict[str, Callable[[], Awaitable[Any]]] = {
        "report per day": lambda: report(engine, ReportQuery(
            start=START, end=END, grouping="day", now=END)),
        "report per queue": lambda: report(engine, ReportQuery(
            start=START, end=END, grouping="queue", now=END)),
        "first-response histogram": lambda: first_response_histogram(
            engine, start=START, end=END, queues=None),
        "compliance queue x priority": lambda: compliance_by_queue_and_priority(
            engine, start=START, end=END, now=END, queues=None),
        "breaches open now (100)": lambda: current_breaches(
            engine, now=END, queues=None, limit=100),
    }
    lines, total = [], 0.0
    try:
        for name, step in steps.items():
            best = float("inf")
            for _ in range(repeat):
                started = time.perf_counter()
                await step()
                best = min(best, time.perf_counter() - started)
            total += best
            lines.append(f"{name:<28} {best * 1000:8.0f} ms")
        lines.append(f"{'the page, one after another':<28} {total * 1000:8.0f} ms")
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            await asyncio.gather(*(step() for step in steps.values()))
            best = min(best, time.perf_counter() - started)
        lines.append(f"{'the page, all at once':<28} {best * 1000:8.0f} ms  (as served on "
                     "PostgreSQL)")
    finally:
        await engine.dispose()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="the best of this many")
    args = parser.parse_args()
    with scratch_database() as dsn:
        url = dsn.replace("postgresql://", "postgresql+asyncpg://")
        asyncio.run(migrate(url))
        seconds = asyncio.run(generate(dsn, args.count))
        print(f"{args.count:,} requests generated in {seconds:.0f} s; the dashboard's "
              f"figures for {START:%Y-%m-%d} to {END:%Y-%m-%d}, best of {args.repeat}:")
        print("\n".join(asyncio.run(timings(url, args.repeat))))


if __name__ == "__main__":
    main()
