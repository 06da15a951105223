"""Telling every process that a queue has new work (PostgreSQL LISTEN/NOTIFY).

Notifications are sent inside the transaction that makes the work available,
so PostgreSQL delivers them only if it commits. SQLite serves one process:
there the process's own signals are enough, and nothing is sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

CHANNEL = "intake_work"
log = logging.getLogger("intake.notify")


async def notify(conn: AsyncConnection, queues: Iterable[str]) -> None:
    if conn.dialect.name != "postgresql":
        return
    for queue in sorted(set(queues)):
        await conn.execute(select(func.pg_notify(CHANNEL, queue)))


async def listen(url: str, on_queue: Callable[[str], None]) -> None:
    """Call `on_queue(name)` for every notification, reconnecting until cancelled."""
    if make_url(url).get_backend_name() != "postgresql":
        return
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    delay = 0.5
    while True:
        try:
            conn = await asyncpg.connect(dsn, timeout=10)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("cannot listen for new work: %s", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)
            continue
        delay = 0.5
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
        await conn.add_listener(CHANNEL, lambda _c, _pid, _channel, payload: on_queue(payload))
        try:
            await lost.wait()
            log.warning("lost the notification connection; reconnecting")
        finally:
            if not conn.is_closed():
                await conn.close()
