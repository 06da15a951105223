"""Mailbox intake: messages per second fetched from Dovecot and committed, against
a bare aioimaplib loop that only downloads them, in one run.

    .venv/bin/python benchmarks/mailbox_fetch.py [--messages N] [--size B] [--rounds R]

Starts a throwaway Dovecot (Debian's dovecot-imapd, through the test suite's
harness tests/dovecot.py: its own config, ports and mail directory on
loopback) and loads N messages of B bytes (default 5,000 of 4 KB) into one
mailbox's INBOX. Then, taking turns, best of R rounds (default 3):

- bare: aioimaplib logs in, selects INBOX, searches the UIDs and downloads
  every message with `UID FETCH n:m (BODY.PEEK[])`, keeping nothing; timed
  with 50, 100, 200 and the fetcher's batch (BATCH_MESSAGES) per FETCH, and the
  fastest is the baseline (aioimaplib's own check for a whole FETCH reply
  grows with the square of its lines; the gateway replaces it with a count);
- gateway: the gateway's MailboxFetcher (gateway/mailbox/fetcher.py) in this
  process, `after = "keep"` (the messages stay for the next round; it marks
  them \\Seen), on a fresh scratch PostgreSQL database (`INTAKE_BENCH_PG`)
  and on a SQLite file. Done is when the last message is committed to the
  inbox with its mailbox record and the folder's position: the point at which
  the gateway would change the mailbox, as SMTP's 250 is for mail sent to it.
  Routing it into requests is the pipeline's work, measured by
  benchmarks/pipeline_cpu.py and end_to_end.py.

Issue 17's target: the gateway at least 0.7 times the bare loop's rate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aioimaplib  # noqa: E402
from common import message, migrate, scratch_database  # noqa: E402

from gateway.config.loader import build_config  # noqa: E402
from gateway.mailbox.fetcher import BATCH_MESSAGES, MailboxFetcher  # noqa: E402
from storage.engine import create_engine  # noqa: E402
from tests.dovecot import Dovecot  # noqa: E402

USER = "bench@example.test"
PASSWORD = "bench password"
BARE_BATCHES = (50, 100, 200, BATCH_MESSAGES)


async def bare(dovecot: Dovecot, expected: int, batch: int) -> float:
    """Seconds for the bare loop to download every message, `batch` per FETCH."""
    started = time.perf_counter()
    client = aioimaplib.IMAP4(host="127.0.0.1", port=dovecot.imap_port, timeout=60)
    await client.wait_hello_from_server()
    await client.login(USER, PASSWORD)
    await client.select("INBOX")
    found = await client.uid_search("ALL", charset=None)
    uids = [int(n) for n in found.lines[0].split()]
    downloaded = 0
    for start in range(0, len(uids), batch):
        part = uids[start:start + batch]
        response = await client.uid("fetch", f"{part[0]}:{part[-1]}", "(BODY.PEEK[])")
        downloaded += sum(1 for line in response.lines if isinstance(line, bytearray))
    await client.logout()
    elapsed = time.perf_counter() - started
    assert downloaded == expected, (downloaded, expected)
    return elapsed


async def gateway(dovecot: Dovecot, url: str, expected: int) -> float:
    """Seconds until the fetcher has committed every message to `url`'s inbox."""
    await migrate(url)
    config = build_config({"mailbox": [{
        "name": "bench", "host": "127.0.0.1", "port": dovecot.imap_port, "tls": "none",
        "user": USER, "password_env": "BENCH_IMAP_PASSWORD", "after": "keep",
        "addresses": ["support@localhost"], "max_per_run": 500}]}, "<bench>", os.environ)
    engine = create_engine(url)
    fetcher = MailboxFetcher(engine=engine, config=config, section=config.mailbox[0])
    started = time.perf_counter()
    task = asyncio.create_task(fetcher.run())
    try:
        while fetcher.stored < expected:
            if task.done():
                task.result()
                raise RuntimeError("the fetcher stopped")
            if time.perf_counter() - started > 300:
                raise RuntimeError(f"only {fetcher.stored} of {expected} stored in 300 s")
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        await engine.dispose()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ["BENCH_IMAP_PASSWORD"] = PASSWORD
    dovecot = Dovecot()
    dovecot.add_user(USER, PASSWORD)
    with dovecot:
        mails = [message(i, args.size) for i in range(args.messages)]
        dovecot.append_many(USER, "INBOX", mails)
        size = sum(map(len, mails)) / len(mails)
        print(f"{args.messages} messages of {size:.0f} bytes in Dovecot's INBOX; "
              f"best of {args.rounds} rounds")
        best: dict[str, float] = {}
        for _ in range(args.rounds):
            # aioimaplib's check for a complete FETCH reply is quadratic in its
            # lines: the bare loop is timed at several batch sizes, its best kept.
            runs = {f"bare, {size} per FETCH": (lambda size=size: bare(dovecot, args.messages,
                                                                     size))
                    for size in BARE_BATCHES}
            with scratch_database() as pg, tempfile.TemporaryDirectory() as folder:
                runs["gateway, PostgreSQL"] = lambda: gateway(
                    dovecot, pg.replace("postgresql://", "postgresql+asyncpg://"),
                    args.messages)
                runs["gateway, SQLite"] = lambda: gateway(
                    dovecot, f"sqlite+aiosqlite:///{folder}/bench.db", args.messages)
                for name, run in runs.items():
                    seconds = asyncio.run(run())
                    best[name] = min(best.get(name, seconds), seconds)
        fastest = min((n for n in best if n.startswith("bare")), key=best.__getitem__)
        baseline = args.messages / best[fastest]
        print(f"baseline: the fastest bare loop ({fastest})")
        for name, seconds in best.items():
            rate = args.messages / seconds
            print(f"{name:<28} {rate:8.0f} messages/s  ({seconds:.2f} s)  "
                  f"{rate / baseline:.2f}x bare")


if __name__ == "__main__":
    main()
