"""Outbox delivery: rows per second to a local SMTP sink and a local HTTP
receiver, and the delay from commit to delivery.

    .venv/bin/python benchmarks/outbox.py [--rows N] [--rate R]

On a scratch PostgreSQL database, the gateway's outbox worker (4 tasks in this
process, as `intake serve` runs them) delivers (1) a backlog of N mails to a
bare aiosmtpd sink and N webhooks to a bare aiohttp receiver, each in its own
process: rows per second; then (2) rows committed at a steady R per second
while the workers run: the delay from commit to delivery, p50 and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import free_port, python, run_client, scratch_database, server_process  # noqa: E402, I001

from gateway.config import build_config  # noqa: E402
from gateway.delivery.worker import OutboxWorker  # noqa: E402
from storage.engine import as_utc, create_engine  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.outbox import enqueue, rows_for  # noqa: E402

WORKERS = 4


def mail(i: int) -> dict[str, Any]:
    return {"purpose": "benchmark", "message": {
        "subject": f"[#BENCH-{i}] Re: your request", "text": "We have your request.\n" * 10,
        "from_address": "support@localhost", "from_name": "Support",
        "to": [{"name": "Customer", "address": f"c{i}@example.com"}], "cc": [],
        "message_id": f"bench-{i}@localhost", "in_reply_to": f"c{i}@example.com",
        "references": [f"c{i}@example.com"], "auto_submitted": "auto-replied"}}


def hook(i: int) -> dict[str, Any]:
    return {"target": "sink", "event": "created", "delivery_id": f"bench-{i}",
            "body": {"event": "created", "reference": f"BENCH-{i}", "data": {"n": i}}}


async def fill(engine: Any, kind: str, count: int, start: int = 0) -> None:
    async with engine.begin() as conn:
        for i in range(start, start + count):
            await enqueue(conn, kind, mail(i) if kind == "email" else hook(i))


async def drain(worker: OutboxWorker, engine: Any, kind: str, count: int) -> float:
    await fill(engine, kind, count)
    tasks = [asyncio.create_task(worker.run()) for _ in range(WORKERS)]
    started = time.perf_counter()
    while sum(1 for r in await rows_for(engine) if r["kind"] == kind
              and r["state"] == "done") < count:
        await asyncio.sleep(0.05)
    seconds = time.perf_counter() - started
    worker.stop()
    await asyncio.gather(*tasks, return_exceptions=True)
    await worker.close()
    return count / seconds


async def paced(worker: OutboxWorker, engine: Any, count: int, rate: float) -> list[float]:
    """Commit one mail row at a time at `rate`/s; the delay of each to delivery."""
    tasks = [asyncio.create_task(worker.run()) for _ in range(WORKERS)]
    for i in range(count):
        await fill(engine, "email", 1, start=100_000 + i)
        worker.wake()  # as the pipeline does after each commit
        await asyncio.sleep(1 / rate)
    while any(r["state"] != "done" for r in await rows_for(engine)
              if r["kind"] == "email" and r["payload"]["message"]["message_id"]
              .startswith("bench-1")):
        await asyncio.sleep(0.05)
    worker.stop()
    await asyncio.gather(*tasks, return_exceptions=True)
    await worker.close()
    rows = [r for r in await rows_for(engine) if r["kind"] == "email"
            and int(r["payload"]["message"]["message_id"][6:].split("@")[0]) >= 100_000]
    return [((as_utc(r["delivered_at"]) - as_utc(r["created_at"])).total_seconds()) * 1000
            for r in rows]


async def main_async(args: argparse.Namespace, dsn: str, smtp_port: int,
                     http_port: int) -> None:
    url = dsn.replace("postgresql://", "postgresql+asyncpg://")
    engine = create_engine(url, pool_size=WORKERS + 2)
    await upgrade(engine)
    config = build_config({
        "database": {"url": url},
        "pipeline": {"poll_seconds": 1.0},
        "outbound": {"relay": f"127.0.0.1:{smtp_port}", "workers": WORKERS},
        "webhook": [{"name": "sink", "url": f"http://127.0.0.1:{http_port}/v1/requests",
                     "events": ["*"], "secret": "bench", "allow_private": True}],
    }, "<benchmark>", {})
    mail_rate = await drain(OutboxWorker(engine=engine, config=config), engine, "email",
                            args.rows)
    hook_rate = await drain(OutboxWorker(engine=engine, config=config), engine, "webhook",
                            args.rows)
    delays = sorted(await paced(OutboxWorker(engine=engine, config=config), engine,
                                args.paced, args.rate))
    await engine.dispose()
    p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
    print(f"Outbox delivery on PostgreSQL, {WORKERS} worker tasks in one process")
    print(f"  mail to a bare aiosmtpd sink       {mail_rate:7.0f} rows/s  ({args.rows} rows)")
    print(f"  webhooks to a bare aiohttp receiver {hook_rate:6.0f} rows/s  ({args.rows} rows)")
    print(f"  commit to delivery at {args.rate:.0f} mails/s: p50 {statistics.median(delays):.1f} ms"
          f"  p99 {p99:.1f} ms  ({len(delays)} rows)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--paced", type=int, default=300)
    parser.add_argument("--rate", type=float, default=100.0)
    args = parser.parse_args()
    smtp_port, http_port = free_port(), free_port()
    with scratch_database() as dsn, \
            server_process([python(), "benchmarks/bare_servers.py", "smtp", str(smtp_port)],
                           smtp_port), \
            server_process([python(), "benchmarks/bare_servers.py", "http", str(http_port)],
                           http_port):
        run_client(main_async(args, dsn, smtp_port, http_port))


if __name__ == "__main__":
    main()
