"""A good sender's accepted mail per second, without and with a connection flood.

    .venv/bin/python benchmarks/connection_flood.py [--seconds S] [--postgres]

Starts `intake serve` (SQLite, or a scratch PostgreSQL database with
--postgres) with its default caps, held to the common 1,024 descriptors
(prlimit, Linux). The good client (127.0.0.1) sends mail over 4 sessions for S
seconds; then an attacker process (127.0.0.2) opens 2,000 idle SMTP and 2,000
idle HTTP connections, opens again every one refused (at most --churn a second
per listener) and keeps 20 slow-header HTTP and 20 silent SMTP clients going,
while the good client sends for S seconds more. Printed: both rates, the good
client's worst SMTP round trip, a /healthz and a POST /v1/requests timed
during the flood, and what the server counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import resource
import tempfile
import time
import urllib.request
from pathlib import Path

from common import (
    free_port,
    message,
    run_client,
    scratch_database,
    serve_command,
    server_process,
)

GOOD, ATTACKER = "127.0.0.1", "127.0.0.2"
SESSIONS = 4
FLOOD = 2000
SLOW = 20


async def _reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed by the server")
        if line[3:4] != b"-":
            return line


async def good_sender(port: int, seconds: float) -> tuple[int, int, float]:
    """Mail for `seconds` over SESSIONS sessions: accepted, refused or failed (a
    session that could not go on), worst round trip."""
    deadline = time.monotonic() + seconds
    accepted = refused = 0
    worst = 0.0

    async def session(n: int) -> None:
        nonlocal refused
        try:
            await asyncio.wait_for(mail(n), deadline + 10 - time.monotonic())
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            refused += 1

    async def mail(n: int) -> None:
        nonlocal accepted, refused, worst
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(GOOD, 0))
        await _reply(reader)
        writer.write(b"EHLO good.example\r\n")
        await _reply(reader)
        i = 0
        while time.monotonic() < deadline:
            started = time.monotonic()
            writer.write(b"MAIL FROM:<good@example.com>\r\nRCPT TO:<support@localhost>\r\nDATA\r\n")
            for _ in range(3):
                await _reply(reader)
            writer.write(message(n * 1_000_000 + i, 2000) + b".\r\n")
            ok = (await _reply(reader)).startswith(b"250")
            accepted, refused = accepted + ok, refused + (not ok)
            worst = max(worst, time.monotonic() - started)
            i += 1
        writer.close()

    await asyncio.gather(*(session(n) for n in range(SESSIONS)))
    return accepted, refused, worst


def attacker(smtp_port: int, http_port: int, seconds: float, churn: int) -> None:
    """The flood, in its own process, for `seconds`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    run_client(_attack(smtp_port, http_port, seconds, churn))


async def _attack(smtp_port: int, http_port: int, seconds: float, churn: int) -> int:
    deadline = time.monotonic() + seconds

    async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            return await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, local_addr=(ATTACKER, 0)), 5
            )
        except (OSError, TimeoutError):
            return None

    async def hold(port: int) -> None:
        """One idle connection, held until the server closes it or the flood ends."""
        stream = await connect(port)
        if stream is None:
            return
        reader, writer = stream
        try:
            while await asyncio.wait_for(reader.read(4096), deadline - time.monotonic()):
                pass
        except (TimeoutError, ConnectionError, ValueError):
            pass
        writer.close()

    async def idle(port: int, count: int) -> None:
        tasks = []
        for _ in range(0, count, 100):
            batch = [asyncio.create_task(hold(port)) for _ in range(100)]
            tasks += batch
            await asyncio.sleep(0.05)
        while time.monotonic() < deadline:  # and more, as the refused ones close
            tasks += [asyncio.create_task(hold(port)) for _ in range(max(1, churn // 10))]
            await asyncio.sleep(0.1)
        await asyncio.gather(*tasks)

    async def slow_header() -> None:
        while time.monotonic() < deadline:
            stream = await connect(http_port)
            if stream is None:
                await asyncio.sleep(0.5)
                continue
            reader, writer = stream
            writer.write(b"GET /healthz HTTP/1.1\r\n")
            try:
                while time.monotonic() < deadline and not writer.is_closing():
                    writer.write(b"X-Slow: a\r\n")  # a header line a second
                    with contextlib.suppress(TimeoutError):
                        if not await asyncio.wait_for(reader.read(1024), 1.0):
                            break  # cut
            except (ConnectionError, RuntimeError):
                pass
            writer.close()

    async def silent_smtp() -> None:
        while time.monotonic() < deadline:
            stream = await connect(smtp_port)
            if stream is None:
                await asyncio.sleep(0.5)
                continue
            reader, writer = stream
            try:
                while await asyncio.wait_for(reader.readline(), deadline - time.monotonic()):
                    pass  # the greeting, then 421 when its idle timeout cuts it
            except (TimeoutError, ConnectionError, ValueError):
                pass
            writer.close()

    await asyncio.gather(
        idle(smtp_port, FLOOD),
        idle(http_port, FLOOD),
        *(slow_header() for _ in range(SLOW)),
        *(silent_smtp() for _ in range(SLOW)),
    )
    return 0


def timed_http(url: str, body: bytes | None = None) -> tuple[int, float]:
    """Status (0: no answer within 10 s) and seconds."""
    started = time.monotonic()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - 127.0.0.1
            answer.read()
            return answer.status, time.monotonic() - started
    except OSError:
        return 0, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--churn",
        type=int,
        default=200,
        help="refused connections opened again per second and listener",
    )
    parser.add_argument("--files", type=int, default=1024, help="the server's descriptor limit")
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()

    database = scratch_database() if args.postgres else contextlib.nullcontext("")
    with tempfile.TemporaryDirectory() as tmp, database as dsn:
        url = (
            dsn.replace("postgresql://", "postgresql+asyncpg://")
            if args.postgres
            else f"sqlite+aiosqlite:///{tmp}/bench.db"
        )
        config = Path(tmp) / "bench.toml"
        config.write_text(
            '[intake]\naddresses = ["support@localhost"]\n'
            "[http]\nopen_intake = true\n[pipeline]\nworkers = 1\n"
        )
        smtp_port, http_port = free_port(), free_port()
        env = {
            "INTAKE_CONFIG": str(config),
            "INTAKE_DATABASE_URL": url,
            "INTAKE_SMTP_LISTEN": f"127.0.0.1:{smtp_port}",
            "INTAKE_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        }
        log = Path(tmp) / "serve.log"
        with server_process(serve_command(), smtp_port, env, log) as proc:
            resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (args.files, args.files))
            run_client(good_sender(smtp_port, 2.0))  # warm-up
            quiet = run_client(good_sender(smtp_port, args.seconds))

            flood = multiprocessing.Process(
                target=attacker, args=(smtp_port, http_port, args.seconds + 8.0, args.churn)
            )
            flood.start()
            time.sleep(6.0)  # the 4,000 idle connections opened, the churn going
            base = f"http://127.0.0.1:{http_port}"
            health = timed_http(base + "/healthz")
            created = timed_http(
                base + "/v1/requests",
                json.dumps(
                    {
                        "requester": {"email": "bob@example.com"},
                        "subject": "VPN down",
                        "body": "Cannot connect.",
                    }
                ).encode(),
            )
            flooded = run_client(good_sender(smtp_port, args.seconds))
            flood.join()
        served = log.read_text(errors="replace")

    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"Good sender, {SESSIONS} SMTP sessions, {backend}, server held to "
        f"{args.files} files, {args.seconds:.0f} s each:"
    )
    for name, (ok, refused, worst) in (("no flood", quiet), ("flood", flooded)):
        print(
            f"  {name:<9} {ok / args.seconds:8.0f} accepted/s  ({ok} accepted, "
            f"{refused} refused or failed, worst round trip {1000 * worst:.0f} ms)"
        )
    print(
        f"  during the flood: GET /healthz {health[0]} in {1000 * health[1]:.0f} ms, "
        f"POST /v1/requests {created[0]} in {1000 * created[1]:.0f} ms"
    )
    print(
        f"  flood: {FLOOD} idle SMTP and {FLOOD} idle HTTP connections from {ATTACKER}, "
        f"refused ones opened again ({args.churn}/s each), {SLOW} slow-header HTTP and "
        f"{SLOW} silent SMTP clients"
    )
    refusals = [line for line in served.splitlines() if "intake.connections" in line]
    print(f"  server log: {len(refusals)} connection warnings (throttled), e.g.")
    for line in refusals[:4]:
        print("    " + line.split(" intake.connections ", 1)[-1][:150])


if __name__ == "__main__":
    main()
