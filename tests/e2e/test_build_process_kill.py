"""SIGKILL the build process of a running `intake serve` in the middle of a
burst: the gateway builds in its own process meanwhile, starts the child
again, and every acknowledged message is stored once, whole."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import smtplib
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.models import events, inbox_items, messages, requests
from tests.e2e.test_kill import KILL_AFTER, PER_SENDER, SENDERS, _burst
from tests.helpers import wait_for
from tests.process import ServeProcess, write_config

READY = re.compile(r"build process ready: pid (\d+)")


def _send(port: int, message_id: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("late@example.com", ["support@localhost"],
                        (f"From: late@example.com\r\nTo: support@localhost\r\n"
                         f"Subject: after\r\nMessage-ID: <{message_id}>\r\n\r\nbody\r\n"))


@pytest.mark.slow
async def test_build_process__killed_under_load_loses_nothing(
        db_url: str, engine: AsyncEngine, tmp_path: Path) -> None:
    config = write_config(tmp_path / "intake.toml", db_url, build_process="true")
    server = ServeProcess(config, tmp_path / "serve.log", args=("--processes", "1"))
    server.start()
    acked: list[str] = []
    enough = threading.Event()
    try:
        def started() -> list[str]:
            return READY.findall(server.log_text())

        async def ready_once() -> list[str]:
            return started()

        [child] = await wait_for(ready_once, timeout=60)
        burst = asyncio.create_task(asyncio.to_thread(_burst, server.smtp_port, acked, enough))
        assert await asyncio.to_thread(enough.wait, 60), server.log_text()
        os.kill(int(child), signal.SIGKILL)  # mid-burst
        await burst
        assert len(set(acked)) == SENDERS * PER_SENDER  # the gateway went on

        # The next batch after the pause (1 s) starts it again.
        await asyncio.sleep(1.5)
        await asyncio.to_thread(_send, server.smtp_port, "after@example.com")
        acked.append("after@example.com")

        async def ready_again() -> bool:
            return len(started()) >= 2

        await wait_for(ready_again, timeout=60)

        async def drained() -> bool:
            async with engine.connect() as conn:
                states = set((await conn.execute(select(inbox_items.c.state))).scalars())
            return states == {"done"}

        await wait_for(drained, timeout=60)
    finally:
        server.signal(signal.SIGTERM)
        assert server.wait() == 0, server.log_text()
    assert SENDERS * PER_SENDER > KILL_AFTER  # the kill came mid-burst
    async with engine.connect() as conn:
        stored = list((await conn.execute(select(messages.c.message_id)
                                          .where(messages.c.direction == "in"))).scalars())
        n_items = (await conn.execute(select(func.count()).select_from(inbox_items))).scalar()
        n_requests = (await conn.execute(select(func.count()).select_from(requests))).scalar()
        per_request = set((await conn.execute(
            select(func.count()).select_from(events).group_by(events.c.request_id))).scalars())
    assert set(acked) <= set(stored) and len(stored) == len(set(stored))
    assert n_items == n_requests == len(stored)
    assert per_request == {7}  # the whole timeline of a new email, as built here
    # Its death was noticed and said.
    assert re.search(r"the build process (failed|exited)", server.log_text())
