"""Turning committed inbox items into requests: claim, complete, fail, replay.

Claims are single statements (UPDATE ... WHERE id IN (SELECT ... FOR UPDATE
SKIP LOCKED) RETURNING) so two processes never take the same item; SQLite has
one writer at a time, so the same statement is serialised there. A claim is a
lease: if the process dies, the item becomes claimable again when it expires.
"""

from __future__ import annotations

import hashlib
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


async def _store_blob(conn: AsyncConnection, sha: str, content: bytes) -> None:
    values = {"sha256": sha, "size": len(content), "content": content}
    if conn.dialect.name == "postgresql":
        statement = pg_insert(blobs).values(values).on_conflict_do_nothing()
    else:
        statement = sqlite_insert(blobs).values(values).on_conflict_do_nothing()
    await conn.execute(statement)


async def complete_item(engine: AsyncEngine, item: ClaimedItem, new: NewRequest) -> str:
    """Create request, message, attachments and events, and mark the item done.

    All in one transaction. If a request for this item exists already (the
    item ran before and only its state update was lost, or two workers raced),
    nothing new is created: the unique inbox_item_id makes a twin impossible.
    """
    now = utcnow()
    reference = item.reference
    async with engine.begin() as conn:
        existing = (await conn.execute(
            select(requests.c.id).where(requests.c.inbox_item_id == item.id))).first()
        if existing is None:
            request_id = (await conn.execute(
                insert(requests).returning(requests.c.id),
                {
                    "reference": reference, "inbox_item_id": item.id, "status": "new",
                    "queue": new.queue, "channel": item.channel,
                    "requester_email": new.requester_email,
                    "requester_name": new.requester_name,
                    "subject": new.message.subject, "custom_fields": new.custom_fields,
                    "tags": [], "escalation_level": 0, "created_at": now,
                    "updated_at": now, "version": 1,
                })).scalar_one()
            await _insert_message(conn, request_id, item.id, new.message, now)
            await conn.execute(insert(events), [
                {"request_id": request_id, "kind": kind, "actor": actor, "at": now,
                 "data": data}
                for kind, actor, data in new.events
            ])
        await conn.execute(
            update(inbox_items).where(inbox_items.c.id == item.id)
            .values(state="done", lease_until=None, last_error=None))
    return reference


async def _insert_message(conn: AsyncConnection, request_id: int, item_id: int,
                          message: NewMessage, now: datetime) -> None:
    m = message
    message_row_id = (await conn.execute(insert(messages).returning(messages.c.id), {
        "request_id": request_id, "inbox_item_id": item_id, "direction": "in",
        "message_id": m.message_id, "in_reply_to": m.in_reply_to,
        "references": m.references, "from_address": m.from_address,
        "from_name": m.from_name, "to": m.to, "cc": m.cc, "subject": m.subject,
        "new_text": m.new_text, "text": m.text, "html": m.html, "flags": m.flags,
        "created_at": now,
    })).scalar_one()
    for a in m.attachments:
        sha = hashlib.sha256(a.content).hexdigest()
        await _store_blob(conn, sha, a.content)
        await conn.execute(insert(attachments), {
            "message_id": message_row_id, "sha256": sha, "filename": a.filename,
            "content_type": a.content_type, "size": len(a.content),
            "content_id": a.content_id, "inline": a.inline,
        })


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
