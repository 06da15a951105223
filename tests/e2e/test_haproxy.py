"""Two `intake serve` hosts behind HAProxy, one PostgreSQL: one gateway is
SIGKILLed under SMTP and HTTP load, and nothing acknowledged is lost.

HAProxy (tests/haproxy.py) passes SMTP on in TCP mode with the PROXY protocol
(v2 to the first gateway, v1 to the second) and HTTP with X-Forwarded-For and
`/readyz` health checks. The clients connect to HAProxy from addresses of
their own (127.0.0.5 for SMTP, 127.0.0.6 for HTTP; HAProxy reaches the
gateways from 127.0.0.1), so what is stored shows whose address the gateways
took. After the kill every item acknowledged (250, 201) is in the inbox
exactly once under the reference it was acknowledged with, the other gateway
has gone on acknowledging, and HAProxy's checks have taken the dead one out.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import signal
import smtplib
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from storage.engine import create_engine
from storage.install_key import references
from storage.models import inbox_items
from tests.haproxy import HAProxy, require_haproxy
from tests.process import ServeProcess

pytestmark = pytest.mark.slow

SMTP_CLIENT = "127.0.0.5"
HTTP_CLIENT = "127.0.0.6"
SENDERS = 4           # per protocol
PER_SENDER = 150      # at most, per sender: the load is bounded in count ...
LOAD_SECONDS = 90.0   # ... and in time
KILL_AFTER = 40       # acknowledgements of each protocol before the kill
AFTER_KILL = 40       # and after it, before the load stops
RECONNECT_EVERY = 5   # SMTP messages per connection: new connections keep being balanced
TOKEN = re.compile(rb"haproxy-(\w+-\d+-\d+)")


def _routable(address: str) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return False
    return True


def _config(db_url: str) -> str:
    return f'''
[intake]
addresses = ["support@localhost"]
[database]
url = "{db_url}"
[smtp]
proxy_protocol_from = ["127.0.0.1/32"]
[http]
trusted_proxies = ["127.0.0.1/32"]
open_intake = true
[pipeline]
workers = 1
poll_seconds = 0.2
lease_seconds = 5
[process]
count = 1
'''


@dataclass
class Load:
    """What the clients sent and had acknowledged, with when."""

    stop: threading.Event = field(default_factory=threading.Event)
    killed_at: float | None = None
    # token -> (reference, monotonic time of the acknowledgement)
    smtp: dict[str, tuple[str, float]] = field(default_factory=dict)
    http: dict[str, tuple[str, float]] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)

    def after_kill(self, acks: dict[str, tuple[str, float]]) -> int:
        killed = self.killed_at
        return 0 if killed is None else sum(1 for _, at in list(acks.values()) if at > killed)


def _smtp_sender(port: int, n: int, load: Load, deadline: float) -> None:
    client: smtplib.SMTP | None = None
    for i in range(PER_SENDER):
        if load.stop.is_set() or time.monotonic() > deadline:
            break
        token = f"smtp-{n}-{i}"
        try:
            if client is None or i % RECONNECT_EVERY == 0:
                if client is not None:
                    client.close()
                client = smtplib.SMTP("127.0.0.1", port, timeout=10,
                                      source_address=(SMTP_CLIENT, 0))
                client.ehlo()
            data = (f"From: s{n}@example.com\r\nTo: support@localhost\r\n"
                    f"Subject: haproxy-{token}\r\nMessage-ID: <{token}@example.com>\r\n"
                    "\r\nbody\r\n").encode()
            client.mail(f"s{n}@example.com")
            client.rcpt("support@localhost")
            code, reply = client.data(data)
            if code == 250:
                load.smtp[token] = (reply.split()[-1].decode(), time.monotonic())
            else:
                load.failures[f"smtp {code}"] += 1
        except (OSError, smtplib.SMTPException) as exc:
            load.failures[f"smtp {type(exc).__name__}"] += 1  # its gateway died: not acked
            client = None
            time.sleep(0.05)
    if client is not None:
        client.close()


def _http_sender(port: int, n: int, load: Load, deadline: float) -> None:
    conn: http.client.HTTPConnection | None = None
    for i in range(PER_SENDER):
        if load.stop.is_set() or time.monotonic() > deadline:
            break
        token = f"http-{n}-{i}"
        body = json.dumps({"requester": {"email": f"h{n}@example.com"},
                           "subject": f"haproxy-{token}", "body": "help"})
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10,
                                                  source_address=(HTTP_CLIENT, 0))
            conn.request("POST", "/v1/requests", body=body,
                         headers={"Content-Type": "application/json"})
            answer = conn.getresponse()
            payload = answer.read()
            if answer.status == 201:
                load.http[token] = (json.loads(payload)["reference"], time.monotonic())
            else:
                load.failures[f"http {answer.status}"] += 1
        except (OSError, http.client.HTTPException) as exc:
            load.failures[f"http {type(exc).__name__}"] += 1
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.05)
    if conn is not None:
        conn.close()


def _run_load(proxy: HAProxy, load: Load) -> None:
    deadline = time.monotonic() + LOAD_SECONDS
    with ThreadPoolExecutor(2 * SENDERS) as pool:
        jobs = [pool.submit(_smtp_sender, proxy.smtp_port, n, load, deadline)
                for n in range(SENDERS)]
        jobs += [pool.submit(_http_sender, proxy.http_port, n, load, deadline)
                 for n in range(SENDERS)]
        for job in jobs:
            job.result()


async def _inbox(db_url: str) -> list[tuple[str, str, dict[str, object], bytes]]:
    """(reference, channel, meta, raw) of every inbox item."""
    engine = create_engine(db_url)
    try:
        refs = await references(engine)
        async with engine.connect() as conn:
            rows = (await conn.execute(select(inbox_items.c.id, inbox_items.c.channel,
                                              inbox_items.c.meta, inbox_items.c.raw))).all()
        return [(refs.reference_for(r.id), r.channel, r.meta, bytes(r.raw)) for r in rows]
    finally:
        await engine.dispose()


async def _wait(predicate: object, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout}s")
        await asyncio.sleep(0.05)


async def test_haproxy__gateway_killed_under_load_loses_nothing_acknowledged(
        pg_url: str, tmp_path: Path) -> None:
    binary = require_haproxy()
    for address in (SMTP_CLIENT, HTTP_CLIENT):
        if not _routable(address):
            pytest.skip(f"{address} is not routed to loopback here")
    config = tmp_path / "intake.toml"
    config.write_text(_config(pg_url))
    gateways = [ServeProcess(config, tmp_path / f"serve{n}.log") for n in (1, 2)]
    proxy = HAProxy(tmp_path, [(g.smtp_port, g.http_port) for g in gateways])
    load = Load()
    try:
        for gateway in gateways:
            gateway.start(timeout=60)
        proxy.start(binary)
        await asyncio.to_thread(proxy.wait_until, {
            (backend, server): "UP" for backend in ("smtp_gateways", "http_gateways")
            for server in ("gw1", "gw2")})

        running = asyncio.create_task(asyncio.to_thread(_run_load, proxy, load))
        await _wait(lambda: (len(load.smtp) >= KILL_AFTER and len(load.http) >= KILL_AFTER)
                    or running.done(), "acknowledgements before the kill", LOAD_SECONDS)
        load.killed_at = time.monotonic()
        gateways[0].kill()  # SIGKILL mid-load
        await _wait(lambda: (load.after_kill(load.smtp) >= AFTER_KILL
                             and load.after_kill(load.http) >= AFTER_KILL) or running.done(),
                    "acknowledgements after the kill", LOAD_SECONDS)
        # The health checks have taken the dead gateway out; the other is up.
        await asyncio.to_thread(proxy.wait_until, {
            ("http_gateways", "gw1"): "DOWN", ("smtp_gateways", "gw1"): "DOWN",
            ("http_gateways", "gw2"): "UP", ("smtp_gateways", "gw2"): "UP"})
        load.stop.set()
        await running
        gateways[1].signal(signal.SIGTERM)
        assert gateways[1].wait() == 0, gateways[1].log_text()
    finally:
        load.stop.set()
        proxy.stop()
        for gateway in gateways:
            gateway.kill()

    # Both gateways took load before the kill; the second went on after it.
    accepted = [g.log_text().count("accepted reference=") for g in gateways]
    assert all(accepted), (accepted, load.failures)
    assert load.after_kill(load.smtp) >= AFTER_KILL, (len(load.smtp), load.failures)
    assert load.after_kill(load.http) >= AFTER_KILL, (len(load.http), load.failures)

    inbox = await _inbox(pg_url)
    stored: dict[str, list[tuple[str, str, dict[str, object]]]] = {}
    for reference, channel, meta, raw in inbox:
        match = TOKEN.search(raw)
        assert match is not None, raw[:200]
        stored.setdefault(match[1].decode(), []).append((reference, channel, meta))
    # Every acknowledged item stored exactly once, under the reference it was given.
    for channel, acks in (("smtp", load.smtp), ("api", load.http)):
        for token, (reference, _) in acks.items():
            assert [(r, c) for r, c, _ in stored.get(token, [])] == [(reference, channel)], token
    assert all(len(items) == 1 for items in stored.values())  # nothing sent was stored twice
    # The client's own address, not HAProxy's: through the PROXY header and X-Forwarded-For.
    peers = {str(meta["peer"][0]) for _, channel, meta, _ in inbox  # type: ignore[index]
             if channel == "smtp"}
    remotes = {str(meta["remote"]) for _, channel, meta, _ in inbox if channel == "api"}
    assert peers == {SMTP_CLIENT}
    assert remotes == {HTTP_CLIENT}
