"""A batch is one multi-row INSERT: with `[[sla]]`, a normal mail (deadlines)
and an automatic one (closed, none) stored together in one statement, not
failed and redone one by one. And a batch that does fail leaves no message
content, subject or address in any log line above DEBUG."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Config
from gateway.pipeline import worker as worker_module
from gateway.pipeline.worker import Pipeline
from storage import store as store_module
from storage.engine import as_utc, utcnow
from storage.inbox import NewItem, accept_many
from storage.models import requests
from storage.processing import ClaimedItem, claim_items
from storage.records import NewRequest
from storage.rows import request_row
from tests.helpers import make_config

PERSON = (b"From: Ann Example <ann.secret@example.com>\r\nTo: support@localhost\r\n"
          b"Subject: Invoice 4711 is wrong\r\nMessage-ID: <m1@example.com>\r\n\r\n"
          b"Please look at my invoice.\r\n")
AUTOMATIC = (b"From: Bob Example <bob.secret@example.org>\r\nTo: support@localhost\r\n"
             b"Subject: Out of office until Monday\r\nMessage-ID: <m2@example.org>\r\n"
             b"Auto-Submitted: auto-replied\r\n\r\nI am away.\r\n")
SECRETS = ("ann.secret", "bob.secret", "Invoice 4711", "Out of office", "Ann Example",
           "invoice.")


def sla_config(db_url: str) -> Config:
    return make_config(db_url, sla=[{"name": "standard", "first_response": "4h",
                                     "resolution": "2d"}])


async def claim_both(engine: AsyncEngine, first: bytes, second: bytes) -> list[ClaimedItem]:
    await accept_many(engine, [NewItem("smtp", first), NewItem("smtp", second)])
    items = await claim_items(engine, limit=10, lease_seconds=30)
    assert len(items) == 2
    return items


def counting_stores(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many items each call to store a batch carried."""
    calls: list[int] = []
    real = worker_module.complete_items

    async def counted(engine: AsyncEngine, work: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(work))
        return await real(engine, work, *args, **kwargs)

    monkeypatch.setattr(worker_module, "complete_items", counted)
    return calls


@pytest.mark.parametrize("order", ["person-first", "automatic-first"])
async def test_mixed_batch__person_and_automatic_stored_in_one_statement(
        db_url: str, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch,
        order: str) -> None:
    config = sla_config(db_url)
    mails = (PERSON, AUTOMATIC) if order == "person-first" else (AUTOMATIC, PERSON)
    items = await claim_both(engine, *mails)
    calls = counting_stores(monkeypatch)
    await Pipeline(engine=engine, config=config).process_batch(items)
    assert calls == [2]  # one store for the batch, not a split
    async with engine.connect() as conn:
        rows = {r.requester_email: r for r in await conn.execute(select(requests))}
    person, automatic = rows["ann.secret@example.com"], rows["bob.secret@example.org"]
    assert (person.status, person.sla_policy) == ("new", "standard")
    assert as_utc(person.due_at) is not None and as_utc(person.next_check_at) is not None
    assert (automatic.status, automatic.sla_policy, automatic.due_at,
            automatic.next_check_at) == ("closed", None, None, None)


def test_mixed_batch__every_request_row_has_the_same_columns(db_url: str) -> None:
    """The class of the defect: rows of one INSERT differ in their keys."""
    config = sla_config(db_url)
    now = utcnow()
    rows = []
    for number, raw in enumerate((PERSON, AUTOMATIC), start=1):
        item = ClaimedItem(id=number, channel="smtp", raw=raw, meta={}, attempts=1,
                           received_at=now)
        new = worker_module.build_request(item, config, config.rules, config.sla)
        rows.append(request_row(item, new, now))
    assert rows[0]["sla_policy"] == "standard" and rows[1]["sla_policy"] is None
    assert rows[0].keys() == rows[1].keys()


async def test_mixed_batch__failed_batch_logs_no_content_or_address(
        db_url: str, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A batch the database refuses (one row carries a customer's address where a
    number goes, and no status) is split and logged: type and SQLSTATE, never the
    statement's values."""
    config = sla_config(db_url)
    items = await claim_both(engine, PERSON, AUTOMATIC)
    real = store_module.request_row

    def broken(item: ClaimedItem, new: NewRequest, now: Any) -> dict[str, Any]:
        row = real(item, new, now)
        if new.requester_email and new.requester_email.startswith("bob"):
            row |= {"escalation_level": new.requester_email, "status": None}
        return row

    monkeypatch.setattr(store_module, "request_row", broken)
    calls = counting_stores(monkeypatch)
    caplog.set_level(logging.INFO)
    await Pipeline(engine=engine, config=config).process_batch(items)
    assert calls == [2, 1, 1]  # failed together, then one by one
    assert any("splitting" in r.getMessage() for r in caplog.records)
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    shown = "\n".join(formatter.format(r) for r in caplog.records if r.levelno >= logging.INFO)
    assert "@" not in shown.replace("[address]", ""), shown
    for secret in SECRETS:
        assert secret not in shown, (secret, shown)
