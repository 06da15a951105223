"""Threat: many large mails at once exhaust memory while they arrive.

aiosmtpd keeps each message whole in memory until its final dot: twenty
concurrent 25 MB mails held about 1.3 GiB in the gateway before any of them
was stored. Each listener now has a budget of message data in flight
(`smtp.data_in_flight_bytes`): past it, sessions are not read until messages
ahead of them are stored, so what is held is bounded by configuration.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import Gateway
from gateway.config import Config
from gateway.data_budget import DataBudget
from storage.models import inbox_items
from tests.adversarial.hostile import SmtpSession
from tests.helpers import count_rows, make_config

KIB = 1024
BUDGET = 256 * KIB
MAILS = 8
MAIL_BYTES = 200 * KIB
PACKET_SLACK = 256 * KIB  # what a waiting session may have received in its last read


# --- the budget alone ------------------------------------------------------------------

def test_budget__the_first_session_always_moves() -> None:
    budget = DataBudget(100)
    assert budget.add("a", 80)
    assert not budget.add("b", 50)  # over: b waits
    assert budget.add("a", 500)  # a entered DATA first: never held, even far over
    assert budget.peak == 630


def test_budget__release_lets_the_waiting_go_on_in_order() -> None:
    budget = DataBudget(100)
    resumed: list[str] = []
    budget.add("a", 90)
    for name in ("b", "c"):
        assert not budget.add(name, 20)
        budget.hold(name, lambda name=name: resumed.append(name))  # type: ignore[misc]
    budget.release("a")  # b is first now: it goes on, and there is room for c too
    assert resumed == ["b", "c"]
    assert budget.held == 40
    assert budget.holds == 2


def test_budget__a_session_gone_while_held_is_forgotten() -> None:
    budget = DataBudget(10)
    resumed: list[str] = []
    budget.add("a", 10)
    assert not budget.add("b", 5)
    budget.hold("b", lambda: resumed.append("b"))
    budget.release("b")  # its connection was lost
    budget.release("a")
    assert resumed == []
    assert budget.held == 0


# --- a listener under many large mails at once ------------------------------------------

@pytest.fixture
def config(db_url: str) -> Config:
    return make_config(db_url, smtp={"data_in_flight_bytes": BUDGET},
                       intake={"max_message_bytes": 4 * MAIL_BYTES})


def _large_mail(n: int) -> bytes:
    head = (f"From: Big {n} <big{n}@example.com>\r\nTo: support@localhost\r\n"
            f"Subject: large {n}\r\nMessage-ID: <budget-{n}@example.com>\r\n\r\n").encode()
    line = b"x" * 76 + b"\r\n"
    return head + line * (MAIL_BYTES // len(line))


async def _send(port: int, n: int) -> str:
    session = await SmtpSession.open(port)
    try:
        await session.command(b"EHLO budget.example")
        replies = await session.send(f"<big{n}@example.com>".encode(), b"<support@localhost>",
                                     _large_mail(n))
    finally:
        await session.close()
    return replies[-1]


async def test_listener__concurrent_large_mails_are_held_within_the_budget(
        gateway: Gateway, engine: AsyncEngine) -> None:
    """Eight 200 KiB mails at once against a 256 KiB budget: every one is
    accepted and stored, some sessions waited, and the data held never passed
    the budget plus one message and a read per waiting session."""
    replies = await asyncio.wait_for(
        asyncio.gather(*(_send(gateway.smtp_port, n) for n in range(MAILS))), 60)
    assert all(reply.startswith("250") for reply in replies), replies
    assert await count_rows(engine, inbox_items) == MAILS
    budget = gateway.smtp.budget
    assert budget.holds > 0, "no session waited: the budget was never reached"
    assert budget.peak <= BUDGET + MAIL_BYTES + MAILS * PACKET_SLACK, budget.peak
    assert budget.held == 0  # everything stored was released
