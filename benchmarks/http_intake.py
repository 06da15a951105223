"""Durable HTTP intake against bare aiohttp handlers, measured in one run.

    .venv/bin/python benchmarks/http_intake.py [--requests N] [--connections M]

POSTs N JSON requests over M keep-alive connections to (1) a bare aiohttp
handler answering 201, (2) a bare aiohttp handler that commits one asyncpg
INSERT per request (the naive durable baseline) and (3) `intake serve` on a
scratch PostgreSQL database, which answers 201 after the commit, with its
pipeline workers off and on. Prints rates, server CPU per request and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

from common import (
    ROOT,
    Run,
    free_port,
    http_client,
    measure,
    python,
    scratch_database,
    serve_command,
    server_process,
)


def post(token: str | None, body: bytes) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"POST /v1/requests HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
            f"\r\n{auth}Content-Length: {len(body)}\r\n\r\n").encode() + body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    n, m = args.requests, args.connections
    body = json.dumps({"requester": {"email": "bench@example.com", "name": "Bench"},
                       "subject": "Benchmark request", "body": "Lorem ipsum " * 30,
                       "custom_fields": {"source": "bench"}}).encode()
    runs: list[Run] = []

    def bench(name: str, proc: subprocess.Popen[bytes], port: int, request: bytes) -> None:
        measure("warm-up", proc, http_client(port, min(300, n), m, request))
        runs.append(measure(name, proc, http_client(port, n, m, request)))

    port = free_port()
    with server_process([python(), "benchmarks/bare_servers.py", "http", str(port)],
                        port) as proc:
        bench("bare aiohttp, answers 201", proc, port, post(None, body))

    with tempfile.TemporaryDirectory() as tmp, scratch_database() as dsn:
        port = free_port()
        with server_process([python(), "benchmarks/bare_servers.py", "http-asyncpg", str(port),
                             dsn], port) as proc:
            bench("bare aiohttp + one asyncpg INSERT, 201", proc, port, post(None, body))

        url = dsn.replace("postgresql://", "postgresql+asyncpg://")
        for workers, label in ((0, "intake only"), (2, "with 2 pipeline workers")):
            config = Path(tmp) / f"bench-{workers}.toml"
            # Rate limits guard against runaway clients; this run measures throughput.
            config.write_text(f"[pipeline]\nworkers = {workers}\n[http]\n"
                              "rate_limit_per_token = 1e9\nrate_limit_per_address = 1e9\n"
                              "rate_limit_burst = 1e9\n")
            port = free_port()
            env = {"INTAKE_CONFIG": str(config), "INTAKE_DATABASE_URL": url,
                   "INTAKE_HTTP_LISTEN": f"127.0.0.1:{port}",
                   "INTAKE_SMTP_LISTEN": f"127.0.0.1:{free_port()}"}
            token = subprocess.run(
                [python(), "-m", "gateway.cli", "tokens", "create", "--role", "intake"],
                env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True,
                check=True).stdout.strip().splitlines()[-1]
            with server_process(serve_command(), port, env) as proc:
                bench(f"intake serve, PostgreSQL, {label}", proc, port, post(token, body))

    print(f"HTTP intake: {n} POST /v1/requests of {len(body)} B over {m} connections")
    for run in runs:
        print("  " + run.line())
    bare, naive = runs[0], runs[1]
    for run in runs[1:]:
        print(f"  ratio {run.name}: {run.rate / bare.rate:.2f} of bare aiohttp, "
              f"{run.rate / naive.rate:.2f} of the naive asyncpg baseline")


if __name__ == "__main__":
    main()
