"""SIGKILL `intake serve` in the middle of a burst of SMTP sends.

After a restart, every message that got 250 is stored exactly once, and
nothing is half-stored: every inbox item became one whole request.
"""

from __future__ import annotations

import asyncio
import signal
import smtplib
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.models import events, inbox_items, messages, requests
from tests.helpers import wait_for
from tests.process import ServeProcess, write_config

SENDERS = 16
PER_SENDER = 40
KILL_AFTER = 150  # acknowledged messages before the kill


def _burst(port: int, acked: list[str], enough: threading.Event) -> None:
    def sender(n: int) -> None:
        try:
            client = smtplib.SMTP("127.0.0.1", port, timeout=10)
            client.ehlo()
            for i in range(PER_SENDER):
                mid = f"k{n}-{i}@example.com"
                data = (f"From: s{n}@example.com\r\nTo: support@localhost\r\n"
                        f"Subject: burst {n}-{i}\r\nMessage-ID: <{mid}>\r\n\r\nbody\r\n").encode()
                client.mail(f"s{n}@example.com")
                client.rcpt("support@localhost")
                code, _ = client.data(data)
                if code == 250:
                    acked.append(mid)
                    if len(acked) >= KILL_AFTER:
                        enough.set()
        except (OSError, smtplib.SMTPException):
            return  # the server died under us: expected

    with ThreadPoolExecutor(SENDERS) as pool:
        list(pool.map(sender, range(SENDERS)))


async def drained(engine: AsyncEngine) -> bool:
    """Every inbox item done."""
    async with engine.connect() as conn:
        states = set((await conn.execute(select(inbox_items.c.state))).scalars())
    return states == {"done"}


async def what_was_stored(engine: AsyncEngine) -> tuple[list[str], int, int, set[int]]:
    """The received Message-IDs as stored (one per message row), the counts of
    inbox items and of requests, and the counts of events per request."""
    async with engine.connect() as conn:
        stored = list((await conn.execute(select(messages.c.message_id)
                                          .where(messages.c.direction == "in"))).scalars())
        n_items = (await conn.execute(select(func.count()).select_from(inbox_items))).scalar()
        n_requests = (await conn.execute(select(func.count()).select_from(requests))).scalar()
        per_request = set((await conn.execute(
            select(func.count()).select_from(events).group_by(events.c.request_id))).scalars())
    return stored, int(n_items or 0), int(n_requests or 0), per_request


@pytest.mark.slow
async def test_kill__acknowledged_mail_survives_sigkill(
        db_url: str, engine: AsyncEngine, tmp_path: Path) -> None:
    config = write_config(tmp_path / "intake.toml", db_url)
    # On PostgreSQL two worker processes under the supervisor, whatever the
    # machine's cores: SIGKILL of the supervisor takes them down too.
    args = ("--processes", "2") if db_url.startswith("postgresql") else ()
    server = ServeProcess(config, tmp_path / "serve.log", args=args)
    server.start()
    acked: list[str] = []
    enough = threading.Event()
    try:
        burst = asyncio.create_task(asyncio.to_thread(_burst, server.smtp_port, acked, enough))
        assert await asyncio.to_thread(enough.wait, 60), server.log_text()
        server.kill()  # SIGKILL mid-burst
        await burst
    finally:
        server.kill()
    acknowledged = set(acked)
    assert len(acknowledged) >= KILL_AFTER
    assert len(acknowledged) < SENDERS * PER_SENDER  # the kill really cut the burst short

    restarted = ServeProcess(config, tmp_path / "serve2.log", args=args)
    restarted.start()
    try:
        await wait_for(lambda: drained(engine), timeout=60)
    finally:
        restarted.signal(signal.SIGTERM)
        assert restarted.wait() == 0, restarted.log_text()

    stored, n_items, n_requests, per_request = await what_was_stored(engine)
    assert acknowledged <= set(stored)  # everything that got 250 is there
    assert len(stored) == len(set(stored))  # and only once
    assert n_items == n_requests == len(stored)  # every item became one whole request
    assert per_request == {7}  # the whole timeline of a new email, never part of it
