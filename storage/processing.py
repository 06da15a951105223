"""Turning committed inbox items into requests: claim, complete, fail, replay.

Claims are single statements (UPDATE ... WHERE id IN (SELECT ... FOR UPDATE
SKIP LOCKED) RETURNING) so two processes never take the same item; SQLite has
one writer at a time, so the same statement is serialised there. A claim is a
lease: if the process dies, the item becomes claimable again when it expires.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage.engine import as_utc, utcnow
from storage.models import attachments, blobs, events, inbox_items, messages, requests
from storage.reference import reference_for


@dataclass(frozen=True, slots=True)
class ClaimedItem:
    id: int
    channel: str
    raw: bytes
    meta: dict[str, Any]
    attempts: int
    received_at: datetime

    @property
    def reference(self) -> str:
        return reference_for(self.id)


@dataclass(frozen=True, slots=True)
class NewAttachment:
    filename: str | None
    content_type: str
    content: bytes
    content_id: str | None = None
    inline: bool = False


@dataclass(frozen=True, slots=True)
class NewMessage:
    subject: str
    text: str
    new_text: str
    from_address: str | None
    from_name: str | None
    message_id: str | None = None
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    to: list[dict[str, str]] = field(default_factory=list)
    cc: list[dict[str, str]] = field(default_factory=list)
    html: str | None = None
    flags: dict[str, Any] = field(default_factory=dict)
    attachments: list[NewAttachment] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class NewRequest:
    """What the pipeline decided an inbox item becomes."""

    queue: str
    message: NewMessage
    requester_email: str | None
    requester_name: str | None
    custom_fields: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)


async def claim_items(engine: AsyncEngine, *, limit: int, lease_seconds: float,
                      now: datetime | None = None) -> list[ClaimedItem]:
    now = now or utcnow()
    ready = or_(
        and_(inbox_items.c.state == "pending", inbox_items.c.next_attempt_at <= now),
        # A lease that ran out means its process died mid-item: take it over.
        and_(inbox_items.c.state == "processing", inbox_items.c.lease_until < now),
    )
    candidates = (
        select(inbox_items.c.id).where(ready).order_by(inbox_items.c.id).limit(limit)
        .with_for_update(skip_locked=True)
    )
    statement = (
        update(inbox_items)
        .where(inbox_items.c.id.in_(candidates.scalar_subquery()))
        .values(state="processing", attempts=inbox_items.c.attempts + 1,
                lease_until=now + timedelta(seconds=lease_seconds))
        .returning(inbox_items.c.id, inbox_items.c.channel, inbox_items.c.raw,
                   inbox_items.c.meta, inbox_items.c.attempts, inbox_items.c.received_at)
    )
    async with engine.begin() as conn:
        rows = (await conn.execute(statement)).all()
    return sorted(
        (ClaimedItem(r.id, r.channel, r.raw, r.meta, r.attempts, as_utc(r.received_at))  # type: ignore[arg-type]
         for r in rows),
        key=lambda c: c.id,
    )


async def complete_item(engine: AsyncEngine, item: ClaimedItem, new: NewRequest) -> str:
    """Create request, message, attachments and events, and mark the item done."""
    return (await complete_items(engine, [(item, new)]))[0]


async def complete_items(engine: AsyncEngine,
                         work: Sequence[tuple[ClaimedItem, NewRequest]]) -> list[str]:
    """Store what a batch of items became, all in one transaction.

    An item that already has its request (it ran before and only its state
    update was lost, or two workers raced after a lease ran out) gets nothing
    new: the unique requests.inbox_item_id makes a twin impossible, and a race
    lost here fails the transaction, to be retried.
    """
    now = utcnow()
    async with engine.begin() as conn:
        done = set((await conn.execute(
            select(requests.c.inbox_item_id)
            .where(requests.c.inbox_item_id.in_([item.id for item, _ in work])))).scalars())
        fresh = [(item, new) for item, new in work if item.id not in done]
        if fresh:
            request_ids = await _insert_returning(conn, requests, [{
                "reference": item.reference, "inbox_item_id": item.id, "status": "new",
                "queue": new.queue, "channel": item.channel,
                "requester_email": new.requester_email, "requester_name": new.requester_name,
                "subject": new.message.subject, "custom_fields": new.custom_fields,
                "tags": [], "escalation_level": 0, "created_at": now, "updated_at": now,
                "version": 1,
            } for item, new in fresh])
            message_ids = await _insert_returning(conn, messages, [
                _message_row(request_id, item.id, new.message, now)
                for request_id, (item, new) in zip(request_ids, fresh, strict=True)])
            await _insert_attachments(conn, [
                (message_id, a) for message_id, (_, new) in zip(message_ids, fresh, strict=True)
                for a in new.message.attachments])
            event_rows = [
                {"request_id": request_id, "kind": kind, "actor": actor, "at": now,
                 "data": data}
                for request_id, (_, new) in zip(request_ids, fresh, strict=True)
                for kind, actor, data in new.events]
            if event_rows:
                await conn.execute(insert(events), event_rows)
        await conn.execute(
            update(inbox_items).where(inbox_items.c.id.in_([item.id for item, _ in work]))
            .values(state="done", lease_until=None, last_error=None))
    return [item.reference for item, _ in work]


async def _insert_returning(conn: AsyncConnection, table: Any,
                            rows: list[dict[str, Any]]) -> list[int]:
    statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
    return [row[0] for row in await conn.execute(statement, rows)]


def _message_row(request_id: int, item_id: int, m: NewMessage,
                 now: datetime) -> dict[str, Any]:
    return {
        "request_id": request_id, "inbox_item_id": item_id, "direction": "in",
        "message_id": m.message_id, "in_reply_to": m.in_reply_to,
        "references": m.references, "from_address": m.from_address,
        "from_name": m.from_name, "to": m.to, "cc": m.cc, "subject": m.subject,
        "new_text": m.new_text, "text": m.text, "html": m.html, "flags": m.flags,
        "created_at": now,
    }


async def _insert_attachments(conn: AsyncConnection,
                              found: list[tuple[int, NewAttachment]]) -> None:
    if not found:
        return
    hashed = [(message_id, a, hashlib.sha256(a.content).hexdigest()) for message_id, a in found]
    contents = {sha: a.content for _, a, sha in hashed}
    rows = [{"sha256": sha, "size": len(content), "content": content}
            for sha, content in contents.items()]
    # Content is stored once per hash, however many messages carry it.
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    await conn.execute(dialect_insert(blobs).on_conflict_do_nothing(), rows)
    await conn.execute(insert(attachments), [{
        "message_id": message_id, "sha256": sha, "filename": a.filename,
        "content_type": a.content_type, "size": len(a.content),
        "content_id": a.content_id, "inline": a.inline,
    } for message_id, a, sha in hashed])


async def fail_item(engine: AsyncEngine, item_id: int, error: str, *, dead: bool,
                    retry_at: datetime | None = None) -> None:
    """Record a failed attempt: back to pending for later, or dead-lettered."""
    values: dict[str, Any] = {"last_error": error[:4000], "lease_until": None}
    if dead:
        values["state"] = "dead"
    else:
        values |= {"state": "pending", "next_attempt_at": retry_at or utcnow()}
    async with engine.begin() as conn:
        await conn.execute(update(inbox_items).where(inbox_items.c.id == item_id).values(values))


async def requeue_dead(engine: AsyncEngine, item_ids: list[int] | None = None) -> int:
    """Put dead-lettered items (all, or the given ones) back for processing."""
    condition = inbox_items.c.state == "dead"
    if item_ids is not None:
        condition = and_(condition, inbox_items.c.id.in_(item_ids))
    async with engine.begin() as conn:
        result = await conn.execute(update(inbox_items).where(condition).values(
            state="pending", attempts=0, next_attempt_at=utcnow(), lease_until=None))
    return result.rowcount


async def dead_items(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(
            select(inbox_items.c.id, inbox_items.c.channel, inbox_items.c.received_at,
                   inbox_items.c.attempts, inbox_items.c.last_error)
            .where(inbox_items.c.state == "dead").order_by(inbox_items.c.id))).all()
    return [{"id": r.id, "reference": reference_for(r.id), "channel": r.channel,
             "received_at": as_utc(r.received_at), "attempts": r.attempts,
             "last_error": r.last_error} for r in rows]


async def state_counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = (await conn.execute(
            select(inbox_items.c.state, func.count()).group_by(inbox_items.c.state))).all()
    return {state: count for state, count in rows}


async def release_claims(engine: AsyncEngine) -> int:
    """Hand back every claimed item at once (SQLite: one process, so all are ours).

    On PostgreSQL other live processes may hold claims; there leases expire.
    """
    async with engine.begin() as conn:
        result = await conn.execute(
            update(inbox_items).where(inbox_items.c.state == "processing")
            .values(state="pending", lease_until=None))
    return result.rowcount
