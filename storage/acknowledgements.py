"""Acknowledgements of new requests: stored as our outbound message and queued
for delivery in the transaction that stores the request.

How many one address may get is the lifecycle's rule
(`domain.lifecycle.acknowledgement_limited`); this module counts what was sent.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.lifecycle import (
    ACKNOWLEDGEMENT_WINDOW,
    Event,
    EventKind,
    acknowledgement_limited,
)
from storage.models import messages, outbox, requests
from storage.outbox import enqueue, message_payload
from storage.records import NewRequest
from storage.rows import outbound_row

ACK_KEY = "ack:"  # the outbox dedupe key's prefix: one acknowledgement per request


async def queue_acknowledgements(conn: AsyncConnection, created: list[tuple[int, NewRequest]],
                                 now: datetime, per_hour: int | None
                                 ) -> list[tuple[int, Event]]:
    """Queue the acknowledgement of each new request that has one, unless its
    address has had its share; the timeline events, by request id."""
    found: list[tuple[int, Event]] = []
    counted: dict[str, int] = {}  # per address: sent in the window, this batch included
    for request_id, new in created:
        ack = new.acknowledgement
        if ack is None or not ack.to:
            continue
        address = ack.to[0]["address"].lower()
        if per_hour is not None:
            sent = counted.get(address)
            if sent is None:
                sent = await _sent_recently(conn, address, now)
            refused = acknowledgement_limited(address=address, sent=sent, per_hour=per_hour)
            counted[address] = sent if refused else sent + 1
            if refused:
                found.append((request_id, Event(kind=EventKind.ACKNOWLEDGEMENT_SKIPPED,
                                                data={"reason": refused})))
                continue
        await conn.execute(insert(messages), outbound_row(request_id, ack, now))
        await enqueue(conn, "email", {"message": message_payload(ack),
                                      "purpose": "acknowledgement"},
                      request_id=request_id, dedupe_key=f"{ACK_KEY}{request_id}")
        found.append((request_id, Event(kind=EventKind.ACKNOWLEDGEMENT_QUEUED,
                                        data={"message_id": ack.message_id, "to": ack.to})))
    return found


async def _sent_recently(conn: AsyncConnection, address: str, now: datetime) -> int:
    """Acknowledgements queued for requests from `address` in the window."""
    return int((await conn.execute(
        select(func.count()).select_from(outbox)
        .join(requests, requests.c.id == outbox.c.request_id)
        .where(requests.c.requester_email == address,
               outbox.c.dedupe_key.like(f"{ACK_KEY}%"),
               outbox.c.created_at > now - ACKNOWLEDGEMENT_WINDOW))).scalar_one())
