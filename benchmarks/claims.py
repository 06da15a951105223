"""Claims per second: the gateway's claim against bare SKIP LOCKED transactions.

    .venv/bin/python benchmarks/claims.py [--requests N] [--agents M]

On a scratch PostgreSQL database with N open requests in one queue, M agents
claim one request at a time until the queue is empty, (1) through
`storage.claims.claim` (one UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP
LOCKED) RETURNING, plus the `claimed` event on the timeline, in one
transaction) and (2) as bare asyncpg transactions: SELECT ... FOR UPDATE SKIP
LOCKED, then UPDATE, then COMMIT. Prints both rates and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import run_client, scratch_database  # noqa: E402, I001

from storage import claims  # noqa: E402
from storage.engine import create_engine  # noqa: E402
from storage.inbox import NewItem, accept_many  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.processing import claim_items  # noqa: E402
from storage.records import NewMessage, NewRequest  # noqa: E402
from storage.store import complete_items  # noqa: E402

BARE_CLAIM = """
SELECT id FROM requests
WHERE queue = 'general' AND status IN ('new', 'open', 'reopened')
  AND (claimed_by IS NULL OR claim_until < now())
ORDER BY coalesce(priority, 'P9'), id
LIMIT 1 FOR UPDATE SKIP LOCKED
"""


async def fill(url: str, count: int) -> None:
    engine = create_engine(url)
    await upgrade(engine)
    for start in range(0, count, 1000):
        n = min(1000, count - start)
        await accept_many(engine, [NewItem("api", b"{}") for _ in range(n)])
        items = await claim_items(engine, limit=n, lease_seconds=60)
        await complete_items(engine, [(item, NewRequest(
            queue="general", message=NewMessage(subject="bench", text="", new_text="",
                                                from_address=None, from_name=None),
            requester_email=None, requester_name=None)) for item in items])
    await engine.dispose()


async def gateway_claims(url: str, agents: int) -> tuple[int, float]:
    engine = create_engine(url, pool_size=agents)
    claimed = 0

    async def agent(n: int) -> None:
        nonlocal claimed
        while await claims.claim(engine, "general", f"agent-{n}", limit=1, lease_seconds=300):
            claimed += 1

    started = time.perf_counter()
    await asyncio.gather(*(agent(n) for n in range(agents)))
    seconds = time.perf_counter() - started
    await engine.dispose()
    return claimed, seconds


async def bare_claims(dsn: str, agents: int) -> tuple[int, float]:
    pool = await asyncpg.create_pool(dsn, min_size=agents, max_size=agents)
    await pool.execute("UPDATE requests SET claimed_by = NULL, claim_until = NULL")
    claimed = 0

    async def agent(n: int) -> None:
        nonlocal claimed
        async with pool.acquire() as conn:
            while True:
                async with conn.transaction():
                    row = await conn.fetchrow(BARE_CLAIM)
                    if row is None:
                        return
                    await conn.execute(
                        "UPDATE requests SET claimed_by = $1, "
                        "claim_until = now() + interval '300 seconds' WHERE id = $2",
                        f"bare-{n}", row["id"])
                claimed += 1

    started = time.perf_counter()
    await asyncio.gather(*(agent(n) for n in range(agents)))
    seconds = time.perf_counter() - started
    await pool.close()
    return claimed, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--agents", type=int, default=8)
    args = parser.parse_args()
    with scratch_database() as dsn:
        url = dsn.replace("postgresql://", "postgresql+asyncpg://")
        run_client(fill(url, args.requests))
        ours, our_seconds = run_client(gateway_claims(url, args.agents))
        bare, bare_seconds = run_client(bare_claims(dsn, args.agents))
    our_rate, bare_rate = ours / our_seconds, bare / bare_seconds
    print(f"Claims on PostgreSQL: {args.requests} open requests, {args.agents} agents, "
          "one request per claim")
    print(f"  bare asyncpg SELECT ... FOR UPDATE SKIP LOCKED + UPDATE  {bare_rate:8.0f} /s  "
          f"({bare} in {bare_seconds:.2f} s)")
    print(f"  intake storage.claims.claim (+ timeline event)          {our_rate:8.0f} /s  "
          f"({ours} in {our_seconds:.2f} s)")
    print(f"  ratio: {our_rate / bare_rate:.2f} of the bare claim transaction")


if __name__ == "__main__":
    main()
