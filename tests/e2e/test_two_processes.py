"""Two `intake serve` hosts of two worker processes each on one PostgreSQL
database, 500 requests: no acknowledgement, escalation or webhook happens twice."""

from __future__ import annotations

import asyncio
import signal
import smtplib
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.engine import create_engine
from storage.models import events, requests, sla_marks
from tests.e2e.test_events import SECRET, Receiver
from tests.e2e.test_outbound import Relay
from tests.helpers import wait_for
from tests.process import ServeProcess

REQUESTS = 500
SENDERS = 10


def config_text(db_url: str, relay_port: int, hook_url: str) -> str:
    return f'''
[intake]
addresses = ["support@localhost"]
[database]
url = "{db_url}"
[pipeline]
workers = 2
poll_seconds = 0.2
lease_seconds = 10
scheduler_seconds = 0.5
[outbound]
relay = "127.0.0.1:{relay_port}"
acknowledgements_per_hour = 1000
acknowledgements_per_domain_per_hour = 1000
acknowledgements_per_minute = 1000
backoff_initial_seconds = 0.1
backoff_max_seconds = 1
[[webhook]]
name = "crm"
url = "{hook_url}"
events = ["created", "escalated"]
secret = "{SECRET}"
allow_private = true
[[queue]]
name = "general"
[[sla]]
name = "fast"
first_response = "0.05m"
[[escalation]]
name = "unanswered"
when = {{ breached = "first_response" }}
then = {{ escalation = "+1", notify = true }}
'''


def send_many(ports: list[int], start: int, count: int) -> list[str]:
    references = []
    with smtplib.SMTP("127.0.0.1", ports[(start // (REQUESTS // SENDERS)) % len(ports)],
                      timeout=30) as client:
        client.ehlo()
        for i in range(start, start + count):
            sender = f"customer{i}@example.com"
            data = (f"From: <{sender}>\r\nTo: support@localhost\r\nSubject: request {i}\r\n"
                    f"Message-ID: <two-{i}@example.com>\r\n\r\nplease help\r\n").encode()
            client.mail(sender)
            client.rcpt("support@localhost")
            code, reply = client.data(data)
            assert code == 250, reply
            references.append(reply.split()[-1].decode())
    return references


@pytest.mark.slow
async def test_two_processes__nothing_happens_twice(pg_url: str, tmp_path: Path) -> None:
    relay, receiver = Relay(), Receiver()
    await relay.up()
    hook = await receiver.up()
    config = tmp_path / "intake.toml"
    config.write_text(config_text(pg_url, relay.port, hook))
    # Two hosts of two worker processes each, whatever the machine's cores.
    servers = [ServeProcess(config, tmp_path / f"serve{n}.log", args=("--processes", "2"))
               for n in (1, 2)]
    engine: AsyncEngine = create_engine(pg_url)
    try:
        for server in servers:
            server.start()
        ports = [s.smtp_port for s in servers]
        per = REQUESTS // SENDERS
        batches = await asyncio.gather(*(asyncio.to_thread(send_many, ports, n * per, per)
                                         for n in range(SENDERS)))
        references = [r for batch in batches for r in batch]
        assert len(set(references)) == REQUESTS

        async def everything_arrived() -> bool:
            async with engine.connect() as conn:
                escalated = (await conn.execute(
                    select(func.count()).select_from(sla_marks)
                    .where(sla_marks.c.mark == "first_response:breached"))).scalar_one()
            kinds = Counter(c["event"] for c in receiver.accepted)
            return (len(relay.received) >= REQUESTS and escalated >= REQUESTS
                    and kinds["created"] >= REQUESTS and kinds["escalated"] >= REQUESTS)

        await wait_for(everything_arrived, timeout=120, interval=0.5)
        await asyncio.sleep(2.0)  # anything duplicated would show up by now
    finally:
        for server in servers:
            server.signal(signal.SIGTERM)
        for server in servers:
            server.wait(60)
        await relay.down()
        await receiver.down()

    # Acknowledgements: one per request, to its customer.
    acked = Counter(str(m["In-Reply-To"]) for m in relay.received)
    assert len(relay.received) == REQUESTS and set(acked.values()) == {1}
    # Webhooks: each (event, request) accepted once, and every one verified.
    delivered = Counter((c["event"], c["body"]["reference"]) for c in receiver.accepted)
    assert set(delivered.values()) == {1}
    assert {ref for _, ref in delivered} == set(references)
    assert all(c["verified"] for c in receiver.calls)
    # Escalations: once per request on the timeline.
    async with engine.connect() as conn:
        per_request = (await conn.execute(
            select(events.c.request_id, func.count()).where(events.c.kind == "escalated")
            .group_by(events.c.request_id))).all()
        levels = set((await conn.execute(select(requests.c.escalation_level))).scalars())
    await engine.dispose()
    assert len(per_request) == REQUESTS and {n for _, n in per_request} == {1}
    assert levels == {1}
    # Both processes took mail (the senders were split between their ports) and
    # neither stopped with an error.
    for server in servers:
        assert "Traceback" not in server.log_text(), server.log_text()
