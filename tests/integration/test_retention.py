"""Retention (storage/retention.py) on both backends: with an injected clock over
10,000 requests stored through the real store path, exactly the expired ones
go, as the most specific policy says; what stays is intact."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.lifecycle import DeliveryState, ItemState
from domain.retention import Policy, governing
from gateway.pipeline.retention import Retention
from gateway.pipeline.scheduler import Scheduler
from gateway.rules_in_force import RulesHolder
from storage.engine import as_utc, create_engine, utcnow
from storage.inbox import NewItem, accept_many
from storage.models import (
    attachments,
    blobs,
    events,
    inbox_items,
    messages,
    outbox,
    requests,
)
from storage.processing import claim_items
from storage.records import NewAttachment, NewMessage, NewRequest
from storage.retention import DROPPED_SHA256, What, plan, run_batch, run_pass
from storage.store import complete_items
from tests.helpers import count_rows, make_config

COUNT = 10_000
BATCH = 500
QUEUES = ("general", "billing")
TYPES = (None, "incident", "question")
FINISHED = ("resolved", "closed", "merged")
POLICIES = (
    Policy(delete_after_days=365, raw_after_days=30),
    Policy(queue="billing", anonymise_after_days=90, delete_after_days=730),
    Policy(type="incident", delete_after_days=180),
    Policy(queue="billing", type="incident", raw_after_days=7),  # nothing else: kept
)
SHARED = b"shared attachment content"


@dataclass(frozen=True)
class Seeded:
    id: int
    queue: str
    type: str | None
    finished_at: datetime | None  # None: still open
    unique_sha: str | None  # its own attachment's content, if it has one


def _shape(n: int, now: datetime) -> tuple[str, str | None, str, datetime | None]:
    """Request n's queue, type, status and finish time: every policy, ages from
    0 to 900 days, and finish times exactly at a cutoff and a second past it."""
    queue, type_ = QUEUES[n % 2], TYPES[(n // 2) % 3]
    if n % 10 == 9:
        return queue, type_, "open", None
    days = (n * 37) % 900
    seconds = (0, 1, -1, 3600)[(n // 7) % 4]  # at a cutoff, just past it, just before it
    return queue, type_, FINISHED[n % 3], now - timedelta(days=days, seconds=seconds)


async def _seed(engine: AsyncEngine, now: datetime) -> list[Seeded]:
    seeded: list[Seeded] = []
    for start in range(0, COUNT, BATCH):
        await accept_many(engine, [NewItem("api", b'{"subject": "s"}', {"n": n})
                                   for n in range(start, start + BATCH)])
        items = await claim_items(engine, limit=BATCH, lease_seconds=60)
        work: list[tuple[Any, NewRequest]] = []
        shapes: dict[int, tuple[str, datetime | None, str, str | None, str | None]] = {}
        for item in items:
            n = item.meta["n"]
            queue, type_, status, finished = _shape(n, now)
            files = []
            unique = None
            if n % 50 == 0:
                content = f"attachment of request {n}".encode()
                unique = hashlib.sha256(content).hexdigest()
                files = [NewAttachment("own.txt", "text/plain", content),
                         NewAttachment("shared.txt", "text/plain", SHARED)]
            message = NewMessage(subject=f"request {n}", text=f"person {n} writes",
                                 new_text=f"person {n} writes",
                                 from_address=f"person{n}@example.com", from_name=f"P {n}",
                                 attachments=files)
            work.append((item, NewRequest(queue=queue, type=type_, message=message,
                                          requester_email=f"person{n}@example.com",
                                          requester_name=f"Person {n}",
                                          custom_fields={"n": n})))
            shapes[item.id] = (status, finished, queue, type_, unique)
        await complete_items(engine, work)
        async with engine.begin() as conn:
            made = (await conn.execute(select(requests.c.inbox_item_id, requests.c.id).where(
                requests.c.inbox_item_id.in_(list(shapes))))).all()
            rows = []
            for item_id, request_id in made:
                status, finished, queue, type_, unique = shapes[item_id]
                seeded.append(Seeded(request_id, queue, type_, finished, unique))
                rows.append({"rid": request_id, "st": status, "fin": finished,
                             "upd": finished or now})
            await conn.execute(
                update(requests).where(requests.c.id == bindparam("rid"))
                .values(status=bindparam("st"), resolved_at=bindparam("fin"),
                        updated_at=bindparam("upd")), rows)
    return seeded


def _fate(row: Seeded, now: datetime) -> str:
    """What the policies say becomes of a request: deleted, anonymised, raw, kept."""
    policy = governing(POLICIES, row.queue, row.type)
    if row.finished_at is None or policy is None:
        return "kept"

    def past(days: int | None) -> bool:
        return days is not None and row.finished_at is not None and (
            row.finished_at < now - timedelta(days=days))

    if past(policy.delete_after_days):
        return "deleted"
    if past(policy.anonymise_after_days):
        return "anonymised"
    if past(policy.raw_after_days):
        return "raw"
    return "kept"


async def _column(engine: AsyncEngine, query: Any) -> set[Any]:
    async with engine.connect() as conn:
        return set((await conn.execute(query)).scalars())


async def test_retention__exactly_the_expired_requests_go(engine: AsyncEngine,
                                                          db_url: str) -> None:
    now = utcnow()
    seeded = await _seed(engine, now)
    assert len(seeded) == COUNT
    fates = {row.id: _fate(row, now) for row in seeded}
    by_fate = {f: {i for i, x in fates.items() if x == f}
               for f in ("deleted", "anonymised", "raw", "kept")}
    # The seed reaches every fate, and cutoffs exactly (a second either side).
    assert all(len(ids) > 300 for ids in by_fate.values()), {k: len(v) for k, v in
                                                              by_fate.items()}

    # The dry run counts exactly that, and changes nothing.
    counted = await run_pass(engine, POLICIES, now, batch=BATCH, dry_run=True)
    assert sum(s.counted or 0 for s in counted if s.what is What.DELETE) == len(
        by_fate["deleted"])
    assert sum(s.counted or 0 for s in counted if s.what is What.ANONYMISE) == len(
        by_fate["anonymised"])
    assert sum(s.counted or 0 for s in counted if s.what is What.RAW) == len(by_fate["raw"])
    assert await count_rows(engine, requests) == COUNT

    # The scheduler runs it, a few batches a tick, at the injected clock's time.
    clock = [now]
    retention = Retention(engine=engine, policies=POLICIES, interval=timedelta(hours=1),
                          batch_size=BATCH, batches_per_tick=4)
    scheduler = Scheduler(engine=engine, rules=RulesHolder.load(make_config(db_url)),
                          clock=lambda: clock[0], retention=retention)
    ticks = 0
    while retention.passes == 0 and ticks < 100:
        await scheduler.tick()
        ticks += 1
    assert retention.passes == 1 and ticks > 1  # bounded per tick: several ticks

    left = await _column(engine, select(requests.c.id))
    assert left == set(fates) - by_fate["deleted"]
    assert await _column(engine, select(requests.c.id).where(
        requests.c.anonymised_at.is_not(None))) == by_fate["anonymised"]
    assert await _column(engine, select(requests.c.id).where(
        requests.c.raw_dropped_at.is_not(None))) == by_fate["anonymised"] | by_fate["raw"]

    # Nothing of a deleted request is left; the others keep their rows.
    gone = sorted(by_fate["deleted"])
    assert await count_rows(engine, messages, messages.c.request_id.in_(gone)) == 0
    assert await count_rows(engine, events, events.c.request_id.in_(gone)) == 0
    assert await count_rows(engine, outbox, outbox.c.request_id.in_(gone)) == 0
    assert await count_rows(engine, messages) == COUNT - len(gone)
    assert await count_rows(engine, inbox_items) == COUNT - len(gone)
    # Anonymised: no person, no text, no raw; metadata kept.
    anonymised = sorted(by_fate["anonymised"])
    async with engine.connect() as conn:
        people = (await conn.execute(select(
            func.count()).select_from(requests).where(
            requests.c.id.in_(anonymised), requests.c.requester_email.is_not(None)))).scalar()
        texts = (await conn.execute(select(messages.c.text, messages.c.from_address).where(
            messages.c.request_id.in_(anonymised)))).all()
        kept = (await conn.execute(select(requests.c.requester_email, messages.c.text)
                                   .join(messages, messages.c.request_id == requests.c.id)
                                   .where(requests.c.id.in_(sorted(by_fate["kept"]))))).all()
    assert people == 0 and texts and all(t == ("", None) for t in texts)
    assert all(email and text for email, text in kept)
    raw_of = select(inbox_items.c.raw).join(requests, requests.c.inbox_item_id
                                             == inbox_items.c.id)
    assert await _column(engine, raw_of.where(requests.c.id.in_(
        sorted(by_fate["anonymised"] | by_fate["raw"])))) == {b""}
    assert b"" not in await _column(engine, raw_of.where(requests.c.id.in_(
        sorted(by_fate["kept"]))))

    # Attachments: a kept request's content stays; a dropped one's points at the
    # empty blob, keeping its name and size; content no one refers to is gone.
    with_files = [row for row in seeded if row.unique_sha]
    for row in with_files:
        shas = await _column(engine, select(attachments.c.sha256)
                             .join(messages, messages.c.id == attachments.c.message_id)
                             .where(messages.c.request_id == row.id))
        fate = fates[row.id]
        if fate == "kept":
            assert row.unique_sha in shas
        elif fate == "raw":
            assert shas == {DROPPED_SHA256}
        else:
            assert shas == set()
        if fate != "kept":
            assert await count_rows(engine, blobs, blobs.c.sha256 == row.unique_sha) == 0
    shared = hashlib.sha256(SHARED).hexdigest()
    assert await count_rows(engine, blobs, blobs.c.sha256 == shared) == 1  # kept ones use it

    # The next pass waits for the interval; then it finds nothing more to do.
    assert await retention.step(clock[0] + timedelta(minutes=30)) == 0
    clock[0] += timedelta(hours=2)
    while retention.passes == 1 and ticks < 200:
        await scheduler.tick()
        ticks += 1
    assert retention.passes == 2
    assert await _column(engine, select(requests.c.id)) == left


async def test_retention__dead_letters_outbox_history_and_audit(engine: AsyncEngine) -> None:
    now = utcnow()
    old, young = now - timedelta(days=40), now - timedelta(days=20)
    ids = await accept_many(engine, [NewItem("api", b"{}", {}) for _ in range(4)])
    async with engine.begin() as conn:
        for item_id, received in zip(ids, (old, old, young, young), strict=True):
            await conn.execute(update(inbox_items).where(inbox_items.c.id == item_id)
                               .values(state=ItemState.DEAD, received_at=received))
        rows = [{"kind": "email", "payload": {}, "state": state, "attempts": 1,
                 "next_attempt_at": at, "created_at": at}
                for state in (DeliveryState.DONE, DeliveryState.DEAD, DeliveryState.DISCARDED,
                              DeliveryState.PENDING)
                for at in (old, young)]
        await conn.execute(outbox.insert(), rows)
    policy = Policy(dead_letters_after_days=30, outbox_after_days=30, audit_after_days=30)
    dry = await run_pass(engine, [policy], now, batch=1, dry_run=True)
    assert {s.what: s.counted for s in dry} == {
        What.DEAD_LETTERS: 3, What.OUTBOX: 2, What.AUDIT: 0}
    stages = plan([policy], now)
    for stage in stages:  # batches of one: each stage goes on to its end
        while await run_batch(engine, stage, batch=1):
            pass
    assert {s.what: s.done for s in stages} == {
        What.DEAD_LETTERS: 3, What.OUTBOX: 2, What.AUDIT: 0}
    assert await _column(engine, select(inbox_items.c.received_at)) == await _column(
        engine, select(inbox_items.c.received_at).where(inbox_items.c.id.in_(ids[2:])))
    async with engine.connect() as conn:
        states = sorted((r.state, as_utc(r.created_at) > now - timedelta(days=30)) for r in (
            await conn.execute(select(outbox.c.state, outbox.c.created_at))).all())
    # Every young row stays, and the pending old one: it is not history yet.
    assert states == sorted([(s, True) for s in ("done", "dead", "discarded", "pending")]
                            + [("pending", False)])


async def test_retention__two_processes_share_a_pass(pg_url: str) -> None:
    """On PostgreSQL two passes at once take disjoint batches: every expired
    request is deleted once, with no error, and each pass did some."""
    engines = [create_engine(pg_url) for _ in range(2)]
    try:
        now = utcnow()
        await accept_many(engines[0], [NewItem("api", b"{}", {}) for _ in range(3000)])
        while items := await claim_items(engines[0], limit=500, lease_seconds=60):
            await complete_items(engines[0], [(item, NewRequest(
                queue="general", requester_email=None, requester_name=None,
                message=NewMessage(subject="s", text="t", new_text="t", from_address=None,
                                   from_name=None))) for item in items])
        async with engines[0].begin() as conn:
            await conn.execute(update(requests).where(requests.c.id % 3 != 0).values(
                status="closed", resolved_at=now - timedelta(days=10)))
        policies = [Policy(delete_after_days=5)]
        passes = await asyncio.gather(*(run_pass(e, policies, now, batch=100)
                                        for e in engines))
        done = [sum(stage.done for stage in stages) for stages in passes]
        assert sum(done) == 2000 and all(done)
        assert await count_rows(engines[0], requests) == 1000
    finally:
        for engine in engines:
            await engine.dispose()


@pytest.mark.parametrize("text, problem", [
    ('[[retention]]\nqueue = "general"\naudit_after_days = 3',
     "set them on the [[retention]] without queue and type"),
    ("[[retention]]\ndelete_after_days = 30\nanonymise_after_days = 60",
     "anonymise_after_days must be fewer than delete_after_days"),
    ('[[retention]]\nqueue = "nowhere"', "unknown queue 'nowhere'"),
    ("[[retention]]\n[[retention]]", "more than one [[retention]] for default"),
    ("[[retention]]\nraw_after_days = 0", "greater than or equal to 1"),
])
def test_retention__configuration_refused(text: str, problem: str) -> None:
    from gateway.config.loader import InvalidConfigError, config_from_text

    with pytest.raises(InvalidConfigError) as raised:
        config_from_text(text, "intake.toml", {})
    assert problem in str(raised.value)


async def test_retention__a_dropped_attachment_downloads_as_gone(
        engine: AsyncEngine, app_client: Any, admin_token: str) -> None:
    await accept_many(engine, [NewItem("api", b"{}", {})])
    items = await claim_items(engine, limit=1, lease_seconds=60)
    files = [NewAttachment("scan.pdf", "application/pdf", b"%PDF- the scan")]
    await complete_items(engine, [(items[0], NewRequest(
        queue="general", requester_email="ann@example.com", requester_name="Ann",
        message=NewMessage(subject="s", text="t", new_text="t", from_address=None,
                           from_name=None, attachments=files)))])
    async with engine.begin() as conn:
        await conn.execute(update(requests).values(
            status="resolved", resolved_at=utcnow() - timedelta(days=10)))
        reference = (await conn.execute(select(requests.c.reference))).scalar_one()
        attachment = (await conn.execute(select(attachments.c.id))).scalar_one()
    url = f"/v1/requests/{reference}/attachments/{attachment}"
    headers = {"Authorization": f"Bearer {admin_token}"}
    before = await app_client.get(url, headers=headers)
    assert before.status == 200 and await before.read() == b"%PDF- the scan"

    await run_pass(engine, [Policy(raw_after_days=7)], utcnow(), batch=10)
    after = await app_client.get(url, headers=headers)
    assert after.status == 404
    assert "removed by the retention policy" in (await after.json())["detail"]
    listed = await app_client.get(f"/v1/requests/{reference}", headers=headers)
    assert "scan.pdf" in await listed.text()  # its name, type and size stay

    # Anonymised, it still reads: its metadata, no person, no text.
    await run_pass(engine, [Policy(anonymise_after_days=7)], utcnow(), batch=10)
    shown = await app_client.get(f"/v1/requests/{reference}", headers=headers)
    assert shown.status == 200
    text = await shown.text()
    assert "ann@example.com" not in text and "Ann" not in text and "scan.pdf" not in text
