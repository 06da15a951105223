"""Durable SMTP intake against a bare aiosmtpd server, measured in one run.

    .venv/bin/python benchmarks/smtp_intake.py [--messages N] [--connections M]

Sends N messages over M concurrent SMTP sessions to (1) a bare aiosmtpd server
whose handler only answers 250 and (2) `intake serve` on a scratch PostgreSQL
database (every 250 after the commit), and prints both rates, the server CPU
per message and their ratio. Add --sqlite for the embedded default as well.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import (
    Run,
    free_port,
    measure,
    python,
    scratch_database,
    serve_command,
    server_process,
    smtp_client,
)


def intake_env(db_url: str, smtp_port: int, workdir: Path, workers: int) -> dict[str, str]:
    config = workdir / f"bench-{workers}.toml"
    config.write_text(
        f'[intake]\naddresses = ["support@localhost"]\n[pipeline]\nworkers = {workers}\n'
    )
    return {
        "INTAKE_CONFIG": str(config),
        "INTAKE_DATABASE_URL": db_url,
        "INTAKE_SMTP_LISTEN": f"127.0.0.1:{smtp_port}",
        "INTAKE_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--size", type=int, default=2000, help="body bytes per message")
    parser.add_argument("--sqlite", action="store_true", help="also measure on SQLite")
    args = parser.parse_args()
    n, m = args.messages, args.connections
    runs: list[Run] = []

    port = free_port()
    with server_process([python(), "benchmarks/bare_servers.py", "smtp", str(port)], port) as proc:
        measure("warm-up", proc, smtp_client(port, min(200, n), m, args.size))
        runs.append(
            measure("bare aiosmtpd, handler answers 250", proc, smtp_client(port, n, m, args.size))
        )

    with tempfile.TemporaryDirectory() as tmp, scratch_database() as dsn:
        url = dsn.replace("postgresql://", "postgresql+asyncpg://")
        for workers, label in ((0, "intake only"), (2, "with 2 pipeline workers")):
            port = free_port()
            env = intake_env(url, port, Path(tmp), workers)
            with server_process(serve_command(), port, env) as proc:
                measure("warm-up", proc, smtp_client(port, min(200, n), m, args.size))
                runs.append(
                    measure(
                        f"intake serve, PostgreSQL, {label}",
                        proc,
                        smtp_client(port, n, m, args.size),
                    )
                )
        if args.sqlite:
            port = free_port()
            env = intake_env(f"sqlite+aiosqlite:///{tmp}/bench.db", port, Path(tmp), 0)
            with server_process(serve_command(), port, env) as proc:
                measure("warm-up", proc, smtp_client(port, min(200, n), m, args.size))
                runs.append(
                    measure(
                        "intake serve, SQLite, intake only",
                        proc,
                        smtp_client(port, n, m, args.size),
                    )
                )

    print(f"SMTP intake: {n} messages of ~{args.size} B over {m} connections")
    for run in runs:
        print("  " + run.line())
    bare = runs[0]
    for run in runs[1:]:
        print(
            f"  ratio {run.name}: {run.rate / bare.rate:.2f} of bare aiosmtpd "
            f"(CPU per message {run.cpu_ms / bare.cpu_ms:.2f}x)"
        )


if __name__ == "__main__":
    main()
