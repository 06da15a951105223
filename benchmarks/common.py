"""Shared pieces of the intake benchmarks: servers as processes, lean clients,
a scratch PostgreSQL database, and CPU accounting per server process.

The clients are deliberately minimal (raw asyncio streams, prebuilt bytes) so
that on a 2-core machine the server under test, not the client, is the limit.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
PG = os.environ.get("INTAKE_BENCH_PG", "postgres@127.0.0.1:5432")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time used so far by a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@contextmanager
def scratch_database() -> Iterator[str]:
    """A fresh PostgreSQL database (asyncpg URL without driver prefix), dropped after."""
    name = f"intake_bench_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(f"postgresql://{PG}/postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://{PG}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def listening(port: int, proc: subprocess.Popen[bytes], args: list[str],
              seconds: float = 60) -> None:
    """Wait until `port` on 127.0.0.1 takes connections (`proc` still running)."""
    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early: {' '.join(args)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start") from None
            time.sleep(0.1)


@contextmanager
def server_process(
    args: list[str], port: int, env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    out = log.open("wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        args, env={**os.environ, **(env or {})}, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
    )
    try:
        listening(port, proc, args)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Run:
    name: str
    count: int
    seconds: float
    server_cpu: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.server_cpu / self.count

    def line(self) -> str:
        return (
            f"{self.name:<44} {self.rate:9.0f} /s   server CPU {self.cpu_ms:6.2f} ms each"
            f"   ({self.count} in {self.seconds:.2f} s)"
        )


def message(i: int, size: int) -> bytes:
    body = (
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n" * max(1, size // 58)
    ).encode()
    return (
        f"From: Bench {i} <bench{i}@example.com>\r\nTo: support@localhost\r\n"
        f"Subject: benchmark message {i}\r\nMessage-ID: <bench-{i}-{secrets.token_hex(4)}"
        f"@example.com>\r\n\r\n"
    ).encode() + body


async def _reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        if line[3:4] != b"-":
            return line


async def smtp_client(port: int, total: int, connections: int, size: int) -> int:
    """Send `total` messages over `connections` sessions; return how many got 250."""
    next_index = 0
    accepted = 0

    async def session() -> None:
        nonlocal next_index, accepted
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await _reply(reader)
        writer.write(b"EHLO bench.example\r\n")
        await _reply(reader)
        while next_index < total:
            i = next_index
            next_index += 1
            writer.write(b"MAIL FROM:<bench@example.com>\r\n")
            await _reply(reader)
            writer.write(b"RCPT TO:<support@localhost>\r\n")
            await _reply(reader)
            writer.write(b"DATA\r\n")
            await _reply(reader)
            writer.write(message(i, size) + b".\r\n")
            if (await _reply(reader)).startswith(b"250"):
                accepted += 1
        writer.write(b"QUIT\r\n")
        await _reply(reader)
        writer.close()

    await asyncio.gather(*(session() for _ in range(connections)))
    return accepted


async def http_client(port: int, total: int, connections: int, request: bytes) -> int:
    """POST `request` (complete HTTP/1.1 bytes) `total` times over keep-alive connections."""
    next_index = 0
    created = 0

    async def connection() -> None:
        nonlocal next_index, created
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while next_index < total:
            next_index += 1
            writer.write(request)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            if status.split()[1:2] == [b"201"]:
                created += 1
        writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return created


def measure(name: str, proc: subprocess.Popen[bytes], run: object) -> Run:
    """Time one client run against a server process and its CPU use."""
    cpu_before = cpu_seconds(proc.pid)
    started = time.perf_counter()
    count = run_client(run)
    seconds = time.perf_counter() - started
    return Run(name, count, seconds, cpu_seconds(proc.pid) - cpu_before)


def run_client(coroutine: object) -> int:
    try:
        import uvloop

        return uvloop.run(coroutine)  # type: ignore[arg-type]
    except ImportError:
        return asyncio.run(coroutine)  # type: ignore[arg-type]


def python() -> str:
    return sys.executable


async def migrate(url: str) -> None:
    """Bring a scratch database (an async SQLAlchemy URL) to the gateway's schema."""
    sys.path.insert(0, str(ROOT))  # the gateway's packages, for benchmarks run as scripts
    from storage.engine import create_engine
    from storage.migrate import upgrade

    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


def serve_command() -> list[str]:
    """`intake serve` as one process: the figures are that process's CPU and
    memory, against single-process baselines (the default on PostgreSQL is a
    supervisor and a worker per core; end_to_end.py measures that whole tree)."""
    return [python(), "-m", "gateway.cli", "serve", "--processes", "1"]
