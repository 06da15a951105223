"""A large erasure killed (SIGKILL) half-way by the command line, then run again:
it resumes from its last committed step and finishes, with no trace left and
every count whole (PostgreSQL: the multi-process engine)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.pipeline.worker import Pipeline
from storage.engine import create_engine
from storage.inbox import NewItem, accept_many
from storage.models import erasures, messages, requests
from tests.helpers import count_rows, make_config
from tests.integration.test_erasure import MARKER, NAME, OLAF, ZELDA, mail, scan
from tests.process import write_config

MAILS = 1200
BATCH = 200


def _intake(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config", str(config),
                             *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


async def _seed(url: str) -> None:
    engine = create_engine(url)
    pipe = Pipeline(engine=engine, config=make_config(url))
    try:
        olaf = ("Olaf Other", OLAF)
        await accept_many(engine, [NewItem("smtp", mail(olaf, "VPN down", "Down for all.",
                                                        "<o1@other.example>",
                                                        cc=[(NAME, ZELDA)]),
                                           {"mail_from": OLAF})])
        for start in range(0, MAILS, BATCH):
            await accept_many(engine, [NewItem("smtp", mail(
                (NAME, ZELDA), f"Case {n}", f"Number {n} {MARKER}", f"<z{n}@erase.example>",
                in_reply_to="<o1@other.example>" if n % 100 == 0 else None,
                attachment=f"file {n} {MARKER}".encode() if n % 10 == 0 else None),
                {"mail_from": ZELDA}) for n in range(start, start + BATCH)])
            await pipe.drain()
    finally:
        await engine.dispose()


async def _row(url: str) -> dict[str, object]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(select(erasures))).first()
        return {} if row is None else dict(row._mapping)
    finally:
        await engine.dispose()


@pytest.mark.slow
async def test_erasure__killed_midway_resumes_and_completes(pg_url: str, tmp_path: Path
                                                           ) -> None:
    await _seed(pg_url)
    config = write_config(tmp_path / "intake.toml", pg_url)
    # Without --yes and without a terminal to ask on, nothing is started.
    unconfirmed = _intake(config, "erase", "--requester", ZELDA)
    output, _ = unconfirmed.communicate(input=None, timeout=60)
    assert unconfirmed.returncode == 1 and "--yes" in output
    assert await _row(pg_url) == {}
    first = _intake(config, "erase", "--requester", ZELDA, "--yes")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            row = await _row(pg_url)
            counts = row.get("counts") or {}
            assert isinstance(counts, dict)
            if row.get("state") == "done":
                pytest.fail("the erasure finished before it could be killed")
            if counts.get("requests_deleted", 0) > 0:
                break
            await asyncio.sleep(0.01)
        os.kill(first.pid, signal.SIGKILL)
    finally:
        first.wait(timeout=10)
        if first.stdout is not None:
            first.stdout.close()
    killed = await _row(pg_url)
    assert killed["state"] == "running" and killed["terms"] is not None
    assert 0 < killed["counts"]["requests_deleted"] < MAILS  # type: ignore[index]

    # Again: it waits out the dead process's lease, then finishes the same task.
    second = _intake(config, "erase", "--requester", ZELDA, "--yes")
    output, _ = second.communicate(timeout=120)
    assert second.returncode == 0, output
    assert f"erasure {killed['id']} resumed" in output
    done = await _row(pg_url)
    assert done["state"] == "done" and done["terms"] is None
    counts = done["counts"]
    assert isinstance(counts, dict)
    # Every request once: none counted twice, none missed, across the crash.
    assert counts["requests_deleted"] == MAILS - MAILS // 100
    assert counts.get("requests_anonymised", 0) == 0
    assert counts["messages_erased"] == MAILS // 100  # her replies on Olaf's request
    engine = create_engine(pg_url)
    try:
        assert await scan(engine) == set()
        assert await count_rows(engine, requests) == 1  # Olaf's
        assert await count_rows(engine, messages, messages.c.from_address == OLAF) == 1
    finally:
        await engine.dispose()
