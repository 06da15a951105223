"""Event fan-out: events per second from a backlog, and transactions spent.

    .venv/bin/python benchmarks/fan_out.py [--events N] [--sqlite]

Fills the outbox of a scratch PostgreSQL database (or a SQLite file) with N
event rows in one transaction, then lets one outbox worker fan them out to one
webhook subscription (the webhook rows are made, not delivered) and prints the
events per second and the commits it took. Fanning out one transaction per
event managed about 410 (PostgreSQL) and 460 (SQLite) events per second on
the same 2-core machine, and 279 in the issue's measurement.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import run_client, scratch_database  # noqa: E402, I001

from sqlalchemy import event, func, select  # noqa: E402

from domain.lifecycle import DeliveryState  # noqa: E402
from gateway.config import build_config  # noqa: E402
from gateway.delivery.worker import OutboxWorker  # noqa: E402
from storage.engine import create_engine  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import outbox  # noqa: E402
from storage.outbox import enqueue  # noqa: E402


async def measure(url: str, events: int) -> str:
    engine = create_engine(url)
    await upgrade(engine)
    async with engine.begin() as conn:
        for i in range(events):
            await enqueue(conn, "event", {"event": "created", "reference": f"B{i}",
                                          "at": "now", "data": {"n": i}})
    config = build_config({"database": {"url": url}, "webhook": [
        {"name": "sink", "url": "https://sink.example.com/hook", "events": ["*"],
         "secret": "s" * 32}]}, "<bench>", {})
    worker = OutboxWorker(engine=engine, config=config)
    commits = 0

    def count(_conn: Any) -> None:
        nonlocal commits
        commits += 1

    event.listen(engine.sync_engine, "commit", count)
    started = time.perf_counter()
    # Fan out only: the webhook rows it makes are counted, not sent.
    while await worker.fan_out_events():
        pass
    seconds = time.perf_counter() - started
    async with engine.connect() as conn:
        made = (await conn.execute(select(func.count()).select_from(outbox).where(
            outbox.c.kind == "webhook", outbox.c.state == DeliveryState.PENDING))).scalar_one()
    await worker.close()
    await engine.dispose()
    return (f"{events} events -> {made} webhook rows in {seconds:.2f} s: "
            f"{events / seconds:,.0f} events/s, {commits} commits")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file instead")
    args = parser.parse_args()
    if args.sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            line = run_client(measure(f"sqlite+aiosqlite:///{tmp}/fan.db", args.events))
            print(f"sqlite:     {line}")
        return
    with scratch_database() as dsn:
        url = dsn.replace("postgresql://", "postgresql+asyncpg://")
        print(f"postgresql: {run_client(measure(url, args.events))}")


if __name__ == "__main__":
    main()
