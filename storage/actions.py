"""Changes made to stored requests after intake: release from quarantine,
re-routing. Each is one transaction with its timeline event."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.engine import as_utc, utcnow
from storage.models import events, inbox_items, requests

OPEN_STATUSES = ("new", "open", "waiting", "reopened", "quarantined")


async def list_by_status(engine: AsyncEngine, status: str,
                         queues: list[str] | None = None) -> list[dict[str, Any]]:
    query = (select(requests.c.reference, requests.c.queue, requests.c.subject,
                    requests.c.requester_email, requests.c.created_at)
             .where(requests.c.status == status).order_by(requests.c.id))
    if queues is not None:
        query = query.where(requests.c.queue.in_(queues))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [{"reference": r.reference, "queue": r.queue, "subject": r.subject,
             "requester": r.requester_email, "created_at": as_utc(r.created_at)} for r in rows]


async def release(engine: AsyncEngine, reference: str, actor: str) -> str | None:
    """Let a quarantined request in: status new; None if it was not held."""
    now = utcnow()
    async with engine.begin() as conn:
        row = (await conn.execute(
            update(requests)
            .where(requests.c.reference == reference, requests.c.status == "quarantined")
            .values(status="new", updated_at=now, version=requests.c.version + 1)
            .returning(requests.c.id, requests.c.queue))).first()
        if row is None:
            return None
        await conn.execute(insert(events), {
            "request_id": row.id, "kind": "released", "actor": actor, "at": now,
            "data": {"from": "quarantined", "queue": row.queue}})
    return str(row.queue)


async def open_requests(engine: AsyncEngine, references: list[str] | None = None,
                        queue: str | None = None) -> list[dict[str, Any]]:
    """Open requests with the raw input they came from, for re-routing."""
    query = (select(requests.c.id, requests.c.reference, requests.c.queue,
                    requests.c.priority, requests.c.type, requests.c.category,
                    requests.c.component, requests.c.escalation_level, requests.c.status,
                    inbox_items.c.id.label("item_id"), inbox_items.c.channel,
                    inbox_items.c.raw, inbox_items.c.meta, inbox_items.c.received_at)
             .join(inbox_items, inbox_items.c.id == requests.c.inbox_item_id)
             .where(requests.c.status.in_(OPEN_STATUSES)).order_by(requests.c.id))
    if references is not None:
        query = query.where(requests.c.reference.in_(references))
    if queue is not None:
        query = query.where(requests.c.queue == queue)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [dict(r._mapping) | {"received_at": as_utc(r.received_at)} for r in rows]


async def reroute(engine: AsyncEngine, request_id: int, changes: dict[str, Any],
                  decision: dict[str, Any], actor: str) -> None:
    """Apply the current rules' answer to a request, recording what changed."""
    now = utcnow()
    async with engine.begin() as conn:
        await conn.execute(update(requests).where(requests.c.id == request_id)
                           .values({**changes, "updated_at": now,
                                    "version": requests.c.version + 1}))
        await conn.execute(insert(events), {
            "request_id": request_id, "kind": "rerouted", "actor": actor, "at": now,
            "data": {"by": "intake reroute", "changes": changes, "decision": decision}})
