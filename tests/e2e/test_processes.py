"""`intake serve --processes 2` on PostgreSQL: two workers under a supervisor
share the SMTP and HTTP ports; a worker killed under load loses nothing
acknowledged and is started again; SIGTERM to the supervisor stops them all."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import smtplib
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from storage.engine import create_engine
from storage.models import inbox_items, messages
from tests.helpers import wait_for
from tests.process import ServeProcess, write_config

pytestmark = pytest.mark.slow

READY = re.compile(r"intake worker (\d+) ready \(pid (\d+)\)")


def _worker_pids(server: ServeProcess) -> dict[int, int]:
    """Worker number -> pid of its latest start, from the ready lines of the log."""
    return {int(n): int(pid) for n, pid in READY.findall(server.log_text())}


async def _start(tmp_path: Path, db_url: str, name: str) -> ServeProcess:
    config = write_config(tmp_path / "intake.toml", db_url)
    server = ServeProcess(config, tmp_path / f"{name}.log", args=("--processes", "2"))
    server.start(timeout=60)

    async def both_ready() -> bool:
        return len(_worker_pids(server)) == 2

    await wait_for(both_ready, timeout=60, interval=0.2)
    return server


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _server_side(server_port: int, client_port: int) -> str:
    """The inode of the accepted socket of one connection, from /proc/net/tcp."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if (int(local.split(":")[1], 16) == server_port
                and int(remote.split(":")[1], 16) == client_port):
            return inode
    raise AssertionError(f"no accepted socket for client port {client_port}")


def _send(port: int, mid: str) -> bool:
    """One message on its own connection; True when it got 250."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo()
            data = (f"From: s@example.com\r\nTo: support@localhost\r\nSubject: p {mid}\r\n"
                    f"Message-ID: <{mid}>\r\n\r\nbody\r\n").encode()
            client.mail("s@example.com")
            client.rcpt("support@localhost")
            code, _ = client.data(data)
            return code == 250
    except (OSError, smtplib.SMTPException):
        return False  # the worker died under us: not acknowledged


async def _stored(db_url: str) -> list[str]:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(
                select(messages.c.message_id).where(messages.c.direction == "in"))).scalars())
    finally:
        await engine.dispose()


async def _drained(db_url: str) -> bool:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            states = set((await conn.execute(select(inbox_items.c.state))).scalars())
        return states <= {"done"}
    finally:
        await engine.dispose()


async def test_processes__both_workers_take_connections(pg_url: str, tmp_path: Path) -> None:
    server = await _start(tmp_path, pg_url, "serve")
    try:
        pids = _worker_pids(server)
        answered: Counter[int] = Counter()
        for n in range(40):
            # Connected means greeted: a worker has accepted the connection.
            client = smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10)
            try:
                assert client.sock is not None
                inode = _server_side(server.smtp_port, client.sock.getsockname()[1])
                owners = [pid for pid in pids.values() if inode in _socket_inodes(pid)]
                assert len(owners) == 1
                answered[owners[0]] += 1
                client.ehlo()
                client.sendmail("s@example.com", ["support@localhost"],
                                f"Subject: c{n}\r\nMessage-ID: <c{n}@example.com>\r\n\r\nhi\r\n")
            finally:
                client.quit()
        # The kernel hashes each connection to one worker: 40 all on one has odds 2**-39.
        assert set(answered) == set(pids.values()), answered

        async def all_stored() -> bool:
            return len(await _stored(pg_url)) == 40 and await _drained(pg_url)

        await wait_for(all_stored, timeout=60, interval=0.5)
    finally:
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0, server.log_text()
    assert sorted(await _stored(pg_url)) == sorted(f"c{n}@example.com" for n in range(40))


async def test_processes__killed_worker_loses_nothing_and_is_restarted(
        pg_url: str, tmp_path: Path) -> None:
    server = await _start(tmp_path, pg_url, "serve")
    killed = _worker_pids(server)[1]
    acked: list[str] = []
    enough = threading.Event()

    def burst() -> None:
        def sender(s: int) -> None:
            for i in range(30):
                mid = f"k{s}-{i}@example.com"
                if _send(server.smtp_port, mid):
                    acked.append(mid)
                    if len(acked) >= 60:
                        enough.set()

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(sender, range(8)))

    try:
        sending = asyncio.create_task(asyncio.to_thread(burst))
        assert await asyncio.to_thread(enough.wait, 60), server.log_text()
        os.kill(killed, signal.SIGKILL)  # one worker, mid-burst
        await sending
        # Started again: worker 1 is ready under a new pid.
        async def restarted() -> bool:
            return _worker_pids(server).get(1) not in (None, killed)

        await wait_for(restarted, timeout=60, interval=0.2)
        assert server.proc is not None and server.proc.poll() is None  # the supervisor lives
        assert _send(server.smtp_port, "after@example.com")
        acknowledged = set(acked) | {"after@example.com"}

        async def all_stored() -> bool:
            return acknowledged <= set(await _stored(pg_url)) and await _drained(pg_url)

        await wait_for(all_stored, timeout=60, interval=0.5)
    finally:
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0, server.log_text()
    stored = await _stored(pg_url)
    assert len(acked) > 60  # the burst went on past the kill
    assert acknowledged <= set(stored)  # every message that got 250 is there
    assert len(stored) == len(set(stored))  # and only once
    assert f"worker 1 (pid {killed}) exited with signal 9" in server.log_text()


async def test_processes__sighup_reaches_every_worker_and_sigterm_stops_them(
        pg_url: str, tmp_path: Path) -> None:
    server = await _start(tmp_path, pg_url, "serve")
    pids = list(_worker_pids(server).values())
    assert "rules reloaded" not in server.log_text()
    server.signal(signal.SIGHUP)  # to the supervisor, passed on: each reloads its rules

    async def both_reloaded() -> bool:
        return server.log_text().count("rules reloaded from") == 2

    await wait_for(both_reloaded, timeout=30, interval=0.2)
    server.signal(signal.SIGTERM)
    assert server.wait(timeout=60) == 0, server.log_text()
    for pid in pids:  # reaped by the supervisor before it exited: no such process
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    log = server.log_text()
    assert log.count("intake stopped") == 2  # each worker drained and stopped itself
    assert "intake supervisor stopped" in log
