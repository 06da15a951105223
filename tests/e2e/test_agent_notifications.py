"""Agents hear of new work, escalations and breaches by email: through the
outbox, to the queue's agents and `notify` addresses, held through quiet hours
and gathered into one mail per recipient (a digest)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import start, stop
from gateway.config.sections import QueueSection
from gateway.delivery.notifications import due, from_event, notices, quiet_until
from storage.agents import create_agent
from storage.engine import transaction, utcnow
from storage.notifications import KIND, Recipient, enqueue_notices, queue_agents
from storage.outbox import rows_for
from tests.e2e.test_outbound_identity import FAST, Relay, received, relay, send
from tests.helpers import make_config, wait_for

__all__ = ["relay"]  # the relay fixture, shared

NOTIFYING = {"name": "general", "notify_on": ["new_request", "escalated", "sla_breached"],
             "notify": ["lead@desk.example"]}


async def test_notifications__new_work_mails_the_queues_agents(
        db_url: str, relay: Relay, engine: AsyncEngine) -> None:
    await create_agent(engine, name="Bea Agent", email="bea@desk.example", queues=["general"])
    await create_agent(engine, name="Cy Other", email="cy@desk.example", queues=["billing"])
    await create_agent(engine, name="Di Gone", email="di@desk.example", queues=["general"],
                       active=False)
    await create_agent(engine, name="Ed Everywhere", email="ed@desk.example", queues=[])
    config = make_config(db_url, outbound={"relay": f"127.0.0.1:{relay.port}", **FAST},
                         queue=[NOTIFYING, {"name": "billing"}],
                         rule=[{"name": "invoices", "when": {"subject": {"contains": "invoice"}},
                                "then": {"queue": "billing"}}])
    gateway = await start(config)
    try:
        ref = await asyncio.to_thread(send, gateway, subject="Printer on fire",
                                      message_id="n1@example.com")
        await received(relay, 4)  # the acknowledgement, Bea, Ed (every queue), the lead
        # A queue that does not ask for notifications: only the acknowledgement.
        await asyncio.to_thread(send, gateway, subject="invoice", message_id="n2@example.com")
        await received(relay, 5)
        await asyncio.sleep(0.5)
    finally:
        await stop(gateway, grace=3)
    told = {m["To"].addresses[0].addr_spec: m for _, _, m in relay.received
            if m["Auto-Submitted"] == "auto-generated"}
    assert sorted(told) == ["bea@desk.example", "ed@desk.example", "lead@desk.example"]
    bea = told["bea@desk.example"]
    assert bea["Subject"] == f"New request: {ref} Printer on fire"
    body = bea.get_content()
    assert body.startswith("Hello Bea Agent,")
    assert f"/v1/requests/{ref}" in body and "in general (P3)" in body
    assert len(relay.received) == 5
    # Each went through the outbox as a row of its own, delivered.
    rows = [r for r in await rows_for(engine) if r["kind"] == KIND]
    assert sorted(r["recipient"] for r in rows) == [
        "bea@desk.example", "ed@desk.example", "lead@desk.example"]
    assert {r["state"] for r in rows} == {"done"}


async def test_notifications__pending_notices_of_one_recipient_go_in_one_mail(
        db_url: str, relay: Relay, engine: AsyncEngine) -> None:
    config = make_config(db_url, outbound={"relay": f"127.0.0.1:{relay.port}", **FAST},
                         queue=[NOTIFYING])
    now = utcnow()
    # One due now, two due in an hour (a digest window): all three go together.
    found = [notice for index, kind in enumerate(("new_request", "escalated", "sla_breached"))
             for notice in notices(config, {}, kind=kind, queue="general",
                                   reference=f"REF-{index}", at=now, key=f"t{index}",
                                   subject=f"Subject {index}")]
    found = [n if n.payload["event"]["reference"] == "REF-0" else
             type(n)(n.to, n.name, n.payload, now + timedelta(hours=1), n.dedupe_key)
             for n in found]
    async with transaction(engine) as conn:
        await enqueue_notices(conn, found, None)
    gateway = await start(config)
    try:
        await received(relay, 1)

        async def all_done() -> bool:
            rows = [r for r in await rows_for(engine) if r["kind"] == KIND]
            return all(r["state"] == "done" for r in rows)

        await wait_for(all_done)
        await asyncio.sleep(0.5)
    finally:
        await stop(gateway, grace=3)
    assert len(relay.received) == 1
    mail = relay.received[0][2]
    assert mail["Subject"] == "3 updates: REF-0, REF-1, REF-2"
    body = mail.get_content()
    for line in ("New request: REF-0", "Escalated: REF-1", "Service level breached: REF-2"):
        assert line in body


def queue(**values: object) -> QueueSection:
    return QueueSection.model_validate({"name": "general", **values})


def test_notifications__quiet_hours_hold_notices_until_they_end() -> None:
    config = make_config("sqlite+aiosqlite://", queue=[NOTIFYING])
    overnight = queue(quiet_hours="19:00-07:00")
    evening = datetime(2026, 3, 2, 20, 30, tzinfo=UTC)
    assert due(config, overnight, evening) == datetime(2026, 3, 3, 7, 0, tzinfo=UTC)
    early = datetime(2026, 3, 3, 5, 0, tzinfo=UTC)
    assert due(config, overnight, early) == datetime(2026, 3, 3, 7, 0, tzinfo=UTC)
    noon = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
    assert due(config, overnight, noon) == noon  # not quiet: at once
    lunch = queue(quiet_hours="12:00-13:00", digest_minutes=15)
    assert due(config, lunch, noon) == datetime(2026, 3, 3, 13, 15, tzinfo=UTC)
    assert due(config, queue(digest_minutes=30), noon) == noon + timedelta(minutes=30)


def test_notifications__quiet_hours_are_read_in_the_queues_calendar() -> None:
    config = make_config(
        "sqlite+aiosqlite://", queue=[NOTIFYING],
        calendar=[{"name": "ny", "timezone": "America/New_York",
                   "hours": {"mon": "09:00-17:00"}}],
        sla=[{"name": "std", "calendar": "ny", "first_response": "4h"}])
    # 23:30 UTC is 18:30 in New York (EST): before 19:00 there, not quiet.
    at = datetime(2026, 1, 12, 23, 30, tzinfo=UTC)
    assert due(config, queue(quiet_hours="19:00-07:00"), at) == at
    # 00:30 UTC is 19:30 in New York: quiet until 07:00 there, 12:00 UTC.
    later = datetime(2026, 1, 13, 0, 30, tzinfo=UTC)
    assert due(config, queue(quiet_hours="19:00-07:00"), later) == datetime(
        2026, 1, 13, 12, 0, tzinfo=UTC)
    assert quiet_until("08:00-09:00", datetime(2026, 1, 13, 9, 0, tzinfo=UTC)) is None


def test_notifications__off_unless_the_queue_asks() -> None:
    config = make_config("sqlite+aiosqlite://")
    assert notices(config, {"general": [("bea@desk.example", "Bea")]}, kind="new_request",
                   queue="general", reference="R", at=utcnow(), key="k") == []
    config = make_config("sqlite+aiosqlite://", queue=[{**NOTIFYING, "notify_on": ["escalated"]}])
    agents = {"general": [("Bea@Desk.example", "Bea")]}
    assert notices(config, agents, kind="new_request", queue="general", reference="R",
                   at=utcnow(), key="k") == []
    found = notices(config, agents, kind="escalated", queue="general", reference="R",
                    at=utcnow(), key="k")
    assert [n.to for n in found] == ["Bea@Desk.example", "lead@desk.example"]


def test_notifications__breaches_and_escalations_come_from_their_events() -> None:
    config = make_config("sqlite+aiosqlite://", queue=[NOTIFYING, {"name": "billing"}])
    now = utcnow()
    request = {"queue": "general", "status": "open", "subject": "VPN", "priority": "P1"}
    breach = {"event": "sla_breached", "reference": "R-1",
              "data": {"target": "first_response", "due_at": now.isoformat()}}
    found = from_event(config, {}, request, 7, breach, now)
    assert [(n.to, n.payload["event"]["kind"], n.payload["event"]["detail"]) for n in found] == [
        ("lead@desk.example", "sla_breached", "first_response")]
    # The queue as it is now: an escalation that moved it to billing notifies no one.
    moved = {**request, "queue": "billing"}
    escalated = {"event": "escalated", "reference": "R-1", "data": {"rules": ["vip"]}}
    assert from_event(config, {}, moved, 8, escalated, now) == []
    # Quarantined new requests are nobody's work yet.
    created = {"event": "created", "reference": "R-2", "data": {}}
    assert from_event(config, {}, {**request, "status": "quarantined"}, 9, created, now) == []
    assert len(from_event(config, {}, {**request, "status": "new"}, 9, created, now)) == 1


def test_notifications__an_agents_own_quiet_hours_and_digest_stand_for_the_queues() -> None:
    """Two agents of one queue: one keeps the queue's settings (at once), one is
    quiet in the evening and gathers for an hour; the `notify` address keeps
    the queue's."""
    config = make_config("sqlite+aiosqlite://", queue=[NOTIFYING])
    evening = datetime(2026, 3, 2, 20, 30, tzinfo=UTC)
    agents = {"general": [Recipient("bea@desk.example", "Bea"),
                          Recipient("cy@desk.example", "Cy", "19:00-07:00", 60)]}
    found = {n.to: n.due for n in notices(config, agents, kind="new_request",
                                          queue="general", reference="R", at=evening,
                                          key="k")}
    assert found == {"bea@desk.example": evening, "lead@desk.example": evening,
                     "cy@desk.example": datetime(2026, 3, 3, 8, 0, tzinfo=UTC)}


async def test_notifications__agents_settings_kept_and_read_back(engine: AsyncEngine) -> None:
    made = await create_agent(engine, name="Cy", email="cy@desk.example", queues=["general"],
                              quiet_hours="22:00-06:00", digest_minutes=30)
    assert made is not None and (made["quiet_hours"], made["digest_minutes"]) == (
        "22:00-06:00", 30)
    await create_agent(engine, name="Bea", email="bea@desk.example", queues=[])
    assert await queue_agents(engine) == {
        "general": [Recipient("cy@desk.example", "Cy", "22:00-06:00", 30)],
        "*": [Recipient("bea@desk.example", "Bea", None, None)]}
