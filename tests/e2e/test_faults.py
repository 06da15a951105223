"""With the database unreachable, intake answers "try later" and stores nothing
half; once the database is back, everything acknowledged is there, once, and
the outbox delivers what waited. A database that cannot be used at start-up
(an unwritable path, a read-only file system, PostgreSQL down) is one line
and an exit code, not a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import smtplib
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiosmtpd.smtp import SMTP
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.lifecycle import DeliveryState
from gateway.app import start, stop
from gateway.config import DEFAULT_FORM
from storage.models import blob_chunks, blobs, events, inbox_items, messages, outbox, requests
from tests.helpers import count_rows, make_config, wait_for

BODY = {"requester": {"email": "f@example.com"}, "subject": "fault", "body": "x"}


class TcpProxy:
    """A TCP relay to PostgreSQL that can be cut (connections reset) and restored."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


class Outage:
    """Make the test database unreachable, and bring it back."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.proxy: TcpProxy | None = None
        self._lock: sqlite3.Connection | None = None

    async def prepare(self) -> str:
        url = make_url(self.db_url)
        if url.get_backend_name() == "sqlite":
            return self.db_url
        self.proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
        await self.proxy.up()
        return url.set(host="127.0.0.1", port=self.proxy.port).render_as_string(
            hide_password=False)

    async def begin(self) -> None:
        if self.proxy is not None:
            await self.proxy.down()
        else:  # another process holding the write lock: every write times out
            def lock() -> sqlite3.Connection:
                conn = sqlite3.connect(make_url(self.db_url).database, timeout=10,
                                       isolation_level=None, check_same_thread=False)
                conn.execute("BEGIN EXCLUSIVE")
                return conn

            # In a thread: the gateway in this event loop may hold the lock briefly.
            self._lock = await asyncio.to_thread(lock)

    async def end(self) -> None:
        if self.proxy is not None:
            await self.proxy.up()
        elif self._lock is not None:
            self._lock.execute("ROLLBACK")
            self._lock.close()


def _send(port: int, subject: str) -> tuple[int, bytes]:
    data = (f"From: f@example.com\r\nTo: support@localhost\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@example.com>\r\n\r\nbody\r\n").encode()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo()
        client.mail("f@example.com")
        client.rcpt("support@localhost")
        return client.data(data)


async def test_faults__database_down_answers_try_later_and_loses_nothing(
        db_url: str, engine: AsyncEngine, admin_token: str) -> None:
    outage = Outage(db_url)
    config = make_config(await outage.prepare(), database={"timeout_seconds": 2.0},
                         form=[DEFAULT_FORM | {"min_fill_seconds": 0}])
    gateway = await start(config)
    try:
        async with aiohttp.ClientSession(base_url=gateway.http_url) as http:
            headers = {"Authorization": f"Bearer {admin_token}"}
            acknowledged = []
            code, _ = await asyncio.to_thread(_send, gateway.smtp_port, "before")
            assert code == 250
            acknowledged.append("before")

            await outage.begin()
            code, reply = await asyncio.to_thread(_send, gateway.smtp_port, "during")
            assert (code, reply[:5]) == (451, b"4.3.0")
            async with http.post("/v1/requests", json=BODY, headers=headers) as resp:
                assert resp.status == 503
                assert resp.headers["Retry-After"].isdigit()
                assert resp.content_type == "application/problem+json"
            form = aiohttp.FormData({"email": "f@example.com", "subject": "form", "message": "x"})
            form.add_field("attachments", b"%PDF" * 1000, filename="a.pdf",
                           content_type="application/pdf")
            async with http.post("/v1/forms/support", data=form, allow_redirects=False) as resp:
                assert resp.status == 503  # a browser: the form again, "send it again later"
                assert resp.headers["Retry-After"].isdigit()
                assert "send it again in a minute" in await resp.text()
            async with http.get("/readyz") as resp:
                assert resp.status == 503
            await outage.end()

            async def ready() -> bool:
                async with http.get("/readyz") as resp:
                    return resp.status == 200

            await wait_for(ready, timeout=15)
            code, _ = await asyncio.to_thread(_send, gateway.smtp_port, "after")
            assert code == 250
            acknowledged.append("after")
            async with http.post("/v1/requests", json=BODY, headers=headers) as resp:
                assert resp.status == 201

        async def all_done() -> bool:
            return await count_rows(engine, requests) == 3

        await wait_for(all_done, timeout=20)
    finally:
        await stop(gateway, grace=3)
    async with engine.connect() as conn:
        subjects = sorted((await conn.execute(select(requests.c.subject))).scalars())
        states = set((await conn.execute(select(inbox_items.c.state))).scalars())
    assert subjects == ["after", "before", "fault"]  # nothing from the outage, nothing twice
    assert states == {"done"}
    assert await count_rows(engine, inbox_items) == 3
    assert await count_rows(engine, blobs) == await count_rows(engine, blob_chunks) == 0
    async with engine.connect() as conn:
        inbound = (await conn.execute(select(func.count()).select_from(messages)
                                      .where(messages.c.direction == "in"))).scalar_one()
    assert inbound == 3
    assert await count_rows(engine, events) == 2 * 7 + 5  # an email has 7 events, a POST 5


class GatedRelay:
    """An SMTP relay in this event loop that holds the first message until released."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if not self.arrived.is_set():
            self.arrived.set()
            await self.release.wait()
        self.received.append(",".join(envelope.rcpt_tos))
        return "250 OK"

    async def up(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: SMTP(self, hostname="relay"),
                                                "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


def _send_from(port: int, number: int) -> int:
    sender = f"customer{number}@example.com"
    data = (f"From: {sender}\r\nTo: support@localhost\r\nSubject: cut {number}\r\n"
            f"Message-ID: <cut-{number}@example.com>\r\n\r\nbody\r\n").encode()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo()
        client.mail(sender)
        client.rcpt("support@localhost")
        return client.data(data)[0]


async def test_faults__outbox_keeps_delivering_after_a_database_cut(
        db_url: str, engine: AsyncEngine) -> None:
    """The cut comes while an acknowledgement is with the relay: recording it as
    sent fails (this killed the outbox worker for good), and every acknowledgement
    is still delivered, each once, after the database is back."""
    relay = GatedRelay()
    await relay.up()
    outage = Outage(db_url)
    config = make_config(await outage.prepare(), database={"timeout_seconds": 2.0},
                         outbound={"relay": f"127.0.0.1:{relay.port}",
                                   "backoff_initial_seconds": 0.05,
                                   "backoff_max_seconds": 0.2, "max_attempts": 30})
    gateway = await start(config)
    mails = 6
    try:
        for number in range(mails):
            assert await asyncio.to_thread(_send_from, gateway.smtp_port, number) == 250

        async def all_processed() -> bool:
            return await count_rows(engine, requests) == mails and relay.arrived.is_set()

        await wait_for(all_processed, timeout=20)
        await outage.begin()  # the first acknowledgement is with the relay now
        relay.release.set()
        await asyncio.sleep(3)
        await outage.end()

        async def all_delivered() -> bool:
            return len(relay.received) >= mails

        await wait_for(all_delivered, timeout=30)
        async with aiohttp.ClientSession(base_url=gateway.http_url) as http:
            async with http.get("/healthz") as resp:
                assert resp.status == 200, await resp.text()
    finally:
        relay.release.set()
        await stop(gateway, grace=3)
        relay.close()
    assert sorted(relay.received) == sorted(f"customer{n}@example.com" for n in range(mails))
    async with engine.connect() as conn:
        states = (await conn.execute(select(outbox.c.state).where(outbox.c.kind == "email"))
                  ).scalars().all()
    assert states == [DeliveryState.DONE] * mails


def _intake(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ, INTAKE_CONFIG=str(config))
    environment.pop("INTAKE_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], env=environment,
                          capture_output=True, text=True, timeout=60)


def _config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "intake.toml"
    path.write_text(f'[database]\nurl = "{url}"\n[smtp]\nlisten = "127.0.0.1:0"\n'
                    f'[http]\nlisten = "127.0.0.1:0"\n')
    return path


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


UNWRITABLE = {
    "missing directory": ("nowhere/intake.db", "does not exist"),
    "parent is a file": ("a-file/intake.db", "is not a directory"),
    "path is a directory": ("a-directory", "is a directory"),
    "opened read-only": ("file:{tmp}/ro.db?mode=ro&uri=true", "read-only"),
}


@pytest.mark.parametrize("case", sorted(UNWRITABLE))
@pytest.mark.parametrize("command", [["serve"], ["migrate"], ["tokens", "list"],
                                     ["dead-letters"]])
def test_faults__start_on_an_unwritable_sqlite_path_is_one_line(
        tmp_path: Path, case: str, command: list[str]) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    (tmp_path / "a-directory").mkdir()
    path, problem = UNWRITABLE[case]
    path = path.format(tmp=tmp_path)
    url = (f"sqlite+aiosqlite:///{path}" if path.startswith("file:")
           else f"sqlite+aiosqlite:///{tmp_path / path}")
    result = _intake(_config(tmp_path, url), *command)
    line = _one_line(result)
    assert result.returncode == 2, result.stderr  # EX_CONFIG: retrying will not help
    assert problem in line
    assert str(tmp_path) in line  # names the path


@pytest.fixture
def read_only_mount(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs mounted here, made read-only after `prepare` (needs CAP_SYS_ADMIN)."""
    mount = tmp_path / "ro"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a file system here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_faults__start_on_a_read_only_file_system_is_one_line(
        tmp_path: Path, read_only_mount: Path) -> None:
    existing = _config(tmp_path, f"sqlite+aiosqlite:///{read_only_mount}/intake.db")
    assert _intake(existing, "migrate").returncode == 0  # a database that was fine
    subprocess.run(["mount", "-o", "remount,ro", str(read_only_mount)], check=True)
    for command in (["serve"], ["migrate"], ["reprocess", "--all"]):
        result = _intake(existing, *command)
        line = _one_line(result)
        assert result.returncode == 2
        assert f"{read_only_mount}/intake.db" in line and "Read-only file system" in line
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    result = _intake(_config(fresh, f"sqlite+aiosqlite:///{read_only_mount}/new.db"), "serve")
    assert result.returncode == 2
    assert "Read-only file system" in _one_line(result)


def test_faults__start_with_postgresql_unreachable_is_one_line_and_temporary(
        tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens
    url = f"postgresql+asyncpg://intake:secret@127.0.0.1:{port}/intake"
    for command in (["serve"], ["migrate"], ["tokens", "list"]):
        result = _intake(_config(tmp_path, url), *command)
        line = _one_line(result)
        assert result.returncode == 75, result.stderr  # EX_TEMPFAIL: try again later
        assert f"127.0.0.1:{port}/intake" in line and "secret" not in line
