"""What the metrics cost: intake with them against intake without them, in one run.

    .venv/bin/python benchmarks/metrics_cost.py [--messages N] [--requests N]
        [--rounds R] [--scrape-seconds S]

Two `intake serve` processes (one process each, pipeline off: the intake path
alone) share one scratch PostgreSQL database: one with `[metrics] enabled =
false` (the baseline: no counters, no middleware, no listener), one with the
metrics on and GET /metrics scraped every S seconds (default 1, fifteen times
Prometheus's usual rate) while it is measured. Rounds alternate between them
(A B, B A, ...), so the machine's load hits both alike; each round sends N mails
over SMTP and N JSON POSTs, and the server's CPU per item is read from /proc.
Prints per-channel CPU per item and rate, their ratios (target: under 3% more
CPU), the cost of one scrape, and the counters' own cost measured in-process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
import timeit
import urllib.request
from pathlib import Path

from common import (
    ROOT,
    Run,
    cpu_seconds,
    free_port,
    http_client,
    measure,
    python,
    scratch_database,
    serve_command,
    server_process,
    smtp_client,
)


def post(token: str, body: bytes) -> bytes:
    return (f"POST /v1/requests HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
            f"\r\nAuthorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


class Scraper:
    """GET /metrics every `seconds` while running (a background thread)."""

    def __init__(self, port: int, seconds: float) -> None:
        self.url, self.seconds = f"http://127.0.0.1:{port}/metrics", seconds
        self.count = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Scraper:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            with urllib.request.urlopen(self.url, timeout=10) as answer:
                answer.read()
            self.count += 1
            self._stop.wait(self.seconds)


def counters_in_process() -> tuple[float, float]:
    """Microseconds per accepted mail's counting call, counted and not (`_Off`)."""
    from gateway import metrics

    metrics.configure(enabled=True)
    on = metrics.intake("smtp")
    metrics.configure(enabled=False)
    off = metrics.intake("smtp")
    loops = 200_000
    return (min(timeit.repeat(lambda: on.accepted(2000), number=loops, repeat=5)) / loops * 1e6,
            min(timeit.repeat(lambda: off.accepted(2000), number=loops, repeat=5)) / loops * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--scrape-seconds", type=float, default=1.0)
    args = parser.parse_args()
    body = json.dumps({"requester": {"email": "bench@example.com", "name": "Bench"},
                       "subject": "Benchmark request", "body": "Lorem ipsum " * 30}).encode()
    runs: dict[tuple[str, str], list[Run]] = {}
    scrapes: list[tuple[int, float]] = []  # (count, server CPU seconds) of an idle burst

    with tempfile.TemporaryDirectory() as tmp, scratch_database() as dsn:
        url = dsn.replace("postgresql://", "postgresql+asyncpg://")
        servers = {}
        for name, enabled in (("without metrics", False), ("with metrics", True)):
            metrics_port = free_port()
            config = Path(tmp) / f"{enabled}.toml"
            config.write_text(
                "[pipeline]\nworkers = 0\n[http]\nrate_limit_per_token = 1e9\n"
                "rate_limit_per_address = 1e9\nrate_limit_burst = 1e9\n"
                f"[metrics]\nenabled = {str(enabled).lower()}\n"
                f'listen = "127.0.0.1:{metrics_port}"\n')
            env = {"INTAKE_CONFIG": str(config), "INTAKE_DATABASE_URL": url,
                   "INTAKE_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
                   "INTAKE_SMTP_LISTEN": f"127.0.0.1:{free_port()}"}
            servers[name] = (env, metrics_port if enabled else None)
        env = next(iter(servers.values()))[0]
        subprocess.run([python(), "-m", "gateway.cli", "migrate"], env={**os.environ, **env},
                       cwd=ROOT, check=True, capture_output=True)
        token = subprocess.run(
            [python(), "-m", "gateway.cli", "tokens", "create", "--role", "intake"],
            env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True,
            check=True).stdout.strip().splitlines()[-1]
        request = post(token, body)
        (env_a, _), (env_b, metrics_port) = servers.values()
        smtp_a, smtp_b = (int(e["INTAKE_SMTP_LISTEN"].rsplit(":", 1)[1]) for e in (env_a, env_b))
        http_a, http_b = (int(e["INTAKE_HTTP_LISTEN"].rsplit(":", 1)[1]) for e in (env_a, env_b))
        with server_process(serve_command(), smtp_a, env_a) as proc_a, \
                server_process(serve_command(), smtp_b, env_b) as proc_b:
            targets = {"without metrics": (proc_a, smtp_a, http_a),
                       "with metrics": (proc_b, smtp_b, http_b)}
            for proc, smtp, http in targets.values():  # warm-up
                measure("warm-up", proc, smtp_client(smtp, 200, args.connections, 2000))
                measure("warm-up", proc, http_client(http, 300, args.connections, request))
            assert metrics_port is not None
            order = list(targets.items())
            for number in range(args.rounds):
                # A B, then B A: neither server always goes first.
                for name, (proc, smtp, http) in order if number % 2 == 0 else order[::-1]:
                    scraping = Scraper(metrics_port, args.scrape_seconds) if proc is proc_b \
                        else None
                    if scraping is not None:
                        scraping.__enter__()
                    try:
                        runs.setdefault((name, "smtp"), []).append(measure(
                            f"SMTP, {name}", proc,
                            smtp_client(smtp, args.messages, args.connections, 2000)))
                        runs.setdefault((name, "http"), []).append(measure(
                            f"HTTP, {name}", proc,
                            http_client(http, args.requests, args.connections, request)))
                    finally:
                        if scraping is not None:
                            scraping.__exit__(None, None, None)
            # One scrape's cost: 50 back to back on the idle server (the database's
            # figures are read at most once per database_seconds, as in production).
            before = cpu_seconds(proc_b.pid)
            started = time.perf_counter()
            for _ in range(50):
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as a:
                    size = len(a.read())
            scrapes.append((50, cpu_seconds(proc_b.pid) - before))
            wall = (time.perf_counter() - started) / 50

    print(f"Metrics cost: {args.rounds} rounds alternating, {args.messages} mails of ~2 KB and "
          f"{args.requests} POSTs of {len(body)} B per round, {args.connections} connections; "
          f"/metrics scraped every {args.scrape_seconds:g} s during the measured rounds")
    for channel in ("smtp", "http"):
        base, with_ = runs[("without metrics", channel)], runs[("with metrics", channel)]
        for run in base + with_:
            print("  " + run.line())
        cpu_a = sum(r.server_cpu for r in base) / sum(r.count for r in base)
        cpu_b = sum(r.server_cpu for r in with_) / sum(r.count for r in with_)
        rate_a = statistics.median(r.rate for r in base)
        rate_b = statistics.median(r.rate for r in with_)
        pairs = statistics.median(b.cpu_ms / a.cpu_ms for a, b in zip(base, with_, strict=True))
        print(f"  ratio {channel.upper()}: CPU per item {cpu_b / cpu_a:.3f} of without "
              f"({(cpu_b / cpu_a - 1) * 100:+.1f}%; median of the rounds' ratios "
              f"{pairs:.3f}), median rate {rate_b / rate_a:.3f}")
    count, cpu = scrapes[0]
    print(f"  one /metrics scrape: {1000 * cpu / count:.2f} ms server CPU, {1000 * wall:.1f} ms "
          f"wall, {size} B; at a 15 s interval {100 * cpu / count / 15:.3f}% of a core")
    on, off = counters_in_process()
    print(f"  counting an accepted mail in-process: {on:.2f} us (off: {off:.2f} us)")


if __name__ == "__main__":
    main()
