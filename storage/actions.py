"""Changes made to stored requests after intake: release from quarantine,
re-routing. Each is one transaction with its timeline event."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.lifecycle import (
    DEFAULT_REOPEN_DAYS,
    OPEN,
    RESOLVING,
    EventKind,
    Outcome,
    PublicEvent,
    Status,
    announces_work,
    reply_starts_new,
    status_after_merge,
)
from storage.audit import Audit
from storage.engine import as_utc, connection, transaction, utcnow
from storage.models import attachments, events, inbox_items, messages, requests
from storage.notify import notify
from storage.outbox import Requester, emit, enqueue, message_payload
from storage.records import NewMessage
from storage.rows import insert_attachments
from storage.sla_store import Clock, clock, status_columns
from storage.status_view import as_json, read_view


async def list_by_status(engine: AsyncEngine, status: Status,
                         queues: list[str] | None = None) -> list[dict[str, Any]]:
    query = (select(requests.c.reference, requests.c.queue, requests.c.subject,
                    requests.c.requester_email, requests.c.created_at)
             .where(requests.c.status == status).order_by(requests.c.id))
    if queues is not None:
        query = query.where(requests.c.queue.in_(queues))
    async with connection(engine) as conn:
        rows = (await conn.execute(query)).all()
    return [{"reference": r.reference, "queue": r.queue, "subject": r.subject,
             "requester": r.requester_email, "created_at": as_utc(r.created_at)} for r in rows]


async def release(engine: AsyncEngine, reference: str, actor: str, *,
                  expected_version: int | None = None, audit: Audit | None = None
                  ) -> str | None:
    """Let a quarantined request in: status new; None if it was not held (or, with
    `expected_version`, if it is no longer at that version). Its service-level
    clocks start now: the time it was held is a pause (domain.lifecycle.HELD)."""
    now = utcnow()
    conditions = [requests.c.reference == reference, requests.c.status == Status.QUARANTINED]
    if expected_version is not None:
        conditions.append(requests.c.version == expected_version)
    async with transaction(engine) as conn:
        held = (await conn.execute(select(requests.c.id).where(*conditions))).first()
        current = await clock(conn, held.id) if held is not None else None
        if current is None:
            return None
        row = (await conn.execute(
            update(requests).where(*conditions)
            .values(status_columns(current, Status.NEW, now) | {
                "status": Status.NEW, "updated_at": now, "version": requests.c.version + 1})
            .returning(requests.c.id, requests.c.queue))).first()
        if row is None:
            return None
        await conn.execute(insert(events), {
            "request_id": row.id, "kind": EventKind.RELEASED, "actor": actor, "at": now,
            "data": {"from": Status.QUARANTINED, "queue": row.queue}})
        await notify(conn, [row.queue])
        await emit(conn, PublicEvent.STATUS_CHANGED, row.id, reference,
                   {"from": Status.QUARANTINED, "status": Status.NEW, "actor": actor})
        if audit is not None:
            await audit.action(conn, "quarantine.release", reference, {"queue": row.queue})
    return str(row.queue)


async def open_requests(engine: AsyncEngine, references: list[str] | None = None,
                        queue: str | None = None) -> list[dict[str, Any]]:
    """Open requests with the raw input they came from, for re-routing, and
    its message's flags (the sender authentication found when it came)."""
    query = (select(requests.c.id, requests.c.reference, requests.c.queue,
                    requests.c.priority, requests.c.type, requests.c.category,
                    requests.c.component, requests.c.escalation_level, requests.c.status,
                    inbox_items.c.id.label("item_id"), inbox_items.c.channel,
                    inbox_items.c.raw, inbox_items.c.meta, inbox_items.c.received_at,
                    messages.c.flags)
             .join(inbox_items, inbox_items.c.id == requests.c.inbox_item_id)
             .outerjoin(messages, messages.c.inbox_item_id == inbox_items.c.id)
             .where(requests.c.status.in_(OPEN)).order_by(requests.c.id))
    if references is not None:
        query = query.where(requests.c.reference.in_(references))
    if queue is not None:
        query = query.where(requests.c.queue == queue)
    async with connection(engine) as conn:
        rows = (await conn.execute(query)).all()
    return [dict(r._mapping) | {"received_at": as_utc(r.received_at)} for r in rows]


async def reroute(engine: AsyncEngine, request_id: int, changes: dict[str, Any],
                  decision: dict[str, Any], actor: str, *, audit: Audit | None = None,
                  reference: str | None = None) -> None:
    """Apply the current rules' answer to a request, recording what changed."""
    now = utcnow()
    async with transaction(engine) as conn:
        if audit is not None:
            await audit.action(conn, "request.reroute", reference or f"id:{request_id}",
                               {"by": "rules", "changes": _jsonable(changes)})
        await conn.execute(update(requests).where(requests.c.id == request_id)
                           .values({**changes, "updated_at": now,
                                    "version": requests.c.version + 1}))
        await conn.execute(insert(events), {
            "request_id": request_id, "kind": EventKind.REROUTED, "actor": actor, "at": now,
            "data": {"by": "intake reroute", "changes": changes, "decision": decision}})


# What an agent may set through PATCH, per role; everything else is read-only.
AGENT_FIELDS = frozenset({"status", "queue", "priority", "type", "category", "component",
                          "tags", "custom_fields"})
ADMIN_FIELDS = AGENT_FIELDS | {"escalation_level"}


@dataclass(frozen=True, slots=True)
class Updated:
    outcome: Outcome  # OK, STALE or MISSING
    version: int | None = None


async def _request_id(conn: AsyncConnection, reference: str) -> tuple[int, int] | None:
    row = (await conn.execute(select(requests.c.id, requests.c.version)
                              .where(requests.c.reference == reference))).first()
    return None if row is None else (row.id, row.version)


async def update_fields(engine: AsyncEngine, reference: str, expected_version: int | None,
                        changes: dict[str, Any], actor: str, *,
                        kind: EventKind = EventKind.UPDATED,
                        note: dict[str, Any] | None = None,
                        audit: Audit | None = None) -> Updated:
    """Change fields if the version still matches (optimistic concurrency). A
    move to another queue is audited (`request.reroute`) with `audit`."""
    now = utcnow()
    async with transaction(engine) as conn:
        found = await _request_id(conn, reference)
        if found is None:
            return Updated(Outcome.MISSING)
        request_id, version = found
        if expected_version is not None and expected_version != version:
            return Updated(Outcome.STALE, version)
        follow: dict[str, Any] = {}
        current: Clock | None = None
        if "status" in changes:
            current = await clock(conn, request_id)
            if current is not None:
                follow = status_columns(current, Status(changes["status"]), now)
        released = _claim_ends(changes)
        moved_from = None
        if audit is not None and "queue" in changes:
            moved_from = (await conn.execute(select(requests.c.queue)
                                             .where(requests.c.id == request_id))).scalar()
        row = (await conn.execute(
            update(requests).where(requests.c.id == request_id, requests.c.version == version)
            .values({**follow, **released, **changes, "updated_at": now,
                     "version": version + 1})
            .returning(requests.c.version, requests.c.queue, requests.c.status))).first()
        if row is None:  # changed between our read and write
            return Updated(Outcome.STALE)
        await conn.execute(insert(events), {
            "request_id": request_id, "kind": kind, "actor": actor, "at": now,
            "data": {"changes": _jsonable(changes)} | (note or {})
            | ({"claim_released": True} if released else {})})
        if "queue" in changes or ("status" in changes
                                  and announces_work(Status(changes["status"]))):
            await notify(conn, [row.queue])
        if "status" in changes and (current is None or current.status != changes["status"]):
            await emit(conn, PublicEvent.STATUS_CHANGED, request_id, reference,
                       {"from": current.status if current else None,
                        "status": changes["status"], "actor": actor})
            if "reopened_count" in follow:
                await emit(conn, PublicEvent.REOPENED, request_id, reference,
                           {"from": current.status if current else None, "by": "hand",
                            "actor": actor})
        if kind == EventKind.ESCALATED:
            await emit(conn, PublicEvent.ESCALATED, request_id, reference,
                       {"changes": _jsonable(changes), "actor": actor} | (note or {}))
        if audit is not None and moved_from is not None and moved_from != row.queue:
            await audit.action(conn, "request.reroute", reference,
                               {"by": str(kind), "from": moved_from, "to": row.queue})
    return Updated(Outcome.OK, row.version)


def _claim_ends(changes: dict[str, Any]) -> dict[str, Any]:
    """The claim columns to clear: a request resolved or closed, or moved to
    another queue (handed off), is nobody's work in hand any more."""
    status = changes.get("status")
    if "queue" in changes or (status is not None and Status(status) in RESOLVING):
        return {"claimed_by": None, "claim_until": None}
    return {}


def _jsonable(changes: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in changes.items()}


class _Changed(Exception):
    """The request is no longer at the version the change was for: roll back."""


async def _hold(conn: AsyncConnection, request_id: int, version: int) -> bool:
    """Lock the row at `version` for this transaction; False if it has moved on.

    A no-op UPDATE rather than a SELECT: it takes the row lock on PostgreSQL and
    begins the write transaction on SQLite, so nothing changes the request
    between this check and the commit."""
    row = (await conn.execute(
        update(requests).where(requests.c.id == request_id, requests.c.version == version)
        .values(version=requests.c.version).returning(requests.c.id))).first()
    return row is not None


async def add_event(engine: AsyncEngine, reference: str, kind: EventKind, actor: str,
                    data: dict[str, Any], *, expected_version: int | None = None) -> Updated:
    """Record something on the timeline (a note) without changing fields; with
    `expected_version`, only while the request is at that version."""
    now = utcnow()
    async with transaction(engine) as conn:
        found = await _request_id(conn, reference)
        if found is None:
            return Updated(Outcome.MISSING)
        request_id, version = found
        if expected_version is not None and not (
                expected_version == version and await _hold(conn, request_id, version)):
            return Updated(Outcome.STALE, version)
        await conn.execute(insert(events), {"request_id": request_id, "kind": kind,
                                            "actor": actor, "at": now, "data": data})
        if kind == EventKind.NOTE:
            await emit(conn, PublicEvent.NOTE_ADDED, request_id, reference,
                       {"actor": actor, "body": data.get("body")})
    return Updated(Outcome.OK, version)


async def add_reply(engine: AsyncEngine, reference: str, message: NewMessage, actor: str,
                    *, status: Status | None, expected_version: int | None = None) -> Updated:
    """An agent's answer to the requester: an outbound message on the request; with
    `expected_version`, only while the request is at that version."""
    now = utcnow()
    async with transaction(engine) as conn:
        found = await _request_id(conn, reference)
        if found is None:
            return Updated(Outcome.MISSING)
        request_id, version = found
        # The version moves on by exactly one, or nothing is written: two replies
        # at once never leave two states under one ETag.
        if expected_version is not None and expected_version != version or not (
                await _hold(conn, request_id, version)):
            return Updated(Outcome.STALE, version)
        message_row_id = (await conn.execute(insert(messages).returning(messages.c.id), {
            "request_id": request_id, "inbox_item_id": None, "direction": "out",
            "message_id": message.message_id, "in_reply_to": message.in_reply_to,
            "references": message.references, "from_address": message.from_address,
            "from_name": message.from_name, "to": message.to, "cc": message.cc,
            "subject": message.subject, "new_text": message.new_text, "text": message.text,
            "html": message.html, "flags": message.flags, "created_at": now})).scalar_one()
        # Files sent with it are stored as a customer's are (blobs kept once each).
        await insert_attachments(conn, [(message_row_id, a) for a in message.attachments])
        # The first answer from us meets the first-response target.
        values: dict[str, Any] = {
            "updated_at": now, "version": version + 1, "next_check_at": now,
            "first_response_at": func.coalesce(requests.c.first_response_at, now)}
        current = await clock(conn, request_id) if status else None
        if status:
            if current is not None:
                values |= status_columns(current, Status(status), now)
            values["status"] = status
            values |= _claim_ends({"status": status})
        await conn.execute(update(requests).where(requests.c.id == request_id).values(values))
        await conn.execute(insert(events), {
            "request_id": request_id, "kind": EventKind.REPLIED, "actor": actor, "at": now,
            "data": {"message_id": message.message_id, "to": message.to,
                     "status": status}
            | ({"cc": message.cc} if message.cc else {})
            | ({"attachments": len(message.attachments)} if message.attachments else {})})
        if message.to:
            await enqueue(conn, "email", {"message": message_payload(message),
                                          "purpose": "reply"},
                          request_id=request_id, dedupe_key=f"reply:{message.message_id}")
        await emit(conn, PublicEvent.REPLIED, request_id, reference,
                   {"message_id": message.message_id, "actor": actor, "status": status})
        if status and current is not None and current.status != status:
            # Setting `waiting` (or resolving) with a reply is a change of status too.
            await emit(conn, PublicEvent.STATUS_CHANGED, request_id, reference,
                       {"from": current.status, "status": status, "actor": actor})
    return Updated(Outcome.OK, version + 1)


async def merge(engine: AsyncEngine, reference: str, into: str, actor: str, *,
                expected_version: int | None = None,
                into_version: int | None = None,
                reopen_days: Mapping[str, int] | None = None,
                audit: Audit | None = None) -> Outcome:
    """Merge a duplicate into another request: OK, MISSING, SAME, MERGED (already),
    or STALE when either is no longer at the version given for it.

    Open work merged into a finished request reopens it, as a customer's reply
    would (domain.lifecycle.status_after_merge); past the target queue's reopen
    window (`reopen_days` by queue) it is not merged but linked to it, as a
    reply then starts a new request: LINKED."""
    now = utcnow()
    try:
        async with transaction(engine) as conn:
            source = (await conn.execute(
                select(requests.c.id, requests.c.status, requests.c.version,
                       requests.c.requester_email, requests.c.requester_name)
                .where(requests.c.reference == reference))).first()
            target = (await conn.execute(
                select(requests.c.id, requests.c.version, requests.c.status, requests.c.queue,
                       func.coalesce(requests.c.resolved_at,
                                     requests.c.updated_at).label("done_at"))
                .where(requests.c.reference == into))).first()
            if source is None or target is None:
                return Outcome.MISSING
            if source.id == target.id:
                return Outcome.SAME
            if source.status == Status.MERGED:
                return Outcome.MERGED
            for row, expected in ((source, expected_version), (target, into_version)):
                if expected is not None and row.version != expected:
                    return Outcome.STALE
            days = (reopen_days or {}).get(target.queue, DEFAULT_REOPEN_DAYS)
            if reply_starts_new(Status(target.status), automatic=Status(source.status) not in OPEN,
                                done_at=as_utc(target.done_at), now=now, reopen_days=days):
                await _link(conn, source, target, reference, into, actor, now)
                if audit is not None:
                    await audit.action(conn, "request.merge", reference,
                                       {"into": into, "outcome": "linked"})
                return Outcome.LINKED
            reopen = status_after_merge(Status(target.status), source=Status(source.status))
            target_values: dict[str, Any] = {}
            current = await clock(conn, target.id) if reopen is not None else None
            if reopen is not None and current is not None:
                target_values = status_columns(current, reopen, now) | {"status": reopen}
            # Compare-and-set on the versions read, in id order (no deadlock with
            # a merge the other way): a concurrent change to either rolls back.
            for row in sorted((source, target), key=lambda r: r.id):
                done = (await conn.execute(
                    update(requests)
                    .where(requests.c.id == row.id, requests.c.version == row.version)
                    .values(updated_at=now, version=requests.c.version + 1,
                            **({"status": Status.MERGED, "merged_into_id": target.id,
                                "claimed_by": None, "claim_until": None}
                               if row is source else target_values))
                    .returning(requests.c.id))).first()
                if done is None:
                    raise _Changed
            found = [
                {"request_id": source.id, "kind": EventKind.MERGED, "actor": actor,
                 "at": now, "data": {"into": into}},
                {"request_id": target.id, "kind": EventKind.MERGED_FROM, "actor": actor,
                 "at": now, "data": {"from": reference}}]
            if target_values:
                found += [
                    {"request_id": target.id, "kind": EventKind.STATUS_CHANGED, "actor": actor,
                     "at": now, "data": {"from": target.status, "to": reopen, "by": "merge"}},
                    {"request_id": target.id, "kind": EventKind.REOPENED, "actor": actor,
                     "at": now, "data": {"from": target.status, "by": "merge",
                                         "merged": reference}}]
            await conn.execute(insert(events), found)
            await emit(conn, PublicEvent.MERGED, source.id, reference,
                       {"into": into, "actor": actor},
                       requester=Requester(source.requester_email, source.requester_name))
            await emit(conn, PublicEvent.STATUS_CHANGED, source.id, reference,
                       {"from": source.status, "status": Status.MERGED, "actor": actor},
                       requester=Requester(source.requester_email, source.requester_name))
            if target_values:
                await notify(conn, [target.queue])  # work again: wake its agents
                await emit(conn, PublicEvent.STATUS_CHANGED, target.id, into,
                           {"from": target.status, "status": reopen, "actor": actor})
                await emit(conn, PublicEvent.REOPENED, target.id, into,
                           {"from": target.status, "by": "merge", "merged": reference,
                            "actor": actor})
            if audit is not None:
                await audit.action(conn, "request.merge", reference,
                                   {"into": into, "outcome": "merged",
                                    "reopened": bool(target_values)})
    except _Changed:
        return Outcome.STALE
    return Outcome.OK


async def _link(conn: AsyncConnection, source: Any, target: Any, reference: str, into: str,
                actor: str, now: datetime) -> None:
    """Instead of a merge into a request finished past its reopen window: the
    open request stays, following up the old one (as a late reply would)."""
    done = (await conn.execute(
        update(requests).where(requests.c.id == source.id,
                               requests.c.version == source.version)
        .values(linked_from_id=target.id, updated_at=now, version=requests.c.version + 1)
        .returning(requests.c.id))).first()
    if done is None:
        raise _Changed
    await conn.execute(insert(events), [
        {"request_id": source.id, "kind": EventKind.LINKED_FROM, "actor": actor, "at": now,
         "data": {"reference": into, "by": "merge past the reopen window"}},
        {"request_id": target.id, "kind": EventKind.FOLLOWED_UP, "actor": actor, "at": now,
         "data": {"reference": reference}}])


async def attachment(engine: AsyncEngine, reference: str,
                     attachment_id: int) -> dict[str, Any] | None:
    async with connection(engine) as conn:
        row = (await conn.execute(
            select(attachments.c.filename, attachments.c.content_type, attachments.c.sha256,
                   attachments.c.size, requests.c.queue)
            .join(messages, messages.c.id == attachments.c.message_id)
            .join(requests, requests.c.id == messages.c.request_id)
            .where(attachments.c.id == attachment_id,
                   requests.c.reference == reference))).first()
    return None if row is None else dict(row._mapping)


async def status_page(engine: AsyncEngine, token: str) -> dict[str, Any] | None:
    """What the customer may see: status, reference and the public messages
    (storage/status_view.py decides which, for this JSON and the HTML page).

    Only the requester's own messages are "you"; someone they copied is shown
    by name and address. A message from anyone who takes no part in the request
    (storage/participants.py: one stored before threading checked senders, or
    from the requester of a request merged into this one) is not shown at all,
    nor is automatic mail: auto-replies, bounces, our acknowledgements.
    """
    view = await read_view(engine, token)
    return None if view is None else as_json(view)
