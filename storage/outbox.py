"""The outbox: outbound effects written with the change that causes them.

Rows are enqueued inside the caller's transaction (so a rolled-back change
sends nothing) and claimed by workers with a lease (`FOR UPDATE SKIP LOCKED`),
so two processes never deliver the same row. A unique `dedupe_key` makes
"one acknowledgement per request" hold even if the pipeline runs twice.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.lifecycle import Actor, DeliveryState, EventKind, PublicEvent
from storage.audit import Audit, audit_dead_letters
from storage.engine import as_utc, connection, insert_new, transaction, utcnow
from storage.models import events, outbox, requests
from storage.records import NewMessage


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    kind: str
    request_id: int | None
    payload: dict[str, Any]
    attempts: int
    created_at: datetime


def message_payload(m: NewMessage) -> dict[str, Any]:
    """An outbound message as the mail worker needs it (JSON-able)."""
    return {"subject": m.subject, "text": m.text, "from_address": m.from_address,
            "from_name": m.from_name, "to": m.to, "cc": m.cc, "message_id": m.message_id,
            "in_reply_to": m.in_reply_to, "references": m.references,
            "auto_submitted": m.flags.get("auto_submitted")} | _parts(m)


def _parts(m: NewMessage) -> dict[str, Any]:
    """An HTML alternative and files, when the message has them (an agent's reply:
    bounded in count and size by the API), carried in the row as the worker sends them."""
    found: dict[str, Any] = {}
    if m.html:
        found["html"] = m.html
    if m.attachments:
        found["attachments"] = [
            {"filename": a.filename, "content_type": a.content_type,
             "content_base64": base64.b64encode(a.content).decode("ascii")}
            for a in m.attachments]
    return found


async def enqueue(conn: AsyncConnection, kind: str, payload: dict[str, Any], *,
                  request_id: int | None = None, dedupe_key: str | None = None,
                  recipient: str | None = None, recipient_domain: str | None = None,
                  dead_because: str | None = None) -> None:
    """Add a row in the caller's transaction; a row with the same key is kept once.
    `recipient` and its domain: what an acknowledgement's limits count it on.
    `dead_because`: the row is a dead letter from the start (it cannot be sent as
    it is; an operator retries it once the cause is fixed)."""
    await enqueue_rows(conn, [outbox_row(kind, payload, utcnow(), request_id=request_id,
                                         dedupe_key=dedupe_key, recipient=recipient,
                                         recipient_domain=recipient_domain,
                                         dead_because=dead_because)])


def outbox_row(kind: str, payload: dict[str, Any], now: datetime, *,
               request_id: int | None = None, dedupe_key: str | None = None,
               recipient: str | None = None, recipient_domain: str | None = None,
               dead_because: str | None = None) -> dict[str, Any]:
    """One outbox row as `enqueue` describes it. Every row has the same columns,
    so a batch of them is one executemany (`enqueue_rows`)."""
    return {"kind": kind, "request_id": request_id, "payload": payload,
            "dedupe_key": dedupe_key, "attempts": 0, "next_attempt_at": now,
            "created_at": now, "recipient": recipient, "recipient_domain": recipient_domain,
            **({"state": DeliveryState.PENDING, "last_error": None} if dead_because is None
               else {"state": DeliveryState.DEAD, "last_error": dead_because[:4000]})}


async def enqueue_rows(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Add `outbox_row`s in the caller's transaction, in one statement (executed
    for many rows: SQLAlchemy's insertmanyvalues); a row whose key is taken is kept once."""
    if rows:
        await conn.execute(insert_new(conn, outbox), rows)


async def claim_due(engine: AsyncEngine, *, limit: int, lease_seconds: float,
                    kinds: tuple[str, ...] | None = None) -> list[OutboxItem]:
    now = utcnow()
    ready = or_(
        and_(outbox.c.state == DeliveryState.PENDING, outbox.c.next_attempt_at <= now),
        and_(outbox.c.state == DeliveryState.SENDING, outbox.c.lease_until < now),
    )
    if kinds:
        ready = and_(ready, outbox.c.kind.in_(kinds))
    candidates = (select(outbox.c.id).where(ready).order_by(outbox.c.next_attempt_at,
                                                            outbox.c.id)
                  .limit(limit).with_for_update(skip_locked=True))
    async with transaction(engine) as conn:
        rows = (await conn.execute(
            update(outbox).where(outbox.c.id.in_(candidates.scalar_subquery()))
            .values(state=DeliveryState.SENDING, attempts=outbox.c.attempts + 1,
                    lease_until=now + timedelta(seconds=lease_seconds))
            .returning(outbox.c.id, outbox.c.kind, outbox.c.request_id, outbox.c.payload,
                       outbox.c.attempts, outbox.c.created_at))).all()
    return sorted((OutboxItem(r.id, r.kind, r.request_id, r.payload, r.attempts,
                              as_utc(r.created_at) or now) for r in rows), key=lambda i: i.id)


@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of one of a request's mails, for its timeline: no content,
    no addresses, only the outcome and the relay's reply code."""

    request_id: int
    data: dict[str, Any]


async def _record_delivery(conn: AsyncConnection, delivery: Delivery | None) -> None:
    if delivery is not None:
        await conn.execute(insert(events), {
            "request_id": delivery.request_id, "kind": EventKind.DELIVERY,
            "actor": Actor.SYSTEM, "at": utcnow(), "data": delivery.data})


async def mark_done(engine: AsyncEngine, item_id: int, *,
                    delivery: Delivery | None = None) -> None:
    async with transaction(engine) as conn:
        await conn.execute(update(outbox).where(outbox.c.id == item_id).values(
            state=DeliveryState.DONE, delivered_at=utcnow(), lease_until=None,
            last_error=None))
        await _record_delivery(conn, delivery)


async def mark_failed(engine: AsyncEngine, item_id: int, error: str, *,
                      retry_at: datetime | None, delivery: Delivery | None = None) -> None:
    """Back to pending until `retry_at`, or dead-lettered when `retry_at` is None."""
    values: dict[str, Any] = {"last_error": error[:4000], "lease_until": None}
    values |= ({"state": DeliveryState.DEAD} if retry_at is None
               else {"state": DeliveryState.PENDING, "next_attempt_at": retry_at})
    async with transaction(engine) as conn:
        await conn.execute(update(outbox).where(outbox.c.id == item_id).values(values))
        await _record_delivery(conn, delivery)


async def dead_rows(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with connection(engine) as conn:
        rows = (await conn.execute(
            select(outbox.c.id, outbox.c.kind, outbox.c.attempts, outbox.c.last_error,
                   outbox.c.created_at, requests.c.reference)
            .join(requests, requests.c.id == outbox.c.request_id, isouter=True)
            .where(outbox.c.state == DeliveryState.DEAD).order_by(outbox.c.id))).all()
    return [{"id": r.id, "kind": r.kind, "attempts": r.attempts, "last_error": r.last_error,
             "created_at": as_utc(r.created_at), "reference": r.reference} for r in rows]


async def retry_dead(engine: AsyncEngine, ids: list[int] | None = None, *,
                     audit: Audit | None = None) -> int:
    condition = outbox.c.state == DeliveryState.DEAD
    if ids is not None:
        condition = and_(condition, outbox.c.id.in_(ids))
    async with transaction(engine) as conn:
        done = (await conn.execute(update(outbox).where(condition).values(
            state=DeliveryState.PENDING, attempts=0, next_attempt_at=utcnow(),
            lease_until=None).returning(outbox.c.id))).scalars().all()
        if audit is not None and done:
            await audit_dead_letters(conn, audit, "dead_letter.retry", "outbox", done)
    return len(done)


async def discard_dead(engine: AsyncEngine, ids: list[int], *,
                       audit: Audit | None = None) -> int:
    async with transaction(engine) as conn:
        done = (await conn.execute(
            update(outbox).where(outbox.c.state == DeliveryState.DEAD, outbox.c.id.in_(ids))
            .values(state=DeliveryState.DISCARDED, lease_until=None)
            .returning(outbox.c.id))).scalars().all()
        if audit is not None and done:
            await audit_dead_letters(conn, audit, "dead_letter.discard", "outbox", done)
    return len(done)


async def rows_for(engine: AsyncEngine, request_id: int | None = None) -> list[dict[str, Any]]:
    """Outbox rows (all, or of one request), for tests and operators."""
    query = select(outbox).order_by(outbox.c.id)
    if request_id is not None:
        query = query.where(outbox.c.request_id == request_id)
    async with connection(engine) as conn:
        return [dict(r._mapping) for r in (await conn.execute(query)).all()]


async def emit(conn: AsyncConnection, event: PublicEvent, request_id: int, reference: str,
               data: dict[str, Any], *, requester: Requester | None = None) -> None:
    """Record that something happened to a request, for webhooks and brokers.

    One `event` row per happening, in the transaction of the change; the
    worker fans it out to each subscriber, so storage needs no configuration.
    Every event names the request's requester (`requester`, else read here).
    """
    if requester is None:
        row = (await conn.execute(select(requests.c.requester_email, requests.c.requester_name)
                                  .where(requests.c.id == request_id))).first()
        requester = Requester(row.requester_email if row else None,
                              row.requester_name if row else None)
    await enqueue_rows(conn, [event_row(event, request_id, reference, data, requester,
                                        utcnow())])


def event_row(event: PublicEvent, request_id: int, reference: str, data: dict[str, Any],
              requester: Requester, now: datetime) -> dict[str, Any]:
    """The outbox row of one `emit`: a batch gathers these for one `enqueue_rows`."""
    return outbox_row("event", {"event": event, "reference": reference,
                                "at": now.isoformat(), "data": data,
                                "requester": {"email": requester.email,
                                              "name": requester.name}},
                      now, request_id=request_id)


@dataclass(frozen=True, slots=True)
class Requester:
    """Who a request is for, as every event names them."""

    email: str | None
    name: str | None


@dataclass(frozen=True, slots=True)
class FanOut:
    """One event row and the rows it becomes: (kind, payload) per target."""

    item_id: int
    request_id: int | None
    targets: tuple[tuple[str, dict[str, Any]], ...]


async def fan_out(engine: AsyncEngine, events: Sequence[FanOut]) -> None:
    """Replace each event row by one row per target: a batch in one transaction.

    One INSERT for every target row of the batch (a row already made, by an
    earlier attempt whose outcome was unknown, is kept once by its dedupe key)
    and one UPDATE marking the events done. Fanning out row by row cost a
    transaction per event (about 279 rows/s, even idle).
    """
    if not events:
        return
    now = utcnow()
    rows = [{"kind": kind, "request_id": event.request_id, "payload": payload,
             "dedupe_key": f"{event.item_id}:{kind}:{payload.get('target', '')}",
             "state": DeliveryState.PENDING, "attempts": 0,
             # A target may wait (an agent's notice through quiet hours), and name
             # the address it goes to (a digest gathers that address's notices).
             "next_attempt_at": _due(payload, now), "created_at": now,
             "recipient": payload.get("recipient"), "recipient_domain": None}
            for event in events for kind, payload in event.targets]
    async with transaction(engine) as conn:
        if rows:
            await conn.execute(insert_new(conn, outbox), rows)
        await conn.execute(update(outbox).where(
            outbox.c.id.in_([event.item_id for event in events])).values(
            state=DeliveryState.DONE, delivered_at=now, lease_until=None))


def _due(payload: dict[str, Any], now: datetime) -> datetime:
    try:
        return max(now, as_utc(datetime.fromisoformat(payload["due"])) or now)
    except (KeyError, TypeError, ValueError):
        return now


async def give_back(engine: AsyncEngine, item_ids: Sequence[int], error: str, *,
                    retry_at: datetime) -> None:
    """Claimed rows back to pending for `retry_at`, in one statement (a batch whose
    work failed for the database, not for the rows: their claim is not counted
    as an attempt)."""
    if not item_ids:
        return
    async with transaction(engine) as conn:
        await conn.execute(update(outbox).where(
            outbox.c.id.in_(list(item_ids)), outbox.c.state == DeliveryState.SENDING).values(
            state=DeliveryState.PENDING, next_attempt_at=retry_at, lease_until=None,
            last_error=error[:4000],
            attempts=case((outbox.c.attempts > 0, outbox.c.attempts - 1), else_=0)))
