"""The pipeline wakes the outbox after a store only when the store queued rows
for it (an acknowledgement, an event a subscriber takes): every wake is a
claim, a write transaction, and on SQLite a turn of the process's one writer.
On both backends."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.lifecycle import EventKind
from gateway.config import Config
from gateway.pipeline.worker import Pipeline
from storage.inbox import NewItem, accept_many
from storage.models import events, outbox
from storage.processing import claim_items
from tests.helpers import make_config

HOOK = {"name": "all", "url": "https://all.example.com/hook", "events": ["created"],
        "secret": "s" * 32}


def mail(message_id: str, *, parent: str | None = None, subject: str = "Printer on fire"
         ) -> bytes:
    threading = f"In-Reply-To: <{parent}>\r\nReferences: <{parent}>\r\n" if parent else ""
    return (f"From: Ann <ann@example.com>\r\nTo: support@localhost\r\nSubject: {subject}\r\n"
            f"Message-ID: <{message_id}>\r\n{threading}\r\nIt is on fire.\r\n").encode()


async def wakes_of(engine: AsyncEngine, config: Config, *raws: bytes) -> int:
    """Accept `raws`, store them in one batch; how often the outbox was woken."""
    await accept_many(engine, [NewItem("smtp", raw, {"rcpt_tos": ["support@localhost"]})
                               for raw in raws])
    wakes: list[None] = []
    pipe = Pipeline(engine=engine, config=config, on_stored=lambda: wakes.append(None))
    items = await claim_items(engine, limit=50, lease_seconds=30)
    assert len(items) == len(raws)
    await pipe.process_batch(items)
    return len(wakes)


async def outbox_rows(engine: AsyncEngine) -> list[tuple[str, str]]:
    async with engine.connect() as conn:
        return [(kind, state) for kind, state in await conn.execute(
            select(outbox.c.kind, outbox.c.state).order_by(outbox.c.id))]


async def test_outbox_wake__only_after_a_store_that_queued_rows(
        engine: AsyncEngine, db_url: str) -> None:
    # One acknowledgement per mailbox per hour: the second new request's is held.
    config = make_config(db_url, outbound={"acknowledgements_per_hour": 1})
    # A new request: its acknowledgement is queued, and the outbox told.
    assert await wakes_of(engine, config, mail("w1@example.com")) == 1
    assert await outbox_rows(engine) == [("email", "pending")]
    # A reply joins it: no acknowledgement, no subscriber, nothing queued.
    assert await wakes_of(engine, config, mail("w2@example.com", parent="w1@example.com")) == 0
    # A new request whose acknowledgement the limit holds back: nothing queued.
    assert await wakes_of(engine, config, mail("w3@example.com", subject="Toner")) == 0
    async with engine.connect() as conn:
        skipped = await conn.scalar(select(func.count()).select_from(events).where(
            events.c.kind == EventKind.ACKNOWLEDGEMENT_SKIPPED))
    assert skipped == 1
    assert await outbox_rows(engine) == [("email", "pending")]
    # A subscriber to new requests: in a batch of a reply (nothing queued) and a
    # new request (its acknowledgement held, its `created` event queued), the
    # one row wakes the outbox, once.
    subscribed = make_config(db_url, outbound={"acknowledgements_per_hour": 1}, webhook=[HOOK])
    assert await wakes_of(engine, subscribed, mail("w4@example.com", parent="w1@example.com"),
                          mail("w5@example.com", subject="Paper")) == 1
    assert await outbox_rows(engine) == [("email", "pending"), ("event", "pending")]
