"""Mailbox (IMAP) items in the pipeline, on both backends: mail like SMTP
mail routed by the mailbox's addresses, archive import (closed requests at
their own dates, nothing sent, told, timed or escalated, replies that never
reopen), and over-size mail left on the server (a request from its header)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Config
from gateway.delivery.worker import OutboxWorker
from gateway.pipeline.building import EARLIEST_MAIL_DATE, archive_date, too_large_note
from gateway.pipeline.scheduler import Scheduler
from gateway.pipeline.worker import Pipeline
from gateway.rules_in_force import RulesHolder
from storage.engine import as_utc
from storage.inbox import NewItem, accept_many
from storage.models import events, inbox_items, messages, outbox, requests
from storage.reports import ReportQuery, report
from tests.helpers import count_rows, make_config

OLD = datetime(2015, 3, 3, 10, 0, tzinfo=UTC)
OLD_HEADER = "Tue, 03 Mar 2015 11:00:00 +0100"  # OLD, written in another zone


def mail(message_id: str, *, date: str | None = OLD_HEADER, parent: str | None = None,
         subject: str = "Invoice 17 is wrong", sender: str = "ann@example.com") -> bytes:
    headers = [f"From: Ann <{sender}>", "To: support@localhost", f"Subject: {subject}",
               f"Message-ID: <{message_id}>"]
    if date is not None:
        headers.append(f"Date: {date}")
    if parent is not None:
        headers += [f"In-Reply-To: <{parent}>", f"References: <{parent}>"]
    return ("\r\n".join(headers) + "\r\n\r\nPlease check the invoice.\r\n").encode()


def imap(raw: bytes, *, rcpt: str = "billing@localhost", uid: int = 7,
         **meta: Any) -> NewItem:
    """An item as the mailbox fetcher commits it."""
    return NewItem("imap", raw, {"mailbox": "billing-box", "folder": "INBOX", "uid": uid,
                                 "uidvalidity": 1, "rcpt_tos": [rcpt], **meta})


def mailbox_config(db_url: str) -> Config:
    """Every way a request could be timed, escalated, told or answered: what an
    archived one must not get."""
    return make_config(
        db_url,
        queue=[{"name": "general", "notify_on": ["new_request"], "notify": ["desk@example.org"]},
               {"name": "billing", "notify_on": ["new_request"],
                "notify": ["desk@example.org"]}],
        rule=[{"name": "billing box", "when": {"envelope": {"equals": "billing@localhost"}},
               "then": {"queue": "billing"}}],
        sla=[{"name": "standard", "first_response": "1h", "resolution": "8h"}],
        escalation=[{"name": "nobody took it", "when": {"unclaimed_for": "3m"},
                     "then": {"priority": "P1"}}])


async def process(engine: AsyncEngine, config: Config, *items: NewItem) -> list[dict[str, Any]]:
    """Accept and process `items` (one batch); each one's request, in order."""
    ids = await accept_many(engine, list(items))
    pipeline = Pipeline(engine=engine, config=config)
    assert await pipeline.drain() == len(items)
    async with engine.connect() as conn:
        found = dict((await conn.execute(
            select(messages.c.inbox_item_id, messages.c.request_id)
            .where(messages.c.inbox_item_id.in_(ids)))).all())
        rows = {r.id: r._asdict() for r in (await conn.execute(
            select(requests).where(requests.c.id.in_(set(found.values()))))).all()}
    return [rows[found[item_id]] for item_id in ids]


def at(value: Any) -> datetime:
    """A stored time, in UTC (SQLite keeps no zone)."""
    moment = as_utc(value)
    assert moment is not None
    return moment


async def kinds(engine: AsyncEngine, request_id: int) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(events.c.kind).where(
            events.c.request_id == request_id).order_by(events.c.id))).scalars())


async def test_imap__like_smtp_mail_routed_by_the_mailbox_address(
        engine: AsyncEngine, db_url: str) -> None:
    config = mailbox_config(db_url)
    # The header says support@; the mailbox stands for billing@ (or support@).
    billed, general = await process(engine, config, imap(mail("m1@example.com")),
                                    imap(mail("m2@example.com"), rcpt="support@localhost",
                                         uid=8))
    assert (billed["queue"], general["queue"]) == ("billing", "general")
    assert billed["channel"] == "imap" and billed["status"] == "new"
    assert billed["requester_email"] == "ann@example.com"
    assert billed["subject"] == "Invoice 17 is wrong"
    # Timed and acknowledged like any new mail, and dated when it came in.
    assert billed["sla_policy"] == "standard" and billed["next_check_at"] is not None
    assert at(billed["created_at"]) > OLD + timedelta(days=365)
    assert await count_rows(engine, outbox, outbox.c.request_id == billed["id"],
                            outbox.c.kind == "email") == 1
    assert "acknowledgement_queued" in await kinds(engine, billed["id"])
    async with engine.connect() as conn:
        received = (await conn.execute(select(events.c.data).where(
            events.c.request_id == billed["id"], events.c.kind == "received"))).scalar_one()
    assert received["channel"] == "imap"
    assert received["envelope"] == {"mailbox": "billing-box", "folder": "INBOX", "uid": 7,
                                    "rcpt_tos": ["billing@localhost"]}
    assert "archived" not in received


async def test_imap__archive_is_closed_history_at_its_own_date(
        engine: AsyncEngine, db_url: str) -> None:
    config = mailbox_config(db_url)
    live, old = await process(engine, config, imap(mail("live@example.com"), uid=1),
                              imap(mail("old@example.com"), uid=2, archive=True))
    # The same mail fetched live is timed, acknowledged and told (the config does all).
    assert live["next_check_at"] is not None
    assert await count_rows(engine, outbox, outbox.c.request_id == live["id"]) > 0

    assert old["status"] == "closed" and old["queue"] == "billing"
    assert as_utc(old["created_at"]) == OLD and as_utc(old["updated_at"]) == OLD
    assert old["resolved_at"] is None and old["first_response_at"] is None
    assert {key: old[key] for key in ("sla_policy", "first_response_due_at",
                                      "resolution_due_at", "due_at", "next_check_at")} == \
        dict.fromkeys(("sla_policy", "first_response_due_at", "resolution_due_at", "due_at",
                       "next_check_at"))
    async with engine.connect() as conn:
        dated = (await conn.execute(select(messages.c.created_at, messages.c.direction).where(
            messages.c.request_id == old["id"]))).all()
        ack = (await conn.execute(select(events.c.data).where(
            events.c.request_id == old["id"], events.c.kind == "acknowledgement"))).scalar_one()
    assert [(as_utc(at), direction) for at, direction in dated] == [(OLD, "in")]
    assert ack["send"] is False and "archive" in ack["reason"]
    assert await count_rows(engine, outbox, outbox.c.request_id == old["id"]) == 0

    # Fanning out the events tells the desk of the live request only.
    fanned = await OutboxWorker(engine=engine, config=config).fan_out_events()
    assert fanned > 0
    assert await count_rows(engine, outbox, outbox.c.kind == "notification",
                            outbox.c.request_id == live["id"]) == 1
    assert await count_rows(engine, outbox, outbox.c.request_id == old["id"]) == 0

    # A day later the scheduler escalates and breaches the live one only.
    holder = RulesHolder.load(config)
    later = at(live["created_at"]) + timedelta(days=1)
    assert await Scheduler(engine=engine, rules=holder, clock=lambda: later).tick() >= 1
    assert "escalated" in await kinds(engine, live["id"])
    assert not {"escalated", "sla_warning", "sla_breached"} & set(await kinds(engine, old["id"]))
    assert await count_rows(engine, outbox, outbox.c.request_id == old["id"]) == 0

    # Reports count it on its own day, created and finished then (no backlog left).
    rows = await report(engine, ReportQuery(
        start=datetime(2015, 3, 1, tzinfo=UTC), end=datetime(2015, 3, 8, tzinfo=UTC),
        grouping="day", now=later))
    assert sum(row["created"] for row in rows) == 1
    assert all(row["backlog"] == 0 for row in rows)


async def test_imap__archive_date_falls_back_when_not_sane(
        engine: AsyncEngine, db_url: str) -> None:
    config = mailbox_config(db_url)
    internal = "2016-06-01T12:00:00+00:00"
    future, ancient, garbage, missing = await process(
        engine, config,
        imap(mail("f@example.com", date="Fri, 01 Jan 2100 00:00:00 +0000"), uid=1,
             archive=True, internal_date=internal),
        imap(mail("a@example.com", date="Mon, 01 Jan 1985 00:00:00 +0000"), uid=2,
             archive=True, internal_date=internal),
        imap(mail("g@example.com", date="the day before yesterday"), uid=3, archive=True,
             internal_date="not a date"),
        imap(mail("n@example.com", date=None), uid=4, archive=True))
    assert as_utc(future["created_at"]) == datetime(2016, 6, 1, 12, tzinfo=UTC)
    assert as_utc(ancient["created_at"]) == datetime(2016, 6, 1, 12, tzinfo=UTC)
    async with engine.connect() as conn:
        received = dict((await conn.execute(select(inbox_items.c.id, inbox_items.c.received_at)
                                            )).all())
    for fallen in (garbage, missing):
        assert as_utc(fallen["created_at"]) == as_utc(received[fallen["inbox_item_id"]])
        assert fallen["status"] == "closed"


def test_archive_date__sane_header_else_internal_date_else_receipt() -> None:
    got = datetime(2026, 1, 1, tzinfo=UTC)
    plus_one = timezone(timedelta(hours=1))
    assert archive_date(datetime(2015, 3, 3, 11, tzinfo=plus_one), None, got) == OLD
    # RFC 5322's -0000 parses without a zone: UTC.
    assert archive_date(datetime(2015, 3, 3, 10), None, got) == OLD
    assert archive_date(EARLIEST_MAIL_DATE, None, got) == EARLIEST_MAIL_DATE
    assert archive_date(EARLIEST_MAIL_DATE - timedelta(seconds=1), None, got) == got
    assert archive_date(got + timedelta(seconds=1), "2020-02-02T00:00:00Z", got) == \
        datetime(2020, 2, 2, tzinfo=UTC)
    assert archive_date(None, 20200202, got) == got  # not text
    assert archive_date(None, "2" * 100, got) == got
    assert archive_date(datetime(9999, 12, 31, 23, 59, tzinfo=timezone(-timedelta(hours=23))),
                        None, got) == got


async def test_imap__archive_reply_threads_without_reopening(
        engine: AsyncEngine, db_url: str) -> None:
    config = mailbox_config(db_url)
    [first] = await process(engine, config, imap(mail("t1@example.com"), uid=1, archive=True))
    # Two days later, Ann wrote again: long past the queue's reopen window now.
    [second] = await process(engine, config, imap(
        mail("t2@example.com", parent="t1@example.com", subject="Re: Invoice 17 is wrong",
             date="Thu, 05 Mar 2015 10:00:00 +0000"), uid=2, archive=True))
    assert second["id"] == first["id"]
    assert await count_rows(engine, requests) == 1
    assert second["status"] == "closed" and second["version"] == first["version"]
    assert second["linked_from_id"] is None
    # Its last change is the reply's own date, not the import.
    assert as_utc(second["updated_at"]) == datetime(2015, 3, 5, 10, tzinfo=UTC)
    assert as_utc(second["created_at"]) == OLD
    found = await kinds(engine, first["id"])
    assert found.count("message_received") == 1
    assert not {"status_changed", "reopened", "rerouted"} & set(found)
    assert await count_rows(engine, messages, messages.c.request_id == first["id"],
                            messages.c.direction == "in") == 2
    assert await count_rows(engine, outbox) == 0


async def test_imap__live_reply_to_a_recent_closed_request_still_reopens(
        engine: AsyncEngine, db_url: str) -> None:
    """The control of the test above: what an archived reply is kept from doing."""
    config = mailbox_config(db_url)
    [first] = await process(engine, config, imap(mail("r1@example.com", date=None), uid=1))
    async with engine.begin() as conn:
        await conn.execute(update(requests).values(status="closed"))
    [second] = await process(engine, config, imap(
        mail("r2@example.com", parent="r1@example.com", date=None), uid=2))
    assert second["id"] == first["id"] and second["status"] == "reopened"


@pytest.mark.parametrize("archived", [False, True], ids=["intake", "archive"])
async def test_imap__too_large_mail_is_a_request_from_its_header(
        engine: AsyncEngine, db_url: str, archived: bool) -> None:
    config = mailbox_config(db_url)
    header = mail("big@example.com").split(b"\r\n\r\n")[0] + b"\r\n\r\n"  # RFC822.HEADER
    meta: dict[str, Any] = {"folder": "Big mail", "too_large": 5_000_000}
    if archived:
        meta["archive"] = True
    [big] = await process(engine, config, imap(header, **meta))
    assert big["subject"] == "Invoice 17 is wrong" and big["requester_email"] == "ann@example.com"
    async with engine.connect() as conn:
        text, new_text, flags = (await conn.execute(
            select(messages.c.text, messages.c.new_text, messages.c.flags)
            .where(messages.c.request_id == big["id"], messages.c.direction == "in"))).one()
    assert text == new_text
    limit = config.intake.max_message_bytes
    assert "5000000 bytes" in text and f"limit of {limit} bytes" in text
    assert 'folder "Big mail" of the mailbox "billing-box"' in text
    assert "unread by the gateway" in text
    assert flags["too_large"] == 5_000_000
    acknowledged = await count_rows(engine, outbox, outbox.c.request_id == big["id"],
                                    outbox.c.kind == "email")
    if archived:  # history all the same: closed, nothing sent
        assert (big["status"], acknowledged) == ("closed", 0)
    else:  # the customer did write: acknowledged as usual
        assert (big["status"], acknowledged) == ("new", 1)
        assert await count_rows(engine, messages, messages.c.request_id == big["id"],
                                messages.c.direction == "out") == 1


def test_too_large_note__names_from_the_server_shown_on_one_line_bounded() -> None:
    note = too_large_note(9, 8, "In\r\nbox\x00" + "x" * 1000, ["not", "text"])
    assert "\n" not in note and "\r" not in note and "\x00" not in note
    assert 'folder "Inbox' in note and 'mailbox "(unnamed)"' in note
    assert len(note) < 600
