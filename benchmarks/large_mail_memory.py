"""Large mail: the gateway's memory and event loop while many big mails arrive.

    .venv/bin/python benchmarks/large_mail_memory.py [--mails N] [--mib S] [--sqlite]
                                                    [--root DIR] [--set SECTION.KEY=VALUE]...

Defaults: N=20 mails of S=25 MiB each (a base64 attachment), sent at once over
N SMTP connections to `intake serve` (2 pipeline workers) on a scratch
PostgreSQL database (--sqlite: a SQLite file). Prints, for the gateway
process and for its parsing processes (the pool children):

- RSS after start-up and a warm-up mail, and the peak while the mails are
  accepted and processed (VmRSS sampled every 20 ms, and VmHWM if it rose);
- the event loop's longest stall, seen from outside: GET /healthz every
  20 ms on a kept-alive connection, its slowest answer and its 99th percentile;
- how long until every mail had become a request.

`--root DIR` runs the server from another checkout (e.g. `git archive HEAD`
unpacked in /tmp) for a before/after figure in the same conditions; `--set`
changes a config key (e.g. `--set pipeline.parse_processes=0`). Every load is
bounded in count and in time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common import ROOT, free_port, listening, python, scratch_database, serve_command

MIB = 1024 * 1024
LIMIT_SECONDS = 300  # for the whole load; the run stops there whatever happened


def big_mail(i: int, attachment: bytes) -> bytes:
    """A mail with one base64 attachment (`attachment`, already encoded, CRLF
    lines), distinct by its headers and first line."""
    head = (f"From: Sender {i} <big{i}@example.com>\r\nTo: support@localhost\r\n"
            f"Subject: large mail {i}\r\nMessage-ID: <big-{i}-{time.time_ns()}@example.com>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
            "--b\r\nContent-Type: text/plain\r\n\r\nSee the attached file.\r\n"
            "--b\r\nContent-Type: application/octet-stream\r\n"
            "Content-Transfer-Encoding: base64\r\n"
            f'Content-Disposition: attachment; filename="file{i}.bin"\r\n\r\n').encode()
    first = base64.b64encode(f"mail {i:06d} ".encode().ljust(57, b".")) + b"\r\n"
    return head + first + attachment + b"\r\n--b--\r\n"


def attachment_lines(mib: float) -> bytes:
    """About `mib` MiB of base64 lines: 57 bytes of content per 78-byte line."""
    raw = os.urandom(int(mib * MIB * 57 / 78))
    encoded = base64.encodebytes(raw)  # 76-character lines
    return encoded.replace(b"\n", b"\r\n").rstrip(b"\r\n")


async def _reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await asyncio.wait_for(reader.readline(), 120)
        if not line:
            raise ConnectionError("server closed the connection")
        if line[3:4] != b"-":
            return line


async def send_mail(port: int, content: bytes) -> str:
    """One SMTP transaction; the reply to DATA (a reference after 'Accepted as')."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await _reply(reader)
        for command in (b"EHLO bench.example", b"MAIL FROM:<big@example.com>",
                        b"RCPT TO:<support@localhost>", b"DATA"):
            writer.write(command + b"\r\n")
            await _reply(reader)
        view = memoryview(content)
        for start in range(0, len(view), 256 * 1024):
            writer.write(view[start:start + 256 * 1024])
            await writer.drain()
        writer.write(b"\r\n.\r\n")
        reply = (await _reply(reader)).decode(errors="replace").strip()
        writer.write(b"QUIT\r\n")
        return reply
    finally:
        writer.close()


def process_rss(pid: int) -> dict[str, int]:
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    except OSError:
        return {"VmRSS": 0, "VmHWM": 0}
    return values


def children(pid: int) -> list[int]:
    """Every descendant of a process (the forkserver and the parsing processes)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            kids = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        found += [int(k) for k in kids]
        todo += [int(k) for k in kids]
    return found


class Watch:
    """Peak RSS of the gateway and of its descendants, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        start = process_rss(pid)
        self.before = start["VmRSS"]
        self._hwm_before = start["VmHWM"]
        self.children_before = sum(process_rss(c)["VmRSS"] for c in children(pid))
        self.peak = self.before
        self.children_peak = self.children_before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, process_rss(self.pid)["VmRSS"])
            self.children_peak = max(self.children_peak, sum(
                process_rss(c)["VmRSS"] for c in children(self.pid)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        hwm = process_rss(self.pid)["VmHWM"]
        if hwm > self._hwm_before:  # it rose in this window: a peak the samples missed
            self.peak = max(self.peak, hwm)


class Probe:
    """GET /healthz every 20 ms on one kept-alive connection, from a thread of its
    own (not the event loop sending the mails): each answer's delay."""

    def __init__(self, port: int) -> None:
        self.delays: list[float] = []
        self._stop = threading.Event()
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        reader = self._sock.makefile("rb")
        while not self._stop.wait(0.02):
            started = time.perf_counter()
            self._sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n")
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            reader.read(length)
            self.delays.append(time.perf_counter() - started)

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join()
        self._sock.close()
        return self.delays


def processed(http_port: int, token: str, references: list[str]) -> int:
    done = 0
    for reference in references:
        request = urllib.request.Request(
            f"http://127.0.0.1:{http_port}/v1/requests/{reference}",
            headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                if json.loads(answer.read()).get("status") != "received":
                    done += 1
        except OSError:
            pass
    return done


async def load(smtp_port: int, http_port: int, token: str, mails: list[bytes],
               wait: bool = True) -> tuple[list[str], float, list[float]]:
    probe = Probe(http_port)
    started = time.monotonic()
    replies = await asyncio.wait_for(
        asyncio.gather(*(send_mail(smtp_port, m) for m in mails), return_exceptions=True),
        LIMIT_SECONDS)
    references = [str(r).rsplit(" ", 1)[-1] for r in replies
                  if isinstance(r, str) and r.startswith("250")]
    while (wait and time.monotonic() - started < LIMIT_SECONDS
           and await asyncio.to_thread(processed, http_port, token, references)
           < len(references)):
        await asyncio.sleep(0.5)
    elapsed = time.monotonic() - started
    delays = probe.stop()
    failed = [str(r)[:80] for r in replies if not (isinstance(r, str) and r.startswith("250"))]
    if failed:
        print(f"  not accepted: {len(failed)}: {sorted(set(failed))[:3]}")
    return references, elapsed, delays


def config_text(db_url: str, mib: float, settings: list[str]) -> str:
    sections: dict[str, dict[str, str]] = {
        "intake": {"addresses": '["support@localhost"]',
                   "max_message_bytes": str(int((mib + 1) * MIB))},
        "database": {"url": json.dumps(db_url)},
        "pipeline": {"workers": "2"},
        "http": {"rate_limit_per_token": "1e9", "rate_limit_per_address": "1e9",
                 "rate_limit_burst": "1e9"},
    }
    for setting in settings:
        key, _, value = setting.partition("=")
        section, _, name = key.partition(".")
        sections.setdefault(section, {})[name] = value
    return "".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())
                   for name, values in sections.items())


@contextmanager
def serving(root: Path, env: dict[str, str], port: int, log: Path
            ) -> Iterator[subprocess.Popen[bytes]]:
    """`intake serve` run from `root` (its own directory first on the path)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(serve_command(), cwd=root,
                                env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            try:
                listening(port, proc, serve_command())
            except RuntimeError as error:
                raise RuntimeError(f"{error}: {log.read_text()[-2000:]}") from None
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def database(sqlite: bool, tmp: Path) -> Iterator[str]:
    if sqlite:
        yield f"sqlite+aiosqlite:///{tmp / 'intake.db'}"
        return
    with scratch_database() as dsn:
        yield dsn.replace("postgresql://", "postgresql+asyncpg://")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mails", type=int, default=20)
    parser.add_argument("--mib", type=float, default=25.0)
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--set", action="append", default=[], dest="settings")
    parser.add_argument("--log", type=Path, help="keep the server's log here")
    parser.add_argument("--intake-only", action="store_true",
                        help="pipeline.workers = 0: what accepting the mails costs alone")
    args = parser.parse_args()
    if args.intake_only:
        args.settings.append("pipeline.workers=0")
    encoded = attachment_lines(args.mib)
    mails = [big_mail(i, encoded) for i in range(args.mails)]
    size = len(mails[0])
    print(f"Large mail: {args.mails} mails of {size / MIB:.1f} MiB at once over "
          f"{args.mails} SMTP connections, {'SQLite' if args.sqlite else 'PostgreSQL'}, "
          f"server from {args.root}" + (f", {' '.join(args.settings)}" if args.settings else ""))
    with tempfile.TemporaryDirectory() as tmp_name, database(args.sqlite, Path(tmp_name)) as url:
        tmp = Path(tmp_name)
        config = tmp / "intake.toml"
        config.write_text(config_text(url, args.mib, args.settings))
        smtp_port, http_port = free_port(), free_port()
        env = {"INTAKE_CONFIG": str(config), "INTAKE_SMTP_LISTEN": f"127.0.0.1:{smtp_port}",
               "INTAKE_HTTP_LISTEN": f"127.0.0.1:{http_port}",
               "PYTHONPATH": str(args.root)}
        token = subprocess.run(
            [python(), "-m", "gateway.cli", "tokens", "create", "--role", "admin"],
            env={**os.environ, **env}, cwd=args.root, capture_output=True, text=True,
            check=True).stdout.strip().splitlines()[-1]
        try:
            with serving(args.root, env, smtp_port, tmp / "serve.log") as proc:
                warm = asyncio.run(load(smtp_port, http_port, token, [big_mail(-1, b"QUFB")]))
                assert warm[0], "the warm-up mail was not accepted"
                watch = Watch(proc.pid)
                references, elapsed, delays = asyncio.run(
                    load(smtp_port, http_port, token, mails, wait=not args.intake_only))
                watch.stop()
        finally:
            if args.log:
                shutil.copyfile(tmp / "serve.log", args.log)
        accepted = len(references)
        print(f"  accepted {accepted} of {args.mails}; " + (
            f"accepted after {elapsed:.1f} s" if args.intake_only
            else f"all processed after {elapsed:.1f} s"))
        print(f"  gateway process     RSS before {watch.before / MIB:7.1f} MiB, peak "
              f"{watch.peak / MIB:7.1f} MiB, growth {(watch.peak - watch.before) / MIB:7.1f} MiB"
              f" = {(watch.peak - watch.before) / MIB / max(accepted, 1):5.1f} MiB per mail")
        print(f"  parsing processes   RSS before {watch.children_before / MIB:7.1f} MiB, peak "
              f"{watch.children_peak / MIB:7.1f} MiB")
        if delays:
            ordered = sorted(delays)
            p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
            print(f"  event loop, GET /healthz every 20 ms: {len(delays)} answers, median "
                  f"{statistics.median(delays) * 1000:6.1f} ms, p99 {p99 * 1000:7.1f} ms, "
                  f"slowest {ordered[-1] * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
