"""SIGTERM: stop accepting, finish in-flight transactions, drain, exit 0."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.models import inbox_items, requests
from tests.process import ServeProcess, write_config


def _half_transaction(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.recv(1024)
    sock.sendall(b"EHLO t\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<support@localhost>\r\n"
                 b"DATA\r\n")
    received = b""
    while b"354" not in received:
        received += sock.recv(1024)
    return sock


async def test_shutdown__sigterm_finishes_in_flight_work(
        db_url: str, engine: AsyncEngine, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", db_url)
    server = ServeProcess(config, tmp_path / "serve.log")
    server.start()
    try:
        sock = await asyncio.to_thread(_half_transaction, server.smtp_port)
        # The message is mid-DATA when SIGTERM arrives; its last bytes come after.
        sock.sendall(b"Subject: in flight\r\n\r\nfirst half\r\n")
        await asyncio.sleep(0.2)
        server.signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        sock.sendall(b"second half\r\n.\r\n")
        reply = await asyncio.to_thread(sock.recv, 1024)
        sock.close()
        code = await asyncio.to_thread(server.wait, 30)
    finally:
        server.kill()
    assert code == 0, server.log_text()
    # The open transaction was allowed to finish, was stored, and processed before exit.
    assert reply.startswith(b"250 2.0.0 Accepted as"), reply
    async with engine.connect() as conn:
        stored = (await conn.execute(select(inbox_items.c.state))).scalars().all()
        subjects = (await conn.execute(select(requests.c.subject))).scalars().all()
    assert stored == ["done"] and subjects == ["in flight"]
    assert "intake stopped" in server.log_text()
    # After SIGTERM no new connection is accepted.
    try:
        socket.create_connection(("127.0.0.1", server.smtp_port), timeout=1).close()
        refused = False
    except OSError:
        refused = True
    assert refused
