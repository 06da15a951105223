"""Pipeline and storage operations on both backends."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Config
from gateway.pipeline import worker as pipeline_module
from gateway.pipeline.worker import Pipeline
from gateway.rules_in_force import RulesHolder
from storage.engine import utcnow
from storage.inbox import InboxWriter, NewItem, accept_many
from storage.install_key import references
from storage.models import attachments, blobs, events, inbox_items, messages, requests
from storage.processing import claim_items, dead_items, requeue_dead
from storage.store import complete_item
from tests.helpers import count_rows, reference_of

MAIL = (b"From: Ann <ann@example.com>\r\nTo: support@localhost\r\nSubject: Hello\r\n"
        b"Message-ID: <p1@example.com>\r\n\r\nBody text\r\n")


def mail_with_attachment(name: str, content: bytes) -> bytes:
    import email.policy
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = "ann@example.com"
    msg["Subject"] = "with file"
    msg.set_content("see attached")
    msg.add_attachment(content, maintype="application", subtype="octet-stream", filename=name)
    return msg.as_bytes(policy=email.policy.SMTP)


async def drain(engine: AsyncEngine, config: Config) -> Pipeline:
    pipe = Pipeline(engine=engine, config=config)
    # A failed item is handed back with a time for its next attempt (no sleep
    # in the worker): claiming as of a minute ahead makes each retry due now.
    while items := await claim_items(engine, limit=50, lease_seconds=30,
                                     now=utcnow() + timedelta(minutes=1)):
        for item in items:
            await pipe.process(item)
    return pipe


async def test_writer__concurrent_submissions_share_commits(engine: AsyncEngine) -> None:
    commits = 0

    def on_commit() -> None:
        nonlocal commits
        commits += 1

    writer = InboxWriter(engine=engine, on_commit=on_commit)
    task = asyncio.create_task(writer.run())
    try:
        accepted = await asyncio.gather(*(writer.submit(NewItem("smtp", MAIL, {"n": i}))
                                          for i in range(200)))
    finally:
        task.cancel()
    assert len({a.item_id for a in accepted}) == 200
    refs = await references(engine)
    assert {a.reference for a in accepted} == {refs.reference_for(a.item_id) for a in accepted}
    assert await count_rows(engine, inbox_items) == 200
    assert commits < 200  # batched: fewer commits than items
    # Each submitter got the id of its own row.
    async with engine.connect() as conn:
        rows = dict((await conn.execute(select(inbox_items.c.id, inbox_items.c.meta))).all())
    assert all(rows[a.item_id]["n"] == i for i, a in enumerate(accepted))


async def test_pipeline__item_becomes_request(engine: AsyncEngine, config: Config) -> None:
    [item_id] = await accept_many(engine, [NewItem("smtp", MAIL, {"rcpt_tos": ["a"]})])
    await drain(engine, config)
    async with engine.connect() as conn:
        req = (await conn.execute(select(requests))).one()
        state = (await conn.execute(select(inbox_items.c.state))).scalar_one()
    assert req.reference == await reference_of(engine, item_id)
    assert req.subject == "Hello" and req.requester_email == "ann@example.com"
    assert state == "done"
    assert await count_rows(engine, messages, messages.c.direction == "in") == 1
    assert await count_rows(engine, messages, messages.c.direction == "out") == 1  # the ack
    kinds = ["received", "threaded", "parsed", "classified", "routed", "acknowledgement",
             "acknowledgement_queued"]
    async with engine.connect() as conn:
        rows = await conn.execute(select(events.c.kind).order_by(events.c.id))
        assert list(rows.scalars()) == kinds


async def test_pipeline__same_item_twice_one_request(engine: AsyncEngine, config: Config) -> None:
    await accept_many(engine, [NewItem("smtp", MAIL)])
    [item] = await claim_items(engine, limit=10, lease_seconds=30)
    new = pipeline_module.build_request(item, config, RulesHolder.load(config).rules)
    first = await complete_item(engine, item, new)
    second = await complete_item(engine, item, new)
    # Two workers racing on the same item (lease expired under the first one).
    await asyncio.gather(complete_item(engine, item, new), complete_item(engine, item, new),
                         return_exceptions=True)
    assert first.reference == second.reference
    assert (first.kind, second.kind) == ("new", "stored before")
    assert await count_rows(engine, requests) == 1
    assert await count_rows(engine, messages, messages.c.direction == "in") == 1


async def test_pipeline__expired_lease_is_taken_over(engine: AsyncEngine) -> None:
    await accept_many(engine, [NewItem("smtp", MAIL)])
    [first] = await claim_items(engine, limit=10, lease_seconds=30)
    assert await claim_items(engine, limit=10, lease_seconds=30) == []
    later = utcnow() + timedelta(seconds=31)
    [again] = await claim_items(engine, limit=10, lease_seconds=30, now=later)
    assert again.id == first.id and again.attempts == 2


async def test_pipeline__failing_item_retried_then_dead_lettered(
        engine: AsyncEngine, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0

    def broken(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        raise RuntimeError("parser exploded")

    monkeypatch.setitem(pipeline_module.BUILDERS, "smtp", broken)
    [item_id] = await accept_many(engine, [NewItem("smtp", MAIL)])
    await drain(engine, config)
    assert calls == config.pipeline.max_attempts
    [dead] = await dead_items(engine)
    assert dead["id"] == item_id
    assert "parser exploded" in dead["last_error"]
    assert await count_rows(engine, requests) == 0

    monkeypatch.undo()  # the fix is deployed; replay the dead letter
    assert await requeue_dead(engine, [item_id]) == 1
    await drain(engine, config)
    assert await dead_items(engine) == []
    assert await count_rows(engine, requests) == 1


async def test_pipeline__flaky_step_succeeds_on_retry(
        engine: AsyncEngine, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    original = pipeline_module.BUILDERS["smtp"]
    calls = 0

    def flaky(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RuntimeError("transient")
        return original(*args)

    monkeypatch.setitem(pipeline_module.BUILDERS, "smtp", flaky)
    await accept_many(engine, [NewItem("smtp", MAIL)])
    await drain(engine, config)
    assert calls == 3
    assert await count_rows(engine, requests) == 1
    assert await dead_items(engine) == []


async def test_pipeline__item_that_keeps_killing_workers_is_dead_lettered(
        engine: AsyncEngine, config: Config) -> None:
    await accept_many(engine, [NewItem("smtp", MAIL)])
    limit = config.pipeline.max_attempts * pipeline_module.CLAIMS_PER_ATTEMPT
    async with engine.begin() as conn:
        await conn.execute(update(inbox_items).values(attempts=limit))
    await drain(engine, config)
    [dead] = await dead_items(engine)
    assert "without completing" in dead["last_error"]


async def test_pipeline__attachments_deduplicated(engine: AsyncEngine, config: Config) -> None:
    content = bytes(range(256)) * 40
    await accept_many(engine, [NewItem("smtp", mail_with_attachment("a.bin", content)),
                               NewItem("smtp", mail_with_attachment("b.bin", content))])
    await drain(engine, config)
    assert await count_rows(engine, attachments) == 2
    assert await count_rows(engine, blobs) == 1
    async with engine.connect() as conn:
        stored = (await conn.execute(select(blobs.c.content))).scalar_one()
    assert stored == content


async def test_pipeline__api_item(engine: AsyncEngine, config: Config) -> None:
    body = (b'{"requester": {"email": "x@example.com"}, "subject": "S", "body": "B",'
            b' "custom_fields": {"k": 1}}')
    await accept_many(engine, [NewItem("api", body, {"token_id": 1})])
    await drain(engine, config)
    async with engine.connect() as conn:
        req = (await conn.execute(select(requests))).one()
    assert (req.channel, req.subject, req.custom_fields) == ("api", "S", {"k": 1})


async def test_pipeline__malformed_mail_still_stored(engine: AsyncEngine, config: Config) -> None:
    raw = b"Subject: =?utf-8?q?broken\r\nFrom: <<<\r\nContent-Type: multipart/mixed\r\n\r\n\xff\xfe"
    await accept_many(engine, [NewItem("smtp", raw)])
    await drain(engine, config)
    assert await count_rows(engine, requests) == 1
    assert await dead_items(engine) == []


async def test_pipeline__drain_processes_what_waits_then_stops(
        engine: AsyncEngine, config: Config) -> None:
    await accept_many(engine, [NewItem("smtp", MAIL.replace(b"p1@", f"d{i}@".encode()))
                               for i in range(3)])
    pipe = Pipeline(engine=engine, config=config)
    assert await pipe.drain() == 3
    assert await count_rows(engine, requests) == 3
    assert await pipe.drain() == 0  # nothing left: returns at once


async def test_pipeline__worker_wakes_on_commit(engine: AsyncEngine, config: Config) -> None:
    slow = config.model_copy(update={"pipeline": config.pipeline.model_copy(
        update={"poll_seconds": 30.0})})
    pipe = Pipeline(engine=engine, config=slow)
    writer = InboxWriter(engine=engine, on_commit=pipe.wake)
    tasks = [asyncio.create_task(writer.run()), asyncio.create_task(pipe.run_worker())]
    try:
        await asyncio.sleep(0.2)  # the worker is idle, waiting
        await writer.submit(NewItem("smtp", MAIL))
        async with asyncio.timeout(5):  # far less than the 30 s poll interval
            while await count_rows(engine, requests) == 0:
                await asyncio.sleep(0.05)
    finally:
        pipe.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
