"""Acknowledgement limits that hold (issue 12, defect 5).

The limit is counted on the address each acknowledgement actually goes to
(an email's Reply-To, not its From), per mailbox whatever its spelling (case,
`+tag`, an IDN domain in either form), per domain of the recipient, and for
everything together per minute: a loop and mail-bomb guard. What is held back
is on the request's timeline with the reason. Run on both databases, in
batches and across transactions, and with two pipelines at once.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.lifecycle import counted_recipient
from gateway.config import Config
from gateway.pipeline.worker import Pipeline
from storage.inbox import NewItem, accept_many
from storage.models import events, outbox
from tests.helpers import make_config


def _mail(n: int, sender: str, reply_to: str | None = None) -> NewItem:
    raw = (f"From: {sender}\r\nTo: support@localhost\r\nSubject: help {n}\r\n"
           + (f"Reply-To: {reply_to}\r\n" if reply_to else "")
           + f"Message-ID: <lim{n}@example.net>\r\n\r\nPlease help.\r\n").encode()
    return NewItem("smtp", raw, {"rcpt_tos": ["support@localhost"]})


def _api(email: str) -> NewItem:
    body = {"requester": {"email": email}, "subject": "s", "body": "b"}
    return NewItem("api", json.dumps(body).encode())


def _config(db_url: str, *, batch: int = 3, **outbound: Any) -> Config:
    return make_config(db_url, outbound=outbound, pipeline={
        "workers": 1, "batch_size": batch, "backoff_initial_seconds": 0.01,
        "backoff_max_seconds": 0.05, "max_attempts": 3})


async def _sent_to(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        payloads = (await conn.execute(select(outbox.c.payload).where(outbox.c.kind == "email")
                                       .order_by(outbox.c.id))).scalars().all()
    return [t["address"] for p in payloads for t in p["message"]["to"]]


async def _skipped(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        data = (await conn.execute(select(events.c.data)
                                   .where(events.c.kind == "acknowledgement_skipped")
                                   .order_by(events.c.id))).scalars().all()
    return [d["reason"] for d in data]


async def test_acknowledgement_limit__rotating_from_with_a_fixed_reply_to(db_url: str,
                                                                         engine: AsyncEngine
                                                                         ) -> None:
    # Ten senders, one victim, spelled every way that reaches the same mailbox.
    spellings = ["victim@victim.example", "Victim@VICTIM.example", "victim+a@victim.example",
                 "Victim <victim+b@victim.example>", "v.ic.tim@victim.example",
                 "ｖｉｃｔｉｍ@victim.example"]
    items = [_mail(n, f"attacker{n}@rot{n}.example", spellings[n % len(spellings)])
             for n in range(10)]
    items += [_api("VICTIM+api@victim.example"), _api("victim@victim.example")]
    await accept_many(engine, items)
    pipe = Pipeline(engine=engine, config=_config(db_url, acknowledgements_per_hour=3))
    assert await pipe.drain() == len(items)
    sent = await _sent_to(engine)
    assert len(sent) == 3, sent  # not 10 of 10 (nor 12)
    assert all(counted_recipient(s).mailbox == "victim@victim.example" for s in sent)
    reasons = await _skipped(engine)
    assert len(reasons) == len(items) - 3
    assert all("victim@victim.example" in r and "limit 3" in r for r in reasons)


async def test_acknowledgement_limit__many_addresses_at_one_domain(db_url: str,
                                                                  engine: AsyncEngine) -> None:
    items = [_mail(n, f"user{n}@target.example") for n in range(12)]
    items += [_mail(100 + n, f"other{n}@elsewhere.example") for n in range(3)]
    # The domain as Unicode and as A-labels is one domain.
    items += [_mail(200, "ann@bücher.example"), _mail(201, "bob@xn--bcher-kva.example"),
              _mail(202, "cat@BÜCHER.example")]
    await accept_many(engine, items)
    pipe = Pipeline(engine=engine, config=_config(
        db_url, batch=4, acknowledgements_per_domain_per_hour=5))
    assert await pipe.drain() == len(items)
    sent = await _sent_to(engine)
    by_domain: dict[str, int] = {}
    for address in sent:
        by_domain[address.rpartition("@")[2]] = by_domain.get(address.rpartition("@")[2], 0) + 1
    assert by_domain == {"target.example": 5, "elsewhere.example": 3,
                         "xn--bcher-kva.example": 3}
    reasons = await _skipped(engine)
    assert len(reasons) == 7
    assert all("target.example" in r and "limit 5" in r for r in reasons)


async def test_acknowledgement_limit__a_burst_over_the_global_limit_per_minute(
        db_url: str, engine: AsyncEngine) -> None:
    config = _config(db_url, batch=7, acknowledgements_per_minute=20)
    await accept_many(engine, [_mail(n, f"user@d{n}.example") for n in range(25)])
    pipe = Pipeline(engine=engine, config=config)
    assert await pipe.drain() == 25
    assert len(await _sent_to(engine)) == 20
    reasons = await _skipped(engine)
    assert len(reasons) == 5 and all("minute" in r and "limit 20" in r for r in reasons)
    # A minute later the guard lets acknowledgements through again.
    async with engine.begin() as conn:
        await conn.execute(update(outbox).values(created_at=outbox.c.created_at
                                                 - timedelta(minutes=2)))
    await accept_many(engine, [_mail(100 + n, f"user@e{n}.example") for n in range(3)])
    assert await pipe.drain() == 3
    assert len(await _sent_to(engine)) == 23


async def test_acknowledgement_limit__holds_with_pipelines_at_once(
        db_url: str, engine: AsyncEngine) -> None:
    items = [_mail(n, f"attacker{n}@rot{n}.example", "victim@victim.example")
             for n in range(40)]
    await accept_many(engine, items)
    config = _config(db_url, batch=2, acknowledgements_per_hour=4)
    pipes = [Pipeline(engine=engine, config=config) for _ in range(4)]
    done = await asyncio.wait_for(asyncio.gather(*(p.drain() for p in pipes)), timeout=60)
    assert sum(done) == len(items)
    assert len(await _sent_to(engine)) == 4
    assert len(await _skipped(engine)) == 36


def test_acknowledgement_limits__safe_defaults() -> None:
    outbound = make_config("sqlite+aiosqlite:///unused.db").outbound
    assert outbound.acknowledgements_per_hour == 5
    assert 0 < outbound.acknowledgements_per_domain_per_hour <= 1000
    assert 0 < outbound.acknowledgements_per_minute <= 1000
