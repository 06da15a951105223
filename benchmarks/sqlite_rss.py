"""Resident memory of `intake serve` on SQLite per 1,000 messages: does it stay flat?

    .venv/bin/python benchmarks/sqlite_rss.py [--messages N] [--connections M]
        [--env NAME=VALUE ...] [--postgresql]

Starts `intake serve` on a fresh SQLite file (or, with --postgresql, a scratch
PostgreSQL database) as its own process, sends N messages over M SMTP
sessions in rounds of 1,000, waits after each round until the pipeline has
turned every accepted message into a request, and prints the server's RSS
(VmRSS from /proc) then. The growth per 1,000 messages is the least-squares
slope over the second half of the rounds, after the caches have warmed up.
`--env` passes variables to the server (MALLOC_ARENA_MAX=8 shows what the
allocator alone does; INTAKE_SQLITE_CACHE_KIB etc. try other settings).
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
from common import free_port, python, run_client, scratch_database, server_process, smtp_client

ROUND = 1000


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def requests_sqlite(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
        return int(conn.execute("SELECT count(*) FROM requests").fetchone()[0])


async def requests_postgresql(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM requests"))
    finally:
        await conn.close()


def slope(points: list[tuple[int, float]]) -> float:
    """MiB per 1,000 messages, least squares."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx * ROUND


@contextlib.contextmanager
def database(args: argparse.Namespace, workdir: Path) -> Iterator[tuple[str, object]]:
    if args.postgresql:
        with scratch_database() as dsn:
            yield dsn.replace("postgresql://", "postgresql+asyncpg://"), dsn
    else:
        path = workdir / "intake.db"
        yield f"sqlite+aiosqlite:///{path}", path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--size", type=int, default=2000, help="body bytes per message")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    parser.add_argument("--postgresql", action="store_true")
    parser.add_argument("--max-seconds", type=float, default=900, help="stop after this long")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    with tempfile.TemporaryDirectory() as tmp, database(args, Path(tmp)) as (url, target):
        workdir = Path(tmp)
        smtp_port, http_port = free_port(), free_port()
        config = workdir / "rss.toml"
        config.write_text('[intake]\naddresses = ["support@localhost"]\n'
                          "max_message_bytes = 1000000\n")
        env = {"INTAKE_CONFIG": str(config), "INTAKE_DATABASE_URL": url,
               "INTAKE_SMTP_LISTEN": f"127.0.0.1:{smtp_port}",
               "INTAKE_HTTP_LISTEN": f"127.0.0.1:{http_port}"} | extra
        log = workdir / "serve.log"
        with server_process([python(), "-m", "gateway.cli", "--log-level", "WARNING", "serve"],
                            smtp_port, env=env, log=log) as proc:
            print(f"{'postgresql' if args.postgresql else 'sqlite'}; server env: "
                  f"{extra or 'default'}")
            print(f"{'messages':>9} {'RSS MiB':>9} {'msg/s':>7}")
            started = time.monotonic()
            points: list[tuple[int, float]] = []
            sent = 0
            print(f"{0:>9} {rss_mib(proc.pid):>9.1f}")
            while sent < args.messages and time.monotonic() - started < args.max_seconds:
                t0 = time.monotonic()
                accepted = run_client(smtp_client(smtp_port, ROUND, args.connections, args.size))
                sent += ROUND
                if accepted != ROUND:
                    print(f"only {accepted} of {ROUND} accepted")
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    done = (run_client(requests_postgresql(str(target))) if args.postgresql
                            else requests_sqlite(Path(str(target))))
                    if done >= sent:
                        break
                    time.sleep(0.2)
                rss = rss_mib(proc.pid)
                points.append((sent, rss))
                print(f"{sent:>9} {rss:>9.1f} {ROUND / (time.monotonic() - t0):>7.0f}",
                      flush=True)
        half = points[len(points) // 2:]
        print(f"growth over the second half: {slope(half):.3f} MiB per 1,000 messages "
              f"(whole run {slope(points):.3f}); peak {max(y for _, y in points):.1f} MiB")
        errors = [line for line in log.read_text(errors="replace").splitlines()
                  if "ERROR" in line or "Traceback" in line]
        if errors:
            print(f"server log: {len(errors)} error lines, first: {errors[0][:200]}")


if __name__ == "__main__":
    main()
