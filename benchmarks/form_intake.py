"""Web-form intake against bare aiohttp handlers, measured in one run.

    .venv/bin/python benchmarks/form_intake.py [--quick] [--posts N] [--connections M]
                                               [--uploads U] [--upload-mib S]

Defaults: N=1000 posts over M=8 connections, U=20 uploads of S=20 MiB;
--quick (a smoke run): N=60, U=4.

1. Posts per second: browser-style multipart/form-data posts to
   POST /v1/forms/{id} (name, email, subject, message and one 100 KiB file,
   a different file each post) over M keep-alive connections; only 303
   answers with a reference count, anything else is listed as an error.
   Against a bare aiohttp handler that reads every part whole into memory and
   answers 303 (given the posts three times over, to time it well), then
   `intake serve` on a scratch PostgreSQL database with its pipeline workers
   off and on. Prints rates, server CPU per post and the ratio gateway / bare,
   and checks that the pipeline stored two of the files byte for byte.
2. Memory under big uploads: U clients at once each upload one S MiB file.
   The server's RSS after a warm-up post, and its peak while the uploads run
   (VmHWM if it rose, and VmRSS sampled every 20 ms). Against a bare aiohttp
   handler doing `await request.read()` (the whole body in memory) under the
   same load, and one reading each part whole. Prints growth, growth per
   upload and the ratio gateway / bare request.read().

Clients are raw asyncio streams over prebuilt bytes; the big uploads stream
one shared buffer (each with its own first bytes, so each file is distinct)
instead of holding U copies. Every load is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from common import (
    ROOT,
    cpu_seconds,
    free_port,
    python,
    run_client,
    scratch_database,
    serve_command,
    server_process,
)

FORM = "bench"
BOUNDARY = "----IntakeBenchBoundary7MA4YWxkTrZu0gW"
MIB = 1024 * 1024
FILE_TYPE = "application/octet-stream"
REFERENCE = re.compile(r"[?&]reference=([A-Z0-9-]+)")
T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return cast(T, run_client(coroutine))  # common's runner: uvloop when installed


# --- request bytes -------------------------------------------------------------------


def fields(i: int) -> dict[str, str]:
    return {"name": f"Bench User {i}", "email": f"bench{i}@example.com",
            "subject": f"Benchmark form post {i}",
            "message": "The printer on the third floor jams on every job. " * 20}


def multipart_around(values: dict[str, str], filename: str, size: int) -> tuple[bytes, bytes]:
    """The multipart bytes before and after a file's content of `size` bytes."""
    head = b"".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        .encode() for name, value in values.items())
    head += (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="attachment"; '
             f'filename="{filename}"\r\nContent-Type: {FILE_TYPE}\r\n\r\n').encode()
    return head, f"\r\n--{BOUNDARY}--\r\n".encode()


def request_head(port: int, length: int) -> bytes:
    # What a browser sends for a same-origin post: Origin, no Accept: application/json.
    return (f"POST /v1/forms/{FORM} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Origin: http://127.0.0.1:{port}\r\nAccept: text/html\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


@dataclass
class Post:
    body: bytes
    sha256: str
    size: int

    def request(self, port: int) -> bytes:
        return request_head(port, len(self.body)) + self.body


def small_posts(count: int, file_size: int, first: int = 0) -> list[Post]:
    posts = []
    for i in range(first, first + count):
        content = os.urandom(file_size)
        head, tail = multipart_around(fields(i), f"scan-{i}.bin", file_size)
        posts.append(Post(head + content + tail, hashlib.sha256(content).hexdigest(), file_size))
    return posts


# --- a lean HTTP/1.1 client ------------------------------------------------------------


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """Status and headers of one response; its body is read and dropped."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("server closed the connection")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while size := int((await reader.readline()).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readline()
    return status, headers


@dataclass
class Tally:
    references: dict[int, str] = field(default_factory=dict)  # post index -> reference
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> int:
        return len(self.references)

    def record(self, index: int, status: int, headers: dict[str, str]) -> None:
        found = REFERENCE.search(headers.get("location", ""))
        if status == 303 and found:
            self.references[index] = found.group(1)
        else:
            self.errors[f"HTTP {status}"] += 1

    def errors_text(self) -> str:
        return ", ".join(f"{n} x {what}" for what, n in self.errors.most_common()) or "none"


async def post_forms(port: int, posts: list[Post], connections: int,
                     limit_seconds: float) -> Tally:
    """Send each post once over `connections` keep-alive connections, until time runs out."""
    tally = Tally()
    requests = [post.request(port) for post in posts]
    deadline = time.monotonic() + limit_seconds
    next_index = 0

    async def connection() -> None:
        nonlocal next_index
        stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while next_index < len(requests) and time.monotonic() < deadline:
            index = next_index
            next_index += 1
            try:
                async with asyncio.timeout(30):
                    if stream is None:
                        stream = await asyncio.open_connection("127.0.0.1", port)
                    stream[1].write(requests[index])
                    status, headers = await read_response(stream[0])
            except (OSError, EOFError, TimeoutError) as exc:
                tally.errors[type(exc).__name__] += 1
                if stream is not None:
                    stream[1].close()
                stream = None
                continue
            tally.record(index, status, headers)
            if headers.get("connection", "").lower() == "close":
                stream[1].close()
                stream = None
        if stream is not None:
            stream[1].close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return tally


async def upload_big(port: int, uploads: int, shared: bytes, limit_seconds: float) -> Tally:
    """`uploads` concurrent posts of one file each, streamed from the one shared buffer."""
    tally = Tally()
    view = memoryview(shared)
    chunk = 256 * 1024

    async def upload(i: int) -> None:
        # Distinct first bytes: each file has its own sha256, as real uploads would.
        unique = f"upload {i} {os.urandom(8).hex()}".encode().ljust(64)
        head, tail = multipart_around(fields(i), f"big-{i}.bin", len(shared))
        length = len(head) + len(shared) + len(tail)
        writer = None
        try:
            async with asyncio.timeout(limit_seconds):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                try:
                    writer.write(request_head(port, length) + head + unique)
                    for start in range(len(unique), len(shared), chunk):
                        writer.write(view[start:start + chunk])
                        await writer.drain()
                    writer.write(tail)
                except OSError:
                    pass  # a server refusing early (413) closes mid-body: read its answer
                status, headers = await read_response(reader)
            tally.record(i, status, headers)
        except (OSError, EOFError, TimeoutError) as exc:
            tally.errors[type(exc).__name__] += 1
        finally:
            if writer is not None:
                writer.close()

    await asyncio.gather(*(upload(i) for i in range(uploads)))
    return tally


# --- servers -----------------------------------------------------------------------------


def gateway_config(path: Path, workers: int, max_file_bytes: int) -> None:
    # Rate limits guard against runaway clients; these runs measure throughput and memory.
    # min_fill_seconds = 0 turns the fill-time token off, so a post needs no GET first.
    path.write_text(f"""\
[pipeline]
workers = {workers}

[http]
rate_limit_per_token = 1e9
rate_limit_per_address = 1e9
rate_limit_burst = 1e9

[[form]]
id = "{FORM}"
title = "Benchmark form"
queue = "general"
min_fill_seconds = 0
max_files = 1
max_file_bytes = {max_file_bytes}
max_body_bytes = {max_file_bytes + 2 * MIB}
file_types = ["{FILE_TYPE}"]
rate_limit_per_minute = 1e9

[[form.field]]
name = "name"
label = "Your name"

[[form.field]]
name = "email"
label = "Your email address"
kind = "email"
required = true

[[form.field]]
name = "subject"
label = "Subject"
required = true

[[form.field]]
name = "message"
label = "Message"
kind = "textarea"
required = true

[[form.field]]
name = "attachment"
label = "Attachment"
kind = "file"
""")


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    port: int
    admin_token: str
    log: Path

    def get_request(self, reference: str) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v1/requests/{reference}",
            headers={"Authorization": f"Bearer {self.admin_token}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())  # type: ignore[no-any-return]

    def wait_processed(self, references: list[str], limit_seconds: float) -> int:
        """How many of these requests the pipeline has processed, waiting at most the limit."""
        deadline = time.monotonic() + limit_seconds
        pending = list(references)
        while pending and time.monotonic() < deadline:
            try:
                if self.get_request(pending[0]).get("status") != "received":
                    pending.pop(0)
                    continue
            except OSError:
                pass  # 404 while still being processed, or a slow answer: look again
            time.sleep(0.1)
        return len(references) - len(pending)


@contextmanager
def gateway(tmp: Path, name: str, workers: int, max_file_bytes: int) -> Iterator[Gateway]:
    with scratch_database() as dsn:
        config = tmp / f"{name}.toml"
        gateway_config(config, workers, max_file_bytes)
        port = free_port()
        env = {"INTAKE_CONFIG": str(config),
               "INTAKE_DATABASE_URL": dsn.replace("postgresql://", "postgresql+asyncpg://"),
               "INTAKE_HTTP_LISTEN": f"127.0.0.1:{port}",
               "INTAKE_SMTP_LISTEN": f"127.0.0.1:{free_port()}"}
        token = subprocess.run(
            [python(), "-m", "gateway.cli", "tokens", "create", "--role", "admin"],
            env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True,
            check=True).stdout.strip().splitlines()[-1]
        log = tmp / f"{name}.log"
        with server_process(serve_command(), port, env, log) as proc:
            yield Gateway(proc, port, token, log)


@contextmanager
def bare(kind: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    with server_process([python(), "benchmarks/bare_servers.py", kind, str(port)],
                        port) as proc:
        yield proc, port


# --- figure 1: posts per second ------------------------------------------------------------


@dataclass
class Throughput:
    name: str
    tally: Tally
    seconds: float
    server_cpu: float

    @property
    def rate(self) -> float:
        return self.tally.ok / self.seconds

    def line(self) -> str:
        cpu = f"{1000 * self.server_cpu / self.tally.ok:6.2f} ms" if self.tally.ok else "    -"
        return (f"{self.name:<40} {self.rate:7.1f} posts/s   server CPU {cpu} each   "
                f"({self.tally.ok} x 303 in {self.seconds:.2f} s; errors: "
                f"{self.tally.errors_text()})")


def throughput(name: str, proc: subprocess.Popen[bytes], port: int, warm: list[Post],
               posts: list[Post], connections: int, limit: float) -> Throughput:
    run(post_forms(port, warm, connections, limit))
    cpu_before = cpu_seconds(proc.pid)
    started = time.perf_counter()
    tally = run(post_forms(port, posts, connections, limit))
    seconds = time.perf_counter() - started
    return Throughput(name, tally, seconds, cpu_seconds(proc.pid) - cpu_before)


def check_stored(gw: Gateway, tally: Tally, posts: list[Post]) -> str:
    """Whether the pipeline stored the first and last posts' files byte for byte (by sha256)."""
    indexes = sorted(tally.references)
    if not indexes:
        return "nothing to check: no post succeeded"
    picked = {indexes[0], indexes[-1]}
    if gw.wait_processed([tally.references[i] for i in picked], 60) < len(picked):
        return "not processed within 60 s"
    for i in picked:
        found = gw.get_request(tally.references[i])
        files = found["messages"][0]["attachments"]
        if [(f["sha256"], f["size"]) for f in files] != [(posts[i].sha256, posts[i].size)]:
            return f"{tally.references[i]}: stored files {files} differ from the post's"
    return f"ok ({len(picked)} checked: file sha256 and size as posted)"


# --- figure 2: memory under concurrent big uploads --------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values


class MemoryWatch:
    """The peak RSS of a process over a window: sampled VmRSS, and VmHWM if it rose."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        start = proc_status(pid)
        self.before = start["VmRSS"]
        self._hwm_before = start["VmHWM"]
        self._sampled = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sampled = max(self._sampled, proc_status(self.pid)["VmRSS"])

    def peak(self) -> int:
        """The peak so far (the watch goes on)."""
        hwm = proc_status(self.pid)["VmHWM"]
        # VmHWM counts since the process started: it says something about this window
        # only if it rose during it.
        return max(self._sampled, hwm if hwm > self._hwm_before else 0)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak()


@dataclass
class Memory:
    name: str
    before: int
    peak: int
    uploads: int
    tally: Tally
    after_pipeline: int | None = None

    @property
    def growth(self) -> int:
        return self.peak - self.before

    def line(self) -> str:
        text = (f"{self.name:<40} RSS before {self.before / MIB:6.1f} MiB, peak "
                f"{self.peak / MIB:6.1f} MiB, growth {self.growth / MIB:6.1f} MiB = "
                f"{self.growth / MIB / self.uploads:5.1f} MiB per upload   "
                f"({self.tally.ok}/{self.uploads} x 303; errors: {self.tally.errors_text()})")
        if self.after_pipeline is not None:
            text += (f"\n{'':<40} peak until the pipeline had processed them: "
                     f"{self.after_pipeline / MIB:6.1f} MiB (growth "
                     f"{(self.after_pipeline - self.before) / MIB:6.1f} MiB)")
        return text


def memory(name: str, proc: subprocess.Popen[bytes], port: int, warm: Post, uploads: int,
           shared: bytes, limit: float, gw: Gateway | None = None) -> Memory:
    warm_tally = run(post_forms(port, [warm], 1, 30))
    if not warm_tally.ok:
        print(f"  ({name}: the warm-up post failed: {warm_tally.errors_text()})")
    time.sleep(0.5)  # let the warm-up's work (commit, pipeline) settle before the baseline
    watch = MemoryWatch(proc.pid)
    tally = run(upload_big(port, uploads, shared, limit))
    result = Memory(name, watch.before, watch.peak(), uploads, tally)
    if gw is not None and tally.ok:
        gw.wait_processed(list(tally.references.values()), limit)
        result.after_pipeline = watch.peak()
    watch.stop()
    return result


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--posts", type=int, help="form posts per run (default 1000; quick 60)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--uploads", type=int, help="concurrent big uploads (default 20; quick 4)")
    parser.add_argument("--upload-mib", type=int, default=20)
    args = parser.parse_args()
    n = args.posts or (60 if args.quick else 1000)
    m = args.connections
    uploads = args.uploads or (4 if args.quick else 20)
    limit = 20.0 if args.quick else 60.0
    file_size = 100 * 1024
    big = args.upload_mib * MIB

    print(f"Web-form intake, POST /v1/forms/{FORM}, browser-style (303 See Other counts)")
    print(f"1. {n} multipart posts (4 text fields + one {file_size // 1024} KiB file each, "
          f"all files distinct) over {m} connections, at most {limit:.0f} s per run")
    print(f"2. {uploads} concurrent uploads of one {args.upload_mib} MiB file each: server RSS "
          "after a warm-up post, and its peak while they run")
    print("   (each server is its own process; gateway = `intake serve`, PostgreSQL)")
    print(flush=True)

    warm = small_posts(min(40, n), file_size, first=n)
    posts = small_posts(n, file_size)
    shared = os.urandom(big)
    runs: list[Throughput] = []
    mems: list[Memory] = []
    checks: list[str] = []

    with bare("form") as (proc, port):
        # The bare handler keeps nothing, so repeating the posts is the same work; three
        # rounds make its run long enough (a fraction of a second otherwise) to time well.
        runs.append(throughput("bare aiohttp, parts into memory, 303", proc, port, warm,
                               posts * 3, m, limit))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for workers, label in ((0, "pipeline off"), (2, "2 pipeline workers")):
            with gateway(tmp, f"posts-{workers}", workers, big + 2 * MIB) as gw:
                runs.append(throughput(f"intake serve, {label}", gw.proc, gw.port, warm, posts,
                                       m, limit))
                if workers:
                    checks.append(check_stored(gw, runs[-1].tally, posts))

        with bare("form-read") as (proc, port):
            mems.append(memory("bare aiohttp, await request.read()", proc, port, warm[0],
                               uploads, shared, 2 * limit))
        with bare("form") as (proc, port):
            mems.append(memory("bare aiohttp, parts into memory", proc, port, warm[0],
                               uploads, shared, 2 * limit))
        with gateway(tmp, "memory", 2, big + 2 * MIB) as gw:
            mems.append(memory("intake serve, 2 pipeline workers", gw.proc, gw.port, warm[0],
                               uploads, shared, 2 * limit, gw))

    print("1. Form posts per second")
    for run in runs:
        print("  " + run.line())
    base = runs[0]
    for run in runs[1:]:
        ratio = run.rate / base.rate if base.rate else float("nan")
        print(f"  ratio {run.name} / bare: {ratio:.2f}")
    for check in checks:
        print(f"  stored files check: {check}")
    print()
    print(f"2. Memory, {uploads} concurrent uploads of {args.upload_mib} MiB")
    for mem in mems:
        print("  " + mem.line())
    read_base, gw_mem = mems[0], mems[-1]
    if read_base.growth > 0:
        print(f"  ratio gateway growth / bare request.read() growth: "
              f"{gw_mem.growth / read_base.growth:.2f}")


if __name__ == "__main__":
    main()
