"""End to end: from the client's first byte until the last request is stored and routed.

    .venv/bin/python benchmarks/end_to_end.py [--sqlite] [--messages N] [--sessions M]
        [--size BYTES] [--http-seconds S] [--http-connections C] [--modes ...]
        [--processes N] [--no-postgres] [--intake-alone] [--set SECTION.KEY=VALUE]...

Starts `intake serve` as its own process (default configuration; a fresh
scratch PostgreSQL database per run, or a fresh SQLite file with --sqlite) and
drives it with real clients:

  smtp-one   Postfix's smtp-source, one message per connection (as most senders
             connect): N messages of BYTES over M parallel sessions
  smtp-many  the same with -d: many messages per connection
  smtp-corpus  the realistic mix: the corpus's raw messages (mime/raw/*.box in
             --corpus, default $INTAKE_CORPUS_DIR or ../shared/corpus; not part
             of a clone), cycled to N, each with a fresh Message-ID, one per
             connection over M sessions, by a minimal asyncio SMTP client
  http       wrk, C connections for S seconds, POST /v1/requests (~1.1 KB JSON)

The clock runs until the database says every accepted item is done (no inbox
item pending or processing), not until the last 250/201; both times are
printed. In the same run it measures the bare baselines (bare single-process
aiosmtpd answering 250 with the same smtp-source command; a naive aiohttp
handler committing one asyncpg INSERT with the same wrk command) and prints the
ratios, and the server CPU per item: user+system of the server's whole process
tree (workers and reaped children included) divided by the items. Where the
run uses PostgreSQL on this machine, PostgreSQL's CPU in the same interval
(all its processes, exited backends included; the benchmark's own polls too)
is printed beside it: the two share the machine's cores.

Each ratio line is followed by the machine's budget: at the baseline's rate,
this machine's cores give each item at most cores / rate of CPU for all that
runs on them; the line prints that and what the run and the baseline used per
item (server, PostgreSQL, and the client with this script's polls).
--intake-alone adds, for SMTP and HTTP, the same client against `intake serve`
with no pipeline worker: what accepting alone costs, and so what is left of
the budget for building, routing and storing.

Only the HTTP rate limits are raised above the defaults (they would answer 429
to wrk); everything else is the embedded default configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
from common import (
    CLOCK_TICKS,
    ROOT,
    free_port,
    listening,
    python,
    run_client,
    scratch_database,
    server_process,
    smtp_client,
)

SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
WRK = shutil.which("wrk") or "/usr/bin/wrk"
DRAIN_TIMEOUT = 600.0  # seconds the pipeline gets to finish a backlog
POLL = 0.02

WRK_SCRIPT = """
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("BENCH_TOKEN")
if token and token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
done = function(summary, latency, requests)
  io.write(string.format("BENCH %d %d %d\\n", summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout))
end
"""


def tree_cpu(root: int) -> float:
    """User+system CPU seconds of a process and all its live descendants, plus
    what their reaped children used (cutime/cstime), so exited workers count."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        times[pid] = sum(int(f) for f in fields[11:15]) / CLOCK_TICKS
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0.0)
        todo.extend(child for child, parent in parents.items() if parent == pid)
    return total


def postgres_cpu() -> float | None:
    """User+system CPU seconds of this machine's PostgreSQL processes (exited
    backends through their parent's cutime/cstime); None when none is seen."""
    total, seen = 0.0, False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, fields = stat.partition("(")[2].rpartition(")")[::2]
        if name.startswith("postgres"):
            seen = True
            total += sum(int(f) for f in fields.split()[11:15]) / CLOCK_TICKS
    return total if seen else None


def _since(before: float | None) -> float | None:
    after = postgres_cpu()
    return after - before if before is not None and after is not None else None


def body_json() -> bytes:
    """A ~1.1 KB API request, as a typical form or integration sends."""
    text = ("Hello, since this morning the invoice export fails with a timeout after "
            "about thirty seconds. We tried two browsers and a second account. ") * 7
    return json.dumps({
        "requester": {"email": "bench@example.com", "name": "Bench Requester"},
        "subject": "Invoice export fails with a timeout",
        "body": text.strip(),
        "custom_fields": {"source": "bench", "account": "ACME-0001"},
    }).encode()


# -- the database, polled while the pipeline drains ---------------------------------

@dataclass
class Counts:
    items: int
    open_items: int
    requests: int


class Probe:
    """Counts inbox items (all, and not yet done) and requests, on one connection
    kept for the run: a connection per poll made PostgreSQL start a backend
    fifty times a second, about a third of a core taken from the server measured."""

    SQL = ("SELECT (SELECT count(*) FROM inbox_items),"
           " (SELECT count(*) FROM inbox_items WHERE state IN ('pending', 'processing')),"
           " (SELECT count(*) FROM requests)")
    # What each poll asks: an index probe, where the counts scan both tables.
    OPEN = "SELECT EXISTS (SELECT 1 FROM inbox_items WHERE state IN ('pending', 'processing'))"

    def __init__(self, dsn: str | None, sqlite_path: Path | None) -> None:
        self.dsn, self.sqlite_path = dsn, sqlite_path
        self._runner: asyncio.Runner | None = None
        self._pg_conn: asyncpg.Connection | None = None
        self._sqlite: sqlite3.Connection | None = None

    def counts(self) -> Counts:
        return Counts(*self._row(self.SQL))

    def _row(self, sql: str) -> tuple[Any, ...]:
        if self.sqlite_path is not None:
            if self._sqlite is None:
                # Autocommit: each poll reads the newest committed state.
                self._sqlite = sqlite3.connect(f"file:{self.sqlite_path}?mode=ro", uri=True,
                                               timeout=30, isolation_level=None)
            return tuple(self._sqlite.execute(sql).fetchone())
        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner.run(self._pg(sql))

    async def _pg(self, sql: str) -> tuple[Any, ...]:
        if self._pg_conn is None:
            self._pg_conn = await asyncpg.connect(self.dsn)
        return tuple(await self._pg_conn.fetchrow(sql))

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self._runner is not None:
            if self._pg_conn is not None:
                self._runner.run(self._pg_conn.close())
            self._runner.close()
        self._runner = self._pg_conn = self._sqlite = None

    def wait_drained(self, since: Counts) -> Counts:
        """Poll until every item accepted since `since` is done (bounded). Called
        once the client has its answers, so every item it sent is in already."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while True:
            if not self._row(self.OPEN)[0]:
                now = self.counts()
                if now.items > since.items and now.open_items == 0:
                    return now
            if time.monotonic() > deadline:
                raise RuntimeError(f"pipeline did not drain in {DRAIN_TIMEOUT:.0f} s: "
                                   f"{self.counts()}")
            time.sleep(POLL)


# -- clients -------------------------------------------------------------------------

def smtp_source(port: int, messages: int, sessions: int, size: int, many: bool) -> int:
    args = [SMTP_SOURCE, "-s", str(sessions), "-m", str(messages), "-l", str(size),
            "-f", "bench@example.com", "-t", "support@localhost"]
    if many:
        args.append("-d")
    subprocess.run([*args, f"127.0.0.1:{port}"], check=True, timeout=DRAIN_TIMEOUT,
                   stdout=subprocess.DEVNULL)
    return messages


def wrk(port: int, seconds: int, connections: int, workdir: Path, token: str | None) -> int:
    script, body = workdir / "post.lua", workdir / "body.json"
    script.write_text(WRK_SCRIPT)
    body.write_bytes(body_json())
    out = subprocess.run(
        [WRK, "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "-s", str(script),
         f"http://127.0.0.1:{port}/v1/requests"],
        env={**os.environ, "BENCH_BODY": str(body), "BENCH_TOKEN": token or ""},
        capture_output=True, text=True, check=True, timeout=seconds + 120).stdout
    line = next(x for x in out.splitlines() if x.startswith("BENCH "))
    total, bad_status, _socket_errors = (int(x) for x in line.split()[1:])
    return total - bad_status


def corpus_messages(corpus: Path, count: int) -> list[bytes]:
    """`count` messages cycled from the corpus, CRLF, dot-stuffed, each with a
    fresh Message-ID (a repeated one is rightly filed as a duplicate)."""
    raws = [path.read_bytes() for path in sorted((corpus / "mime" / "raw").glob("*.box"))]
    # Only messages whose lines keep RFC 5322's 998-octet limit: aiosmtpd answers
    # 500 to longer ones, and the baseline must be sent the same mail.
    raws = [raw for raw in raws if max(map(len, raw.splitlines())) <= 998]
    if not raws:
        raise SystemExit(f"no mime/raw/*.box under {corpus}")
    out = []
    for i in range(count):
        head, sep, body = raws[i % len(raws)].replace(b"\r\n", b"\n").partition(b"\n\n")
        kept: list[bytes] = []
        dropping = False
        for line in head.split(b"\n"):
            if line[:1] in (b" ", b"\t"):
                if not dropping:
                    kept.append(line)
                continue
            dropping = line.lower().startswith(b"message-id:")
            if not dropping:
                kept.append(line)
        lines = [f"Message-ID: <corpus-{i}-{time.time_ns()}@bench.example>".encode(), *kept,
                 b"", *body.split(b"\n")] if sep else kept
        out.append(b"".join((b"." + x if x.startswith(b".") else x) + b"\r\n" for x in lines))
    return out


def corpus_count(corpus: Path) -> int:
    return len([p for p in (corpus / "mime" / "raw").glob("*.box")
                if max(map(len, p.read_bytes().splitlines())) <= 998])


async def send_each(port: int, data: list[bytes], sessions: int,
                    senders: list[str] | None = None) -> int:
    """Send each message on its own connection, `sessions` at a time; count the 250s.
    `senders`: each message's envelope sender (default bench@example.com)."""
    pending = iter(zip(data, senders or ["bench@example.com"] * len(data), strict=True))
    accepted = 0

    async def reply(reader: asyncio.StreamReader) -> bytes:
        while (line := await reader.readline())[3:4] == b"-":
            pass
        return line

    async def sender() -> None:
        nonlocal accepted
        for message, sender in pending:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await reply(reader)
            for command in (b"EHLO bench.example", f"MAIL FROM:<{sender}>".encode(),
                            b"RCPT TO:<support@localhost>", b"DATA"):
                writer.write(command + b"\r\n")
                await reply(reader)
            writer.write(message + b".\r\n")
            answer = await reply(reader)  # awaited first: `x += await` would race
            accepted += answer.startswith(b"250")
            writer.write(b"QUIT\r\n")
            await reply(reader)
            writer.close()
            await writer.wait_closed()

    await asyncio.gather(*(sender() for _ in range(sessions)))
    return accepted


def corpus_client(port: int, data: list[bytes], sessions: int) -> int:
    return run_client(send_each(port, data, sessions))


# -- runs ----------------------------------------------------------------------------

@dataclass
class Result:
    name: str
    accepted: int
    accept_seconds: float
    stored: int | None = None
    done_seconds: float | None = None
    cpu: float = 0.0
    db_cpu: float | None = None  # PostgreSQL's, when the run used it
    client_cpu: float = 0.0  # the client's and this script's (its polls)

    def line(self) -> str:
        accept = f"{self.accepted / self.accept_seconds:7.0f}/s accepted"
        if self.stored is not None and self.done_seconds is not None:
            done = f"{self.stored / self.done_seconds:7.0f}/s stored+routed"
            items = self.stored
        else:
            done, items = f"{'—':>7}  stored+routed", self.accepted
        db = (f" + PostgreSQL {1000 * self.db_cpu / items:4.2f}"
              if self.db_cpu is not None else "")
        return (f"{self.name:<34} {accept}  {done}  CPU {1000 * self.cpu / items:5.2f} ms/item"
                f"{db}  ({self.accepted} in {self.accept_seconds:.2f} s"
                + (f", {self.stored} requests done at {self.done_seconds:.2f} s)"
                   if self.done_seconds else ")"))

    @property
    def rate(self) -> float:
        if self.stored is not None and self.done_seconds:
            return self.stored / self.done_seconds
        return self.accepted / self.accept_seconds


def client_cpu() -> float:
    """CPU seconds of this script and its finished children (smtp-source, wrk:
    each run to its end; the servers are still running, so not counted)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def bare_run(name: str, pid: int, client: Callable[[], int], database: bool = False) -> Result:
    db = postgres_cpu() if database else None
    cpu, mine, started = tree_cpu(pid), client_cpu(), time.perf_counter()
    accepted = client()
    return Result(name, accepted, time.perf_counter() - started, cpu=tree_cpu(pid) - cpu,
                  db_cpu=_since(db), client_cpu=client_cpu() - mine)


def intake_run(name: str, pid: int, probe: Probe, client: Callable[[], int]) -> Result:
    before = probe.counts()
    db = postgres_cpu() if probe.dsn is not None else None
    cpu, mine, started = tree_cpu(pid), client_cpu(), time.perf_counter()
    client()
    accepted_at = time.perf_counter() - started
    after = probe.wait_drained(before)
    done_at = time.perf_counter() - started
    return Result(name, after.items - before.items, accepted_at,
                  stored=after.requests - before.requests, done_seconds=done_at,
                  cpu=tree_cpu(pid) - cpu, db_cpu=_since(db), client_cpu=client_cpu() - mine)


@contextmanager
def intake_server(workdir: Path, sqlite: bool, config: str | None,
                  extra: Sequence[str] = ()) -> Iterator[
        tuple[subprocess.Popen[bytes], Probe, dict[str, str]]]:
    """`intake serve` on a fresh database; yields the process, a probe and its env.
    `extra`: settings beside --set's (SECTION.KEY=VALUE)."""
    smtp_port, http_port = free_port(), free_port()
    env = {"INTAKE_SMTP_LISTEN": f"127.0.0.1:{smtp_port}",
           "INTAKE_HTTP_LISTEN": f"127.0.0.1:{http_port}"}
    config = _with_settings(config, [*SETTINGS, *extra])
    if config is not None:
        path = workdir / f"bench-{time.monotonic_ns()}.toml"
        path.write_text(config)
        env["INTAKE_CONFIG"] = str(path)
    with _database(workdir, sqlite) as (url, probe):
        env["INTAKE_DATABASE_URL"] = url
        subprocess.run([python(), "-m", "gateway.cli", "migrate"], env={**os.environ, **env},
                       cwd=ROOT, check=True, capture_output=True)
        env["SMTP_PORT"], env["HTTP_PORT"] = str(smtp_port), str(http_port)
        args = [python(), "-m", "gateway.cli", "serve", *SERVE_ARGS]
        with server_process(args, http_port, env, log=workdir / "serve.log") as proc:
            # Up once its HTTP port answers; its SMTP listener may come a moment later.
            listening(smtp_port, proc, args)
            yield proc, probe, env


@contextmanager
def _database(workdir: Path, sqlite: bool) -> Iterator[tuple[str, Probe]]:
    if sqlite:
        path = workdir / f"bench-{time.monotonic_ns()}.db"
        probe = Probe(None, path)
        try:
            yield f"sqlite+aiosqlite:///{path}", probe
        finally:
            probe.close()
        return
    with scratch_database() as dsn:
        probe = Probe(dsn, None)
        try:
            yield dsn.replace("postgresql://", "postgresql+asyncpg://"), probe
        finally:
            probe.close()  # before the scratch database is dropped


def token_for(env: dict[str, str]) -> str:
    out = subprocess.run([python(), "-m", "gateway.cli", "tokens", "create", "--role", "intake"],
                         env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    return out.strip().splitlines()[-1]


def ratios(label: str, run: Result, base: Result) -> str:
    accepted = run.accepted / run.accept_seconds / base.rate
    cpu = (run.cpu / run.accepted) / (base.cpu / base.accepted)
    with_db = ""
    if run.db_cpu is not None:
        ours = (run.cpu + run.db_cpu) / run.accepted
        with_db = f" ({ours / ((base.cpu + (base.db_cpu or 0.0)) / base.accepted):.2f}x" \
                  " with PostgreSQL's)"
    return (f"    ratio to {label}: accepted {accepted:.2f}x, end to end "
            f"{run.rate / base.rate:.2f}x; CPU per item {cpu:.2f}x{with_db}\n"
            + budget(run, base))


def budget(run: Result, base: Result) -> str:
    """What 1.0x would take: at the baseline's rate, this machine's cores give each
    item at most cores / rate of CPU for everything on them (server, database,
    client); what the run and the baseline used of it, per item."""
    cores = len(os.sched_getaffinity(0))
    allowed = 1000 * cores / base.rate

    def used(result: Result) -> float:
        items = result.stored if result.stored is not None else result.accepted
        return 1000 * (result.cpu + (result.db_cpu or 0.0) + result.client_cpu) / items

    return (f"    machine CPU per item (server, database, client): {used(run):.2f} ms, the"
            f" baseline {used(base):.2f}; {cores} cores at the baseline's rate allow"
            f" {allowed:.2f}")


# `--processes N` passes through to `intake serve` (default: its own choice).
SERVE_ARGS: list[str] = []
# `--set SECTION.KEY=VALUE` (a TOML value): configuration beyond the default.
SETTINGS: list[str] = []


def _with_settings(config: str | None, settings: Sequence[str]) -> str | None:
    """`config` (TOML text, or None for the default) with `settings` added."""
    if not settings:
        return config
    sections: dict[str, list[str]] = {}
    for setting in settings:
        key, _, value = setting.partition("=")
        section, _, name = key.partition(".")
        sections.setdefault(section, []).append(f"{name} = {value}")
    # A repeated table header is invalid TOML: the settings' sections come
    # first, and the given text must not name them too (HTTP_CONFIG names [http]).
    return "".join(f"[{name}]\n" + "\n".join(lines) + "\n" for name, lines in sections.items()
                   ) + (config or "")

# --intake-alone: the same server with no pipeline worker; what accepting costs.
PIPELINE_OFF = ("pipeline.workers=0",)


def intake_alone(workdir: Path, sqlite: bool, backend: str, config: str | None,
                 warm: Callable[[dict[str, str]], object],
                 client: Callable[[dict[str, str]], int]) -> Result:
    """The run's client against `intake serve` with its pipeline off: each item
    committed and answered, none built, routed or stored as a request."""
    with intake_server(workdir, sqlite, config, PIPELINE_OFF) as (proc, _probe, env):
        warm(env)
        return bare_run(f"intake alone (no pipeline), {backend}", proc.pid,
                        partial(client, env), database=not sqlite)


HTTP_CONFIG = ("[http]\nrate_limit_per_token = 1e9\nrate_limit_per_address = 1e9\n"
               "rate_limit_burst = 1e9\n")


def http_alone(workdir: Path, sqlite: bool, backend: str, seconds: int,
               connections: int) -> Result:
    """`intake_alone` for the wrk run, with an intake token of its own."""
    token: list[str] = []

    def warm(env: dict[str, str]) -> None:
        token.append(token_for(env))
        wrk(int(env["HTTP_PORT"]), 1, connections, workdir, token[0])

    return intake_alone(workdir, sqlite, backend, HTTP_CONFIG, warm,
                        lambda env: wrk(int(env["HTTP_PORT"]), seconds, connections, workdir,
                                        token[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sqlite", action="store_true", help="also run intake on SQLite")
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=4096, help="message payload bytes")
    parser.add_argument("--http-seconds", type=int, default=5)
    parser.add_argument("--http-connections", type=int, default=50)
    parser.add_argument("--corpus", type=Path, default=Path(
        os.environ.get("INTAKE_CORPUS_DIR", ROOT.parent / "shared" / "corpus")))
    parser.add_argument("--modes", nargs="+", default=["smtp-one", "smtp-many", "http"],
                        choices=["smtp-one", "smtp-many", "smtp-corpus", "http"])
    parser.add_argument("--processes", type=int, default=None,
                        help="intake serve --processes N (default: the gateway's default)")
    parser.add_argument("--no-postgres", action="store_true",
                        help="with --sqlite: run intake on SQLite only")
    parser.add_argument("--intake-alone", action="store_true",
                        help="also run each SMTP one/many and HTTP client against intake"
                             " serve with no pipeline worker (what accepting alone costs)")
    parser.add_argument("--set", action="append", default=[], dest="settings",
                        metavar="SECTION.KEY=VALUE",
                        help="a configuration key for intake serve (TOML value); repeatable")
    args = parser.parse_args()
    SETTINGS[:] = args.settings
    if args.processes is not None:
        SERVE_ARGS[:] = ["--processes", str(args.processes)]
    n, s, size = args.messages, args.sessions, args.size
    backends = (([] if args.no_postgres and args.sqlite else [("PostgreSQL", False)])
                + ([("SQLite", True)] if args.sqlite else []))
    lines: list[str] = []

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for mode in ("smtp-one", "smtp-many"):
            if mode not in args.modes:
                continue
            many = mode == "smtp-many"
            label = "many per connection" if many else "one per connection"
            lines.append(f"SMTP, {label}: smtp-source -s {s} -m {n} -l {size}"
                         + (" -d" if many else ""))
            port = free_port()
            with server_process([python(), "benchmarks/bare_servers.py", "smtp", str(port)],
                                port) as proc:
                smtp_source(port, min(300, n), s, size, many)  # warm-up
                bare = bare_run("bare aiosmtpd, answers 250", proc.pid,
                                partial(smtp_source, port, n, s, size, many))
            lines.append("  " + bare.line())
            for backend, sqlite in backends:
                with intake_server(workdir, sqlite, None) as (proc, probe, env):
                    smtp_port = int(env["SMTP_PORT"])
                    before = probe.counts()
                    # Warm up with unique Message-IDs: smtp-source's repeat across runs,
                    # and the gateway rightly files a repeated message as a duplicate.
                    run_client(smtp_client(smtp_port, min(300, n), s, size))
                    probe.wait_drained(before)
                    run = intake_run(f"intake, {backend}", proc.pid, probe,
                                     partial(smtp_source, smtp_port, n, s, size, many))
                lines.append("  " + run.line())
                lines.append(ratios("bare", run, bare))
                if args.intake_alone:
                    alone = intake_alone(
                        workdir, sqlite, backend, None,
                        lambda env: run_client(smtp_client(int(env["SMTP_PORT"]),
                                                           min(300, n), s, size)),
                        lambda env, many=many: smtp_source(int(env["SMTP_PORT"]), n, s,
                                                           size, many))
                    lines.append("  " + alone.line())
                    lines.append(ratios("bare", alone, bare))

        if "smtp-corpus" in args.modes:
            mix = corpus_messages(args.corpus, n)
            warm = corpus_messages(args.corpus, min(300, n))
            size_kb = sum(map(len, mix)) / len(mix) / 1024
            lines.append(f"SMTP, corpus mix ({size_kb:.1f} KB average, cycled from"
                         f" {corpus_count(args.corpus)} messages), one per connection,"
                         f" {n} over {s} sessions")
            port = free_port()
            with server_process([python(), "benchmarks/bare_servers.py", "smtp", str(port)],
                                port) as proc:
                corpus_client(port, warm, s)
                bare = bare_run("bare aiosmtpd, answers 250", proc.pid,
                                partial(corpus_client, port, mix, s))
            lines.append("  " + bare.line())
            for backend, sqlite in backends:
                with intake_server(workdir, sqlite, None) as (proc, probe, env):
                    smtp_port = int(env["SMTP_PORT"])
                    before = probe.counts()
                    corpus_client(smtp_port, corpus_messages(args.corpus, min(300, n)), s)
                    probe.wait_drained(before)
                    run = intake_run(f"intake, {backend}", proc.pid, probe,
                                     partial(corpus_client, smtp_port, mix, s))
                lines.append("  " + run.line())
                lines.append(ratios("bare", run, bare))

        if "http" in args.modes:
            secs, conns = args.http_seconds, args.http_connections
            lines.append(f"HTTP JSON: wrk -t 2 -c {conns} -d {secs}s, POST /v1/requests"
                         f" of {len(body_json())} B")
            with scratch_database() as dsn:
                port = free_port()
                with server_process([python(), "benchmarks/bare_servers.py", "http-asyncpg",
                                     str(port), dsn], port) as proc:
                    wrk(port, 1, conns, workdir, None)  # warm-up
                    naive = bare_run("naive aiohttp + 1 asyncpg INSERT", proc.pid,
                                     partial(wrk, port, secs, conns, workdir, None),
                                     database=True)
            lines.append("  " + naive.line())
            for backend, sqlite in backends:
                with intake_server(workdir, sqlite, HTTP_CONFIG) as (proc, probe, env):
                    token = token_for(env)
                    http_port = int(env["HTTP_PORT"])
                    before = probe.counts()
                    wrk(http_port, 1, conns, workdir, token)  # warm-up
                    probe.wait_drained(before)
                    run = intake_run(f"intake, {backend}", proc.pid, probe,
                                     partial(wrk, http_port, secs, conns, workdir, token))
                lines.append("  " + run.line())
                lines.append(ratios("naive", run, naive))
                if args.intake_alone:
                    alone = http_alone(workdir, sqlite, backend, secs, conns)
                    lines.append("  " + alone.line())
                    lines.append(ratios("naive", alone, naive))

    print("\n".join(lines))


if __name__ == "__main__":
    main()
