"""Telling every process that a queue has new work (PostgreSQL LISTEN/NOTIFY).

Notifications are sent inside the transaction that makes the work available,
so PostgreSQL delivers them only if it commits. SQLite serves one process:
there the process's own signals are enough, and nothing is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.errors import unavailable

CHANNEL = "intake_work"
# A listening connection is checked this often; a check waits this long.
PING_SECONDS = 15.0
PING_TIMEOUT_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 10.0
RECONNECT_INITIAL_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 10.0
log = logging.getLogger("intake.notify")


async def notify(conn: AsyncConnection, queues: Iterable[str]) -> None:
    if conn.dialect.name != "postgresql":
        return
    for queue in sorted(set(queues)):
        await conn.execute(select(func.pg_notify(CHANNEL, queue)))


async def listen(url: str, on_queue: Callable[[str], None], *,
                 on_alive: Callable[[], None] | None = None,
                 on_fault: Callable[[BaseException], None] | None = None) -> None:
    """Call `on_queue(name)` for every notification, reconnecting until cancelled.

    No failure ends it: whatever goes wrong is logged, told to `on_fault` (as
    StorageUnavailable) and followed by a new connection after a backoff. The
    connection is checked every `PING_SECONDS` (one cut without a reset would
    otherwise never be noticed), and each good check is told to `on_alive`.
    """
    if make_url(url).get_backend_name() != "postgresql":
        return
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    alive = on_alive or (lambda: None)
    delay = RECONNECT_INITIAL_SECONDS
    while True:
        conn: asyncpg.Connection | None = None
        lost = asyncio.Event()
        try:
            conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_SECONDS)
            conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
            await conn.add_listener(CHANNEL,
                                    lambda _c, _pid, _channel, payload: on_queue(payload))
            delay = RECONNECT_INITIAL_SECONDS
            alive()
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), PING_SECONDS)
                if not lost.is_set():
                    await conn.execute("SELECT 1", timeout=PING_TIMEOUT_SECONDS)
                    alive()
            log.warning("lost the notification connection; reconnecting")
        except Exception as exc:  # noqa: BLE001 - never ends the loop: log, back off, again
            log.warning("cannot listen for new work: %s", f"{type(exc).__name__}: {exc}")
            if on_fault is not None:
                on_fault(unavailable(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)
        finally:
            if conn is not None and not conn.is_closed():
                conn.terminate()  # no goodbye on a connection that may be dead
