"""Retention over 1M stored requests on PostgreSQL: rows per second, and intake beside it.

    .venv/bin/python benchmarks/retention.py [--requests 1000000] [--paced-days 104]
                                             [--days 58] [--batch 1000]

On a scratch PostgreSQL database, preloads --requests stored requests in SQL
(benchmarks/growth.py's: each with its inbox item, one message and two
timeline events, finished one every 10 seconds back from now, 1 in 50 still
open), then in one run, with intake (storage.inbox.accept_many from 4 tasks,
10 items a commit) measured alone and beside each retention run, in the same
process and event loop, as `intake serve` runs its scheduler:

  intake alone    for --seconds
  paced           a pass as the scheduler runs it (gateway/pipeline/retention.py:
                  a tick every 5 s, retention working at most 1 s of it),
                  deleting the requests finished more than --paced-days ago
  unpaced         one whole pass without pauses (as `intake retention` runs it),
                  deleting those finished more than --days ago

Deleting a request deletes its message, events and inbox item with it, --batch
requests a transaction. Prints requests deleted per second and the intake rate
during each as a ratio to intake alone.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import timedelta
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import migrate, scratch_database  # noqa: E402, I001
from growth import preload  # noqa: E402

from domain.retention import Policy  # noqa: E402
from gateway.pipeline.retention import SHARE_OF_TICK, Retention  # noqa: E402
from storage.engine import create_engine, utcnow  # noqa: E402
from storage.inbox import NewItem, accept_many  # noqa: E402
from storage.retention import run_pass  # noqa: E402

BODY = b'{"subject": "Invoice export fails", "body": "' + b"Lorem ipsum " * 60 + b'"}'
WRITERS, PER_COMMIT = 4, 10


async def intake(url: str, stop: asyncio.Event) -> tuple[int, float]:
    """Items accepted until `stop`, and the seconds it ran."""
    engine = create_engine(url, pool_size=WRITERS + 1)
    accepted = 0

    async def writer() -> None:
        nonlocal accepted
        while not stop.is_set():
            await accept_many(engine, [NewItem("api", BODY, {"bench": True})] * PER_COMMIT)
            accepted += PER_COMMIT

    started = time.perf_counter()
    try:
        await asyncio.gather(*(writer() for _ in range(WRITERS)))
    finally:
        await engine.dispose()
    return accepted, time.perf_counter() - started


async def alone(url: str, seconds: float) -> float:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    accepted, took = await intake(url, stop)
    return accepted / took


TICK = 5.0  # [pipeline] scheduler_seconds' default


async def beside_retention(url: str, days: int, batch: int,
                           paced: bool) -> tuple[int, float, float]:
    """Requests deleted, their rate, and the intake rate meanwhile."""
    engine = create_engine(url, pool_size=2)
    stop = asyncio.Event()
    running = asyncio.create_task(intake(url, stop))
    await asyncio.sleep(1.0)  # intake at its pace first
    policies = [Policy(delete_after_days=days)]
    try:
        started = time.perf_counter()
        if paced:
            retention = Retention(engine=engine, policies=policies, interval=timedelta(days=1),
                                  batch_size=batch, tick_seconds=TICK * SHARE_OF_TICK)
            deleted = 0
            while retention.passes == 0:
                tick = time.perf_counter()
                deleted += await retention.step(utcnow())
                if retention.passes == 0:
                    await asyncio.sleep(max(0.0, TICK - (time.perf_counter() - tick)))
        else:
            stages = await run_pass(engine, policies, utcnow(), batch=batch)
            deleted = sum(stage.done for stage in stages)
        took = time.perf_counter() - started
    finally:
        stop.set()
        await engine.dispose()
    accepted, intake_took = await running
    return deleted, deleted / took, accepted / intake_took


async def stored_requests(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM requests"))
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--paced-days", type=int, default=104,
                        help="the paced pass deletes requests finished longer ago (one a 10 s: "
                             "of 1M, the oldest tenth)")
    parser.add_argument("--days", type=int, default=58,
                        help="the unpaced pass deletes requests finished longer ago (of 1M, "
                             "about half in all)")
    parser.add_argument("--batch", type=int, default=1000, help="requests a transaction")
    parser.add_argument("--seconds", type=float, default=20.0, help="intake alone, this long")
    args = parser.parse_args()
    with scratch_database() as dsn:
        url = dsn.replace("postgresql://", "postgresql+asyncpg://")
        asyncio.run(migrate(url))
        took = asyncio.run(preload(dsn, args.requests, 50))
        stored = asyncio.run(stored_requests(dsn))
        print(f"preloaded {stored:,} requests in {took:.0f} s")
        rate_alone = asyncio.run(alone(url, args.seconds))
        print(f"intake alone: {rate_alone:,.0f} items/s")
        for name, days, paced in (("paced", args.paced_days, True),
                                  ("unpaced", args.days, False)):
            deleted, per_second, rate_during = asyncio.run(
                beside_retention(url, days, args.batch, paced))
            left = asyncio.run(stored_requests(dsn))
            print(f"{name}: {deleted:,} requests deleted (finished over {days} days ago) at "
                  f"{per_second:,.0f} requests/s ({left:,} left); intake meanwhile "
                  f"{rate_during:,.0f} items/s, ratio {rate_during / rate_alone:.2f}")


if __name__ == "__main__":
    main()
