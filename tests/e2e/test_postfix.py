"""A real Postfix in front of the gateway, set up by the README's recipe.

Postfix relays our domains to the LMTP listener with the tables `intake
postfix-maps` writes: mail in via Postfix -> LMTP -> request; an unknown
address refused at RCPT by Postfix itself (no bounce, nothing queued); the
gateway down -> Postfix defers the mail and delivers it once the gateway is
back and the queue is flushed.
"""

from __future__ import annotations

import asyncio
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import queries
from tests.helpers import wait_for
from tests.postfix import Postfix, require_postfix
from tests.process import ServeProcess, free_port


def _gateway_config(path: Path, db_url: str, lmtp_port: int) -> Path:
    path.write_text("\n".join([
        "[intake]", 'addresses = ["support@example.test", "billing@example.test"]',
        "[database]", f'url = "{db_url}"',
        "[smtp]", f'lmtp_listen = "127.0.0.1:{lmtp_port}"',
        "[pipeline]", "workers = 1", "poll_seconds = 0.2",
    ]) + "\n")
    return path


def _maps(config: Path, directory: Path) -> str:
    """`intake postfix-maps --output DIR`, as the README says: the main.cf lines."""
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "postfix-maps",
                             "--config", str(config), "--output", str(directory)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _mail(message_id: str, to: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = "Carol Customer <carol@example.org>"
    mail["To"] = to
    mail["Subject"] = "The printer is on fire"
    mail["Message-ID"] = message_id
    mail.set_content("Please send help.\n")
    return mail


def _send(port: int, to: str, message_id: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.send_message(_mail(message_id, to), to_addrs=[to])


def _wait_listening(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture
def postfix() -> Iterator[Postfix]:
    require_postfix()
    instance = Postfix(free_port())
    try:
        yield instance
    finally:
        instance.stop()


async def _found(engine: AsyncEngine, message_id: str) -> list[dict[str, object]]:
    return await queries.find_by_message_id(engine, message_id)


async def test_postfix__in_front_of_the_lmtp_listener(
        db_url: str, engine: AsyncEngine, tmp_path: Path, postfix: Postfix) -> None:
    lmtp_port = free_port()
    config = _gateway_config(tmp_path / "intake.toml", db_url, lmtp_port)
    main_cf = _maps(config, tmp_path / "maps")
    assert f"transport_maps = texthash:{tmp_path / 'maps' / 'transport'}" in main_cf
    await asyncio.to_thread(postfix.start, main_cf)
    server = ServeProcess(config, tmp_path / "serve.log")
    await asyncio.to_thread(server.start)
    try:
        await asyncio.to_thread(_wait_listening, lmtp_port)

        # Mail in via Postfix -> LMTP -> a request, on the lmtp channel.
        await asyncio.to_thread(_send, postfix.smtp_port, "billing@example.test",
                                "<via-postfix@example.org>")
        found = await wait_for(lambda: _found(engine, "<via-postfix@example.org>"),
                               timeout=30)
        request = await queries.get_request(engine, str(found[0]["reference"]))
        assert request is not None and request["channel"] == "lmtp"

        # An unknown address: Postfix refuses it at RCPT; nothing queued, no bounce.
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            await asyncio.to_thread(_send, postfix.smtp_port, "nobody@example.test",
                                    "<unknown@example.org>")
        code, text = refused.value.recipients["nobody@example.test"]
        assert code == 550 and b"relay recipient table" in text, text
        assert "Mail queue is empty" in await asyncio.to_thread(postfix.queue)

        # The gateway down: Postfix takes the mail and defers it.
        server.signal(signal.SIGTERM)
        assert await asyncio.to_thread(server.wait) == 0
        await asyncio.to_thread(_send, postfix.smtp_port, "support@example.test",
                                "<while-down@example.org>")
        deferred = await wait_for(
            lambda: _queue_says(postfix, "Connection refused"), timeout=30)
        assert "support@example.test" in deferred
        assert await _found(engine, "<while-down@example.org>") == []

        # Back up: a flush delivers it, and the queue empties.
        server = ServeProcess(config, tmp_path / "serve-again.log")
        await asyncio.to_thread(server.start)
        await asyncio.to_thread(_wait_listening, lmtp_port)
        await asyncio.to_thread(postfix.flush)
        await wait_for(lambda: _found(engine, "<while-down@example.org>"), timeout=30)
        await wait_for(lambda: _queue_says(postfix, "Mail queue is empty"), timeout=30)
    except BaseException:
        print(postfix.log_text(), server.log_text(), sep="\n")
        raise
    finally:
        server.kill()


async def _queue_says(postfix: Postfix, text: str) -> str | None:
    queue = await asyncio.to_thread(postfix.queue)
    return queue if text in queue else None
