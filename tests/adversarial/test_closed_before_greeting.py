"""Clients that connect and close at once (TCP health checks, port scanners)
leave nothing counted behind: under `intake serve`'s event loop (uvloop when
installed) such a session used to stay open until the idle timeout, holding
one of its address's `max_connections_per_client` slots."""

from __future__ import annotations

import smtplib
import socket
from pathlib import Path

from tests.helpers import wait_for
from tests.process import ServeProcess, write_config

PER_CLIENT = 3


def noop(port: int) -> bool:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            return client.noop()[0] == 250
    except (OSError, smtplib.SMTPException):
        return False


async def test_sessions_closed_before_the_greeting_free_their_slot(
        db_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "intake.toml", db_url)
    with config.open("a") as out:
        out.write(f"[smtp]\nmax_connections_per_client = {PER_CLIENT}\n"
                  "timeout_seconds = 300\n[process]\ncount = 1\n")
    server = ServeProcess(config, tmp_path / "serve.log")
    server.start()  # its own start-up check is one such connection
    try:
        for _ in range(PER_CLIENT * 3):
            socket.create_connection(("127.0.0.1", server.smtp_port), timeout=5).close()

        async def admitted() -> bool:
            return noop(server.smtp_port)

        # Well before the 300 s idle timeout, which used to free the slots.
        await wait_for(admitted, timeout=10, interval=0.2)
    finally:
        server.kill()
