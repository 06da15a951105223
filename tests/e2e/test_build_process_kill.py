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
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.test_kill import (
    KILL_AFTER,
    PER_SENDER,
    SENDERS,
    _burst,
    drained,
    what_was_stored,
)
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
        acked_at_kill = len(acked)
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

        await wait_for(lambda: drained(engine), timeout=60)
    finally:
        server.signal(signal.SIGTERM)
        assert server.wait() == 0, server.log_text()
    assert KILL_AFTER <= acked_at_kill < SENDERS * PER_SENDER  # the kill came mid-burst
    stored, n_items, n_requests, per_request = await what_was_stored(engine)
    assert set(acked) <= set(stored) and len(stored) == len(set(stored))
    assert n_items == n_requests == len(stored)
    assert per_request == {7}  # the whole timeline of a new email, as built here
    # Its death was noticed and said.
    assert re.search(r"the build process (failed|exited)", server.log_text())
