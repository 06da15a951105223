"""An agent waiting on one `intake serve` is woken by mail arriving at another
process on the same PostgreSQL database (LISTEN/NOTIFY), within a second."""

from __future__ import annotations

import asyncio
import json
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.process import ServeProcess, write_config


@pytest.mark.slow
async def test_wake__mail_at_another_process_wakes_waiting_agent(
        pg_url: str, tmp_path: Path) -> None:
    # PostgreSQL only: the embedded SQLite database serves a single process.
    config = write_config(tmp_path / "intake.toml", pg_url)
    created = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "gateway.cli", "--config", str(config), "tokens",
                         "create", "--role", "agent"], capture_output=True, text=True, check=True)
    token = created.stdout.strip().splitlines()[-1]
    waiting = ServeProcess(config, tmp_path / "a.log")
    receiving = ServeProcess(config, tmp_path / "b.log")
    waiting.start()
    receiving.start()
    try:
        async with aiohttp.ClientSession() as http:
            async def wait_for_work() -> tuple[list[dict[str, object]], float]:
                async with http.post(
                        f"http://127.0.0.1:{waiting.http_port}/v1/queues/general/claim",
                        json={"wait": 30, "limit": 1},
                        headers={"Authorization": f"Bearer {token}"}) as resp:
                    body = json.loads(await resp.text())
                return body["items"], time.monotonic()

            waiter = asyncio.create_task(wait_for_work())
            await asyncio.sleep(1.0)
            assert not waiter.done()

            def send() -> str:
                with smtplib.SMTP("127.0.0.1", receiving.smtp_port, timeout=10) as client:
                    client.ehlo()
                    client.mail("far@example.com")
                    client.rcpt("support@localhost")
                    data = (b"From: far@example.com\r\nTo: support@localhost\r\n"
                            b"Subject: over there\r\nMessage-ID: <far@example.com>\r\n\r\nhi\r\n")
                    return client.data(data)[1].split()[-1].decode()

            sent_at = time.monotonic()
            ref = await asyncio.to_thread(send)
            items, woken_at = await asyncio.wait_for(waiter, 10)
    finally:
        for server in (waiting, receiving):
            server.signal(signal.SIGTERM)
            server.wait()
    assert [i["reference"] for i in items] == [ref]
    assert woken_at - sent_at < 1.0, woken_at - sent_at
