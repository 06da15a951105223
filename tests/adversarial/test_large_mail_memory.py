"""Threat: large mail exhausts memory and stalls the event loop.

16 concurrent 25 MB mails pushed the gateway from 191 MiB to 1.6 GiB and
stalled its event loop for 2.3 s: the pipeline claimed them in one batch (by
count only) and parsed them on the event loop, a few times each mail's size
at once. Now a claim is bounded by bytes too (`pipeline.batch_bytes`; a
larger item is claimed alone), large mail is parsed in a child process
(`pipeline.parse_offload_bytes`, `pipeline.parse_processes`), and the group
commit is bounded by bytes, with large items committed beside it: what the
pipeline holds depends on the configuration, not on what arrives.

The test runs `intake serve` as a process, lets 20 committed 25 MB mails
come due at once, and prints the process's peak RSS (VmHWM) while its two
workers process them; it asserts a generous bound worked out from the
configuration. (benchmarks/large_mail_memory.py measures the whole path,
SMTP included, with the event loop's stalls.)
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.lifecycle import ItemState
from storage.engine import utcnow
from storage.inbox import NewItem, accept_many
from storage.models import inbox_items
from storage.processing import claim_items
from tests.helpers import count_rows, wait_for
from tests.process import ServeProcess, write_config

MIB = 1024 * 1024
MAILS = 20
MAIL_MIB = 25
WORKERS = 2
BATCH_BYTES = 16 * MIB  # the default of pipeline.batch_bytes
# What one worker may hold per byte of the batch it works on: the raw mail, the
# parsed result (an attachment decoded, the text), the rows sent to the driver.
# Measured up to 5.7 (SQLite, which rewrites a row whole on each UPDATE), 3.2 on
# PostgreSQL; the rest is slack for the allocator and a busy machine.
HELD_PER_BYTE = 10
PARSE_MARGIN = 64 * MIB  # the parsing pipes' buffers, unpickling


def _mails(count: int, mib: int) -> list[bytes]:
    """Distinct mails of about `mib` MiB: one shared base64 attachment each."""
    encoded = base64.encodebytes(os.urandom(int(mib * MIB * 57 / 78))).replace(b"\n", b"\r\n")
    return [(f"From: Big {n} <big{n}@example.com>\r\nTo: support@localhost\r\n"
             f"Subject: large mail {n}\r\nMessage-ID: <large-{n}@example.com>\r\n"
             "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
             "--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--b\r\n"
             "Content-Type: application/octet-stream\r\n"
             "Content-Transfer-Encoding: base64\r\n\r\n").encode()
            + encoded + b"--b--\r\n" for n in range(count)]


def _status(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values


async def test_claim_items__bounded_by_bytes_a_larger_item_alone(engine: AsyncEngine) -> None:
    sizes = [10, 3 * MIB, 20 * MIB, 100, 200, 6 * MIB, 6 * MIB]
    await accept_many(engine, [NewItem("smtp", b"x" * size) for size in sizes])
    claimed = []
    while items := await claim_items(engine, limit=128, lease_seconds=60,
                                     max_bytes=8 * MIB):
        claimed.append([len(item.raw) for item in items])
    assert claimed == [[10, 3 * MIB], [20 * MIB], [100, 200, 6 * MIB], [6 * MIB]]


@pytest.mark.parametrize("parse_processes", [1])
async def test_pipeline__memory_bounded_by_configuration_not_input(
        db_url: str, engine: AsyncEngine, tmp_path: Path, parse_processes: int) -> None:
    for mail in _mails(MAILS, MAIL_MIB):  # one at a time: this process stays small too
        await accept_many(engine, [NewItem("smtp", mail)])
    async with engine.begin() as conn:  # due once the server is up and measured
        await conn.execute(update(inbox_items).values(
            next_attempt_at=utcnow() + timedelta(minutes=10)))
    # write_config's [pipeline] has workers = 2 (WORKERS) and a 5 s lease.
    config = write_config(tmp_path / "intake.toml", db_url, batch_bytes=str(BATCH_BYTES),
                          parse_processes=str(parse_processes), max_attempts="1")
    # One process: its pid is the one whose memory is measured (no supervisor).
    server = ServeProcess(config, tmp_path / "serve.log", args=("--processes", "1"))
    server.start()
    try:
        assert server.proc is not None
        pid = server.proc.pid
        await asyncio.sleep(1.0)  # started: the rules and language model are loaded
        before = _status(pid)["VmRSS"]
        async with engine.begin() as conn:  # due now, all at once
            await conn.execute(update(inbox_items).values(next_attempt_at=utcnow()))
        started = time.monotonic()

        async def processed() -> bool:
            return await count_rows(engine, inbox_items,
                                    inbox_items.c.state == ItemState.DONE) == MAILS

        await wait_for(processed, timeout=240, interval=0.5)
        peak = _status(pid)["VmHWM"]
    finally:
        server.signal(15)
        server.wait()
    growth = peak - before
    largest = MAIL_MIB * MIB
    bound = WORKERS * max(BATCH_BYTES, largest) * HELD_PER_BYTE + PARSE_MARGIN
    print(f"\n{MAILS} mails of {MAIL_MIB} MiB, {WORKERS} workers: RSS before "
          f"{before / MIB:.0f} MiB, peak {peak / MIB:.0f} MiB, growth {growth / MIB:.0f} MiB "
          f"(bound {bound / MIB:.0f} MiB), processed in {time.monotonic() - started:.1f} s")
    assert growth < bound, server.log_text()[-3000:]
    assert await count_rows(engine, inbox_items, inbox_items.c.state == ItemState.DEAD) == 0
