"""Agents' notifications: outbox rows of kind `notification`, one per recipient
and happening, due when the recipient may be told (after quiet hours, at the
end of a digest window). The row's `recipient` column holds the address, so the
one that falls due takes every pending row of that address with it: one mail
lists them all (a digest). What is due when is the gateway's choice
(gateway/delivery/notifications.py); this module stores and claims.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.lifecycle import DeliveryState
from storage.engine import connection, insert_new, transaction, utcnow
from storage.models import agents, outbox, requests

KIND = "notification"


@dataclass(frozen=True, slots=True)
class Notice:
    """One happening for one recipient, and when it may go."""

    to: str
    name: str
    payload: dict[str, Any]
    due: datetime
    dedupe_key: str


class Recipient(NamedTuple):
    """An agent to tell, with their own quiet hours and digest window (None: the queue's)."""

    email: str
    name: str
    quiet_hours: str | None = None
    digest_minutes: int | None = None


async def queue_agents(engine: AsyncEngine) -> dict[str, list[Recipient]]:
    """Active agents by the queues they work; under `*` those who work every
    queue (no queues listed)."""
    async with connection(engine) as conn:
        rows = (await conn.execute(select(agents.c.email, agents.c.name, agents.c.queues,
                                          agents.c.quiet_hours, agents.c.digest_minutes)
                                   .where(agents.c.active.is_(True)))).all()
    found: dict[str, list[Recipient]] = {}
    for row in rows:
        for queue in row.queues or ["*"]:
            found.setdefault(str(queue), []).append(
                Recipient(row.email, row.name, row.quiet_hours, row.digest_minutes))
    return found


def rows(notices: Sequence[Notice], request_id: int | None) -> list[dict[str, Any]]:
    now = utcnow()
    return [{"kind": KIND, "request_id": request_id,
             "payload": n.payload | {"to": n.to, "name": n.name},
             "dedupe_key": n.dedupe_key, "state": DeliveryState.PENDING, "attempts": 0,
             "next_attempt_at": n.due, "created_at": now, "recipient": n.to.lower(),
             "recipient_domain": None} for n in notices]


async def enqueue_notices(conn: AsyncConnection, notices: Sequence[Notice],
                          request_id: int | None) -> None:
    """In the caller's transaction; a row with the same dedupe key is kept once."""
    if notices:
        await conn.execute(insert_new(conn, outbox), rows(notices, request_id))


async def claim_digest(engine: AsyncEngine, recipient: str, *, lease_seconds: float
                       ) -> list[tuple[int, dict[str, Any]]]:
    """Every other pending notification of `recipient`, due or not, claimed
    (SKIP LOCKED) to go out in one mail with the row that fell due."""
    now = utcnow()
    candidates = (select(outbox.c.id).where(
        outbox.c.kind == KIND, outbox.c.recipient == recipient.lower(),
        outbox.c.state == DeliveryState.PENDING)
        .order_by(outbox.c.id).limit(200).with_for_update(skip_locked=True))
    async with transaction(engine) as conn:
        found = (await conn.execute(
            update(outbox).where(outbox.c.id.in_(candidates.scalar_subquery()))
            .values(state=DeliveryState.SENDING,
                    lease_until=now + timedelta(seconds=lease_seconds))
            .returning(outbox.c.id, outbox.c.payload))).all()
    return sorted(((r.id, r.payload) for r in found), key=lambda pair: pair[0])


async def finish_digest(engine: AsyncEngine, ids: Sequence[int], *, sent: bool,
                        retry_at: datetime | None = None) -> None:
    """The rows a digest carried: done when it was sent, else pending again."""
    if not ids:
        return
    values: dict[str, Any] = (
        {"state": DeliveryState.DONE, "delivered_at": utcnow(), "lease_until": None}
        if sent else {"state": DeliveryState.PENDING, "lease_until": None,
                      "next_attempt_at": retry_at or utcnow()})
    async with transaction(engine) as conn:
        await conn.execute(update(outbox).where(outbox.c.id.in_(list(ids)),
                                                outbox.c.state == DeliveryState.SENDING)
                           .values(values))


async def request_facts(engine: AsyncEngine, ids: Sequence[int]
                        ) -> dict[int, dict[str, Any]]:
    """Queue, status, subject and priority of requests by id, as they are now
    (an escalation may have moved one): what a notice says."""
    if not ids:
        return {}
    async with connection(engine) as conn:
        found = (await conn.execute(
            select(requests.c.id, requests.c.queue, requests.c.status, requests.c.subject,
                   requests.c.priority).where(requests.c.id.in_(sorted(set(ids)))))).all()
    return {r.id: {"queue": r.queue, "status": r.status, "subject": r.subject,
                   "priority": r.priority} for r in found}
