"""GET /metrics of a real `intake serve`, parsed by prometheus_client's own parser
after real SMTP and HTTP traffic: the counters equal what was sent and refused,
the database's figures what the database holds. With two worker processes each
serves its own port, and one of them (the lead) the database's figures."""

from __future__ import annotations

import asyncio
import json
import re
import smtplib
import socket
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from storage.engine import create_engine
from storage.tokens import create_token
from tests.helpers import auth, wait_for
from tests.process import ServeProcess, free_port

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _config(tmp_path: Path, db_url: str, metrics_port: int, *, enabled: bool = True) -> Path:
    path = tmp_path / "intake.toml"
    path.write_text("\n".join([
        "[intake]", 'addresses = ["support@localhost"]', "max_message_bytes = 20000",
        "[database]", f'url = "{db_url}"',
        "[smtp]", "max_connections_per_client = 2",
        "[pipeline]", "workers = 1", "poll_seconds = 0.2", "linger_seconds = 0.01",
        "[process]", "count = 1",  # --processes wins
        "[metrics]", f"enabled = {'true' if enabled else 'false'}",
        f'listen = "127.0.0.1:{metrics_port}"', "database_seconds = 0.2",
        "[[queue]]", 'name = "general"', "[[queue]]", 'name = "billing"',
    ]) + "\n")
    return path


async def _scrape(port: int) -> Samples:
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{port}/metrics") as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await answer.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):  # the library's parser
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _mail(n: int) -> bytes:
    return (f"From: Ann <ann@example.com>\r\nTo: support@localhost\r\nSubject: Printer {n}\r\n"
            f"Message-ID: <metrics-{n}@example.com>\r\n\r\nIt is on fire, {n}.\r\n").encode()


def _smtp_traffic(port: int) -> int:
    """3 mails accepted, 1 unknown recipient refused, 1 bare LF refused, 1 too large
    (SIZE= over max_message_bytes); the accepted ones' bytes."""
    sent = 0
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail("ann@example.com", ["support@localhost"], _mail(9) + b"x" * 30_000)
        assert refused.value.smtp_code == 552
        for n in range(3):
            smtp.sendmail("ann@example.com", ["support@localhost"], _mail(n))
            sent += len(_mail(n))
        code, _ = smtp.rcpt("nobody@elsewhere.example") if smtp.mail("ann@example.com") \
            else (0, b"")
        assert code == 550
        smtp.rset()
        smtp.mail("ann@example.com")
        assert smtp.rcpt("support@localhost")[0] == 250
        assert smtp.docmd("DATA")[0] == 354
        smtp.send(b"Subject: bare\nX-Evil: yes\r\n\r\nbody\r\n.\r\n")
        assert smtp.getreply()[0] == 550
    return sent


async def _http_traffic(base: str, token: str) -> int:
    """API: 2 accepted, 1 idempotent accepted then replayed, 1 unauthorised, 1
    invalid; their bytes (the replay's not counted: nothing new is stored)."""
    sent = 0
    async with aiohttp.ClientSession(base_url=base) as session:
        for n in range(2):
            body = json.dumps({"requester": {"email": f"bob{n}@example.com"},
                               "subject": f"VPN {n}", "body": "down"}).encode()
            async with session.post("/v1/requests", data=body, headers=auth(token) | {
                    "Content-Type": "application/json"}) as answer:
                assert answer.status == 201
            sent += len(body)
        body = json.dumps({"requester": {"email": "cy@example.com"}, "subject": "Once",
                           "body": "x"}).encode()
        for _ in range(2):
            async with session.post("/v1/requests", data=body, headers=auth(token) | {
                    "Content-Type": "application/json", "Idempotency-Key": "k-1"}) as answer:
                assert answer.status == 201
        sent += len(body)
        async with session.post("/v1/requests", data=body,
                                headers={"Content-Type": "application/json"}) as answer:
            assert answer.status == 401
        async with session.post("/v1/requests", data=b'{"subject": 1}', headers=auth(token) | {
                "Content-Type": "application/json"}) as answer:
            assert answer.status == 422
    return sent


async def _token(db_url: str) -> str:
    engine = create_engine(db_url)
    try:
        return (await create_token(engine, name="metrics test", role="admin", queues=[]))[1]
    finally:
        await engine.dispose()


async def test_metrics__counters_equal_the_traffic_sent_and_refused(
        db_url: str, tmp_path: Path) -> None:
    port = free_port()
    server = ServeProcess(_config(tmp_path, db_url, port), tmp_path / "serve.log")
    token = await _token(db_url)
    server.start()
    try:
        # The ready line comes once every listener is up, a moment after SMTP's.
        async def announced() -> bool:
            return f"metrics http://127.0.0.1:{port}/metrics" in server.log_text()

        await wait_for(announced, timeout=30)
        smtp_bytes = await asyncio.to_thread(_smtp_traffic, server.smtp_port)
        api_bytes = await _http_traffic(f"http://127.0.0.1:{server.http_port}", token)

        async def stored() -> Samples | None:
            samples = await _scrape(port)
            done = (_value(samples, "intake_pipeline_items_processed_total") == 6
                    and _value(samples, "intake_queue_open_requests", queue="general") == 6)
            return samples if done else None

        samples = await wait_for(stored, timeout=30, interval=0.3)
        received = "intake_received_total"
        expected = {
            ("smtp", "accepted", "new"): 3, ("smtp", "refused", "unknown_recipient"): 1,
            ("smtp", "refused", "bare_line_ending"): 1, ("smtp", "refused", "too_large"): 1,
            ("api", "accepted", "new"): 3,
            ("api", "accepted", "replayed"): 1, ("api", "refused", "unauthorised"): 1,
            ("api", "refused", "invalid"): 1,
        }
        counted = {(labels["channel"], labels["outcome"], labels["reason"]): value
                   for (name, pairs), value in samples.items() if name == received
                   for labels in [dict(pairs)] if value}
        assert counted == expected
        assert _value(samples, "intake_received_bytes_total", channel="smtp") == smtp_bytes
        assert _value(samples, "intake_received_bytes_total", channel="api") == api_bytes
        assert _value(samples, "intake_http_request_duration_seconds_count",
                      route="/v1/requests", status_class="2xx") == 4
        assert _value(samples, "intake_http_request_duration_seconds_count",
                      route="/v1/requests", status_class="4xx") == 2
        assert _value(samples, "intake_pipeline_batch_items_sum") == 6
        # The database's figures: all stored, nothing pending or dead.
        assert _value(samples, "intake_metrics_database_lead") == 1
        assert _value(samples, "intake_pipeline_items", state="pending") == 0
        assert _value(samples, "intake_pipeline_items", state="dead") == 0
        assert _value(samples, "intake_queue_unclaimed_requests", queue="general") == 6
        assert _value(samples, "intake_queue_open_requests", queue="billing") == 0
        # The library's process collector.
        assert _value(samples, "process_cpu_seconds_total") > 0

        # Sessions open, and a connection refused by max_connections_per_client = 2
        # (ServeProcess's start-up probe, which closed at once, holds none).
        refused = _value(await _scrape(port), "intake_connections_refused_total",
                         listener="smtp", limit="per_client")
        held: list[socket.socket] = []
        try:
            while True:
                conn = socket.create_connection(("127.0.0.1", server.smtp_port))
                greeting = conn.recv(100)
                if greeting.startswith(b"421 4.7.0"):
                    conn.close()
                    break
                assert greeting.startswith(b"220") and len(held) < 3
                held.append(conn)
            assert len(held) == 2
            samples = await _scrape(port)
            assert _value(samples, "intake_smtp_sessions_open", listener="smtp") == 2
            assert _value(samples, "intake_connections_refused_total", listener="smtp",
                          limit="per_client") == refused + 1
        finally:
            for conn in held:
                conn.close()
    finally:
        server.kill()


async def test_metrics__posts_refused_by_the_rate_limit_are_counted(
        db_url: str, tmp_path: Path) -> None:
    """A 429 comes from the rate limit before any handler: still a refused post."""
    port = free_port()
    config = _config(tmp_path, db_url, port)
    config.write_text(config.read_text()
                      + "[http]\nrate_limit_per_address = 0.01\nrate_limit_burst = 2\n")
    server = ServeProcess(config, tmp_path / "serve.log")
    token = await _token(db_url)
    server.start()
    try:
        statuses = []
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{server.http_port}") as s:
            for n in range(5):
                body = {"requester": {"email": f"rl{n}@example.com"}, "subject": "x", "body": "y"}
                async with s.post("/v1/requests", json=body, headers=auth(token)) as answer:
                    statuses.append(answer.status)
        assert statuses == [201, 201, 429, 429, 429]
        samples = await _scrape(port)
        assert _value(samples, "intake_received_total", channel="api", outcome="refused",
                      reason="rate_limited") == 3
        assert _value(samples, "intake_received_total", channel="api", outcome="accepted",
                      reason="new") == 2
    finally:
        server.kill()


async def test_metrics__disabled_counts_nothing_and_serves_nothing(
        db_url: str, tmp_path: Path) -> None:
    port = free_port()
    server = ServeProcess(_config(tmp_path, db_url, port, enabled=False),
                          tmp_path / "serve.log")
    server.start()
    try:
        await asyncio.to_thread(_smtp_traffic, server.smtp_port)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()

        async def ready() -> bool:  # the line that would name the metrics listener
            return re.search(r"intake (worker \d+ )?ready", server.log_text()) is not None

        await wait_for(ready, timeout=30)
        assert "metrics http" not in server.log_text()
    finally:
        server.kill()


@pytest.mark.slow
async def test_metrics__each_worker_process_its_own_target(pg_url: str, tmp_path: Path) -> None:
    """`--processes 2`: worker N on port + N - 1; each counts what it accepted, the
    sum over both is what was sent; one of them exports the database's figures."""
    base = free_port()
    while True:  # two free ports in a row
        try:
            socket.create_server(("127.0.0.1", base + 1)).close()
            break
        except OSError:
            base = free_port()
    server = ServeProcess(_config(tmp_path, pg_url, base), tmp_path / "serve.log",
                          args=("--processes", "2"))
    server.start(timeout=60)
    try:
        async def both_ready() -> bool:
            return len(re.findall(r"intake worker \d ready", server.log_text())) == 2

        await wait_for(both_ready, timeout=60, interval=0.2)
        for n in range(4):  # a connection each: the kernel spreads them over the workers
            await asyncio.to_thread(_send_one, server.smtp_port, n)
        scrapes = [await _scrape(base), await _scrape(base + 1)]
        accepted = [_value(s, "intake_received_total", channel="smtp", outcome="accepted",
                           reason="new") for s in scrapes]
        assert sum(accepted) == 4
        assert sorted(_value(s, "intake_metrics_database_lead") for s in scrapes) == [0, 1]
        lead = scrapes[0] if _value(scrapes[0], "intake_metrics_database_lead") else scrapes[1]
        assert ("intake_pipeline_lag_seconds", ()) in lead
        follower = scrapes[1] if lead is scrapes[0] else scrapes[0]
        assert ("intake_pipeline_lag_seconds", ()) not in follower
    finally:
        server.kill()


def _send_one(port: int, n: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.sendmail("ann@example.com", ["support@localhost"], _mail(100 + n))
