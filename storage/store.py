"""Storing what a batch of inbox items became, in one transaction.

Each item becomes a new request, a message on an existing request (a reply, a
bounce of our mail), or nothing new (the same message delivered again). The
choice is the caller's pure `place` function; this module fetches what it
needs to know (stored Message-IDs, requests named by subject tags and who
takes part in them) and writes the result.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage.engine import transaction, utcnow
from storage.models import (
    attachments,
    events,
    inbox_items,
    messages,
    outbox,
    requests,
)
from storage.notify import notify
from storage.outbox import emit, enqueue, message_payload
from storage.processing import ClaimedItem
from storage.records import (
    KnownMessage,
    NewAttachment,
    NewMessage,
    NewRequest,
    Placement,
    TaggedRequest,
    ThreadHints,
)
from storage.reference import id_for, reference_for
from storage.sla_store import sla_columns, status_changed
from storage.uploads import insert_blobs

Place = Callable[[ThreadHints, Mapping[str, KnownMessage], Mapping[str, TaggedRequest]],
                 Placement]


@dataclass(frozen=True, slots=True)
class Stored:
    """Where an item landed: the request's reference and how it got there."""

    reference: str
    kind: str
    # The queue of a new request that is waiting for an agent, else None.
    new_work: str | None = None


def _new_only(hints: ThreadHints, known: Mapping[str, KnownMessage],
              tagged: Mapping[str, TaggedRequest]) -> Placement:
    return Placement("new", "new request")


async def complete_item(engine: AsyncEngine, item: ClaimedItem, new: NewRequest,
                        place: Place = _new_only) -> Stored:
    return (await complete_items(engine, [(item, new)], place))[0]


async def complete_items(engine: AsyncEngine, work: Sequence[tuple[ClaimedItem, NewRequest]],
                         place: Place = _new_only, *,
                         acks_per_hour: int | None = None) -> list[Stored]:
    """Store a batch; an item stored before (a retry, a race) adds nothing."""
    now = utcnow()
    async with transaction(engine) as conn:
        ids = [item.id for item, _ in work]
        stored_before = await _stored_items(conn, ids)
        hints = [new.hints for _, new in work if new.hints is not None]
        known = await _known_messages(conn, hints)
        tagged = await _tagged_requests(conn, hints)

        # Decide in order, so a reply later in the batch finds an earlier item.
        # New requests get placeholder ids (negative) until they are inserted.
        placements: list[Placement | None] = []
        for index, (item, new) in enumerate(work):
            if item.id in stored_before:
                placements.append(None)
                continue
            placement = (Placement("new", "new request") if new.hints is None
                         else place(new.hints, known, tagged))
            if placement.kind == "new":
                placement = replace(placement, request_id=-(index + 1))
            h = new.hints
            if h is not None and h.message_id and placement.kind != "duplicate":
                assert placement.request_id is not None
                known = {**known, h.message_id: KnownMessage(placement.request_id, "in",
                                                             h.sender)}
            placements.append(placement)

        fresh = [(i, item, new) for i, ((item, new), p) in enumerate(zip(work, placements,
                                                                          strict=True))
                 if p is not None and p.kind == "new"]
        real_ids: dict[int, int] = {}
        if fresh:
            inserted = await _insert_returning(conn, requests, [
                _request_row(item, new, now) for _, item, new in fresh])
            real_ids = {-(i + 1): rid for (i, _, _), rid in zip(fresh, inserted, strict=True)}

        def resolve(request_id: int | None) -> int:
            assert request_id is not None
            return real_ids.get(request_id, request_id)

        with_message = [(resolve(p.request_id), item, new, p)
                        for (item, new), p in zip(work, placements, strict=True)
                        if p is not None and p.kind != "duplicate"]
        if with_message:
            message_ids = await _insert_returning(conn, messages, [
                _message_row(rid, item.id, new.message, now) for rid, item, new, _ in with_message])
            await _insert_attachments(conn, [
                (mid, a) for mid, (_, _, new, _) in zip(message_ids, with_message, strict=True)
                for a in new.message.attachments])

        event_rows: list[dict[str, Any]] = []
        touched: set[int] = set()
        changed: dict[int, dict[str, Any]] = {}
        for (item, new), p in zip(work, placements, strict=True):
            if p is None:
                continue
            rid = resolve(p.request_id)
            for kind, actor, data in _events_for(item, new, p):
                event_rows.append({"request_id": rid, "kind": kind, "actor": actor, "at": now,
                                   "data": data})
            if p.kind == "thread":
                touched.add(rid)
                if new.hints is not None and not new.hints.automatic:
                    current = await sla_columns(conn, rid)
                    if current is not None and current[0] == "waiting":
                        # The customer answered: back to open, and the clock runs again.
                        follow = status_changed("waiting", "open", current[1], current[2],
                                                now)
                        changed[rid] = {**changed.get(rid, {}), **follow, "status": "open"}
                        event_rows.append({"request_id": rid, "kind": "status_changed",
                                           "actor": "requester", "at": now,
                                           "data": {"from": "waiting", "to": "open",
                                                    "by": "customer reply"}})
                if new.reply_changes:
                    changed[rid] = {**changed.get(rid, {}), **new.reply_changes}
                    event_rows.append({"request_id": rid, "kind": "rerouted", "actor": "rule",
                                       "at": now, "data": {"by": "reply rule",
                                                           "changes": new.reply_changes,
                                                           "decision": new.reply_decision}})
        for i, item, new in fresh:
            rid = real_ids[-(i + 1)]
            summary = {"queue": new.queue, "status": new.status, "priority": new.priority,
                       "type": new.type, "channel": item.channel,
                       "subject": scrub(new.message.subject)}
            await emit(conn, "created", rid, item.reference, summary)
            await emit(conn, "routed", rid, item.reference,
                       {"queue": new.queue, "priority": new.priority, "type": new.type,
                        "component": new.component, "tags": new.tags})
        event_rows += await _queue_acknowledgements(
            conn, [(real_ids[-(i + 1)], new) for i, _, new in fresh], now, acks_per_hour)
        if event_rows:
            await conn.execute(insert(events), [r | {"data": scrub(r["data"])}
                                                for r in event_rows])
        if touched:
            await conn.execute(update(requests).where(requests.c.id.in_(touched))
                               .values(updated_at=now))
        for rid, values in changed.items():
            await conn.execute(update(requests).where(requests.c.id == rid)
                               .values({**values, "version": requests.c.version + 1}))
        await conn.execute(update(inbox_items).where(inbox_items.c.id.in_(ids))
                           .values(state="done", lease_until=None, last_error=None))
        new_work = [new.queue for (_, new), p in zip(work, placements, strict=True)
                    if p is not None and p.kind == "new" and new.status == "new"]
        await notify(conn, new_work)
        references = await _references(conn, [
            resolve(p.request_id) if p is not None else None for p in placements], ids)
    return [Stored(ref, p.kind if p is not None else "stored before",
                   new.queue if p is not None and p.kind == "new" and new.status == "new"
                   else None)
            for ref, p, (_, new) in zip(references, placements, work, strict=True)]


async def _queue_acknowledgements(conn: AsyncConnection, created: list[tuple[int, NewRequest]],
                                  now: datetime, per_hour: int | None) -> list[dict[str, Any]]:
    """Store each acknowledgement as our outbound message and queue its delivery.

    At most `per_hour` acknowledgements go to one address in an hour: another
    auto-responder answering each of ours would otherwise loop forever.
    """
    events_out: list[dict[str, Any]] = []
    sent_now: dict[str, int] = {}
    for request_id, new in created:
        ack = new.acknowledgement
        if ack is None or not ack.to:
            continue
        address = ack.to[0]["address"].lower()
        if per_hour is not None:
            recent = sent_now.get(address)
            if recent is None:
                recent = (await conn.execute(
                    select(func.count()).select_from(outbox)
                    .join(requests, requests.c.id == outbox.c.request_id)
                    .where(requests.c.requester_email == address,
                           outbox.c.dedupe_key.like("ack:%"),
                           outbox.c.created_at > now - timedelta(hours=1)))).scalar_one()
            if recent >= per_hour:
                events_out.append({"request_id": request_id, "kind": "acknowledgement_skipped",
                                   "actor": "system", "at": now,
                                   "data": {"reason": f"{recent} sent to {address} in the "
                                                      f"last hour (limit {per_hour})"}})
                sent_now[address] = recent
                continue
            sent_now[address] = recent + 1
        await conn.execute(insert(messages), _message_row(request_id, 0, ack, now) | {
            "inbox_item_id": None, "direction": "out"})
        await enqueue(conn, "email", {"message": message_payload(ack), "purpose":
                                      "acknowledgement"},
                      request_id=request_id, dedupe_key=f"ack:{request_id}")
        events_out.append({"request_id": request_id, "kind": "acknowledgement_queued",
                           "actor": "system", "at": now,
                           "data": {"message_id": ack.message_id, "to": ack.to}})
    return events_out


def _events_for(item: ClaimedItem, new: NewRequest,
                placement: Placement) -> list[tuple[str, str, dict[str, Any]]]:
    if placement.kind == "new":
        threading = ([("threaded", "system", {"placement": "new", "reason": placement.reason})]
                     if new.hints is not None else [])
        return new.events[:1] + threading + new.events[1:]
    hints = new.hints
    about = {"inbox_item": item.id, "channel": item.channel,
             "message_id": hints.message_id if hints else None,
             "from": hints.sender if hints else None, "reason": placement.reason}
    if placement.kind == "duplicate":
        return [("duplicate_delivery", "system", about)]
    automatic = hints.automatic if hints else False
    return [("message_received", "system", about | {"automatic": automatic})]


async def _stored_items(conn: AsyncConnection, ids: list[int]) -> set[int]:
    rows = await conn.execute(select(messages.c.inbox_item_id)
                              .where(messages.c.inbox_item_id.in_(ids)))
    found = set(rows.scalars())
    rows = await conn.execute(select(inbox_items.c.id).where(inbox_items.c.id.in_(ids),
                                                             inbox_items.c.state == "done"))
    return found | set(rows.scalars())


async def _known_messages(conn: AsyncConnection,
                          hints: list[ThreadHints]) -> dict[str, KnownMessage]:
    wanted = {mid for h in hints for mid in (h.message_id, h.bounce_of, *h.parent_ids) if mid}
    if not wanted:
        return {}
    # A reply to a merged request lands on the request it was merged into.
    rows = await conn.execute(
        select(messages.c.message_id,
               func.coalesce(requests.c.merged_into_id, messages.c.request_id),
               messages.c.direction, messages.c.from_address)
        .join(requests, requests.c.id == messages.c.request_id)
        .where(messages.c.message_id.in_(wanted)).order_by(messages.c.id))
    # The earliest message with an id wins: a later duplicate never redirects.
    known: dict[str, KnownMessage] = {}
    for mid, rid, direction, sender in rows:
        known.setdefault(mid, KnownMessage(rid, direction, sender))
    return known


async def _tagged_requests(conn: AsyncConnection,
                           hints: list[ThreadHints]) -> dict[str, TaggedRequest]:
    wanted: dict[str, str] = {}
    for h in hints:
        for tag in h.tags:
            item_id = id_for(tag)
            if item_id is not None:
                wanted[reference_for(item_id)] = tag
    if not wanted:
        return {}
    found = (await conn.execute(
        select(requests.c.id, requests.c.reference, requests.c.requester_email)
        .where(requests.c.reference.in_(wanted)))).all()
    people: dict[int, set[str]] = {rid: {email} if email else set() for rid, _, email in found}
    rows = await conn.execute(
        select(messages.c.request_id, messages.c.direction, messages.c.from_address,
               messages.c.to, messages.c.cc)
        .where(messages.c.request_id.in_(people)))
    for rid, direction, sender, to, cc in rows:
        if direction == "in" and sender:
            people[rid].add(sender.lower())
        for entry in (to or []) + (cc or []):
            if isinstance(entry, dict) and entry.get("address"):
                people[rid].add(str(entry["address"]).lower())
    result = {}
    for rid, reference, _ in found:
        request = TaggedRequest(rid, reference, frozenset(people[rid]))
        result[reference] = request
        result[wanted[reference]] = request  # also under the spelling the subject used
    return result


async def _references(conn: AsyncConnection, request_ids: list[int | None],
                      item_ids: list[int]) -> list[str]:
    wanted = {rid for rid in request_ids if rid is not None}
    by_id: dict[int, str] = {}
    if wanted:
        rows = await conn.execute(select(requests.c.id, requests.c.reference)
                                  .where(requests.c.id.in_(wanted)))
        by_id = {rid: reference for rid, reference in rows}
    return [by_id[rid] if rid is not None else reference_for(item_id)
            for rid, item_id in zip(request_ids, item_ids, strict=True)]


def scrub(value: Any) -> Any:
    """NUL characters, which PostgreSQL text and JSON cannot hold, as U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def _request_row(item: ClaimedItem, new: NewRequest, now: datetime) -> dict[str, Any]:
    return scrub({
        "reference": item.reference, "inbox_item_id": item.id, "status": new.status,
        "queue": new.queue, "channel": item.channel, "priority": new.priority,
        "type": new.type, "category": new.category, "component": new.component,
        "requester_email": new.requester_email, "requester_name": new.requester_name,
        "subject": new.message.subject, "custom_fields": new.custom_fields,
        "tags": new.tags, "escalation_level": new.escalation_level, "created_at": now,
        "updated_at": now, "version": 1,
        "status_token": new.status_token or secrets.token_urlsafe(24),
        **new.sla,
    })


async def _insert_returning(conn: AsyncConnection, table: Any,
                            rows: list[dict[str, Any]]) -> list[int]:
    statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
    return [row[0] for row in await conn.execute(statement, rows)]


def _message_row(request_id: int, item_id: int, m: NewMessage,
                 now: datetime) -> dict[str, Any]:
    return scrub({
        "request_id": request_id, "inbox_item_id": item_id, "direction": "in",
        "message_id": m.message_id, "in_reply_to": m.in_reply_to,
        "references": m.references, "from_address": m.from_address,
        "from_name": m.from_name, "to": m.to, "cc": m.cc, "subject": m.subject,
        "new_text": m.new_text, "text": m.text, "html": m.html, "flags": m.flags,
        "created_at": now,
    })


async def _insert_attachments(conn: AsyncConnection,
                              found: list[tuple[int, NewAttachment]]) -> None:
    if not found:
        return
    hashed = [(message_id, a, a.stored_sha256 or hashlib.sha256(a.content).hexdigest())
              for message_id, a in found]
    await insert_blobs(conn, {sha: a.content for _, a, sha in hashed
                              if a.stored_sha256 is None})
    await conn.execute(insert(attachments), [{
        "message_id": message_id, "sha256": sha, "filename": scrub(a.filename),
        "content_type": a.content_type,
        "size": a.stored_size if a.stored_sha256 else len(a.content),
        "content_id": a.content_id, "inline": a.inline,
    } for message_id, a, sha in hashed])


async def record_outbound(engine: AsyncEngine, reference: str, message: NewMessage) -> int:
    """Store a message we send, so replies and bounces can find their request."""
    now = utcnow()
    async with transaction(engine) as conn:
        request_id = (await conn.execute(select(requests.c.id)
                                         .where(requests.c.reference == reference))).scalar_one()
        row = _message_row(request_id, 0, message, now) | {"inbox_item_id": None,
                                                            "direction": "out"}
        message_id = (await conn.execute(insert(messages).returning(messages.c.id), row)
                      ).scalar_one()
        await conn.execute(insert(events), {
            "request_id": request_id, "kind": "message_sent", "actor": "system", "at": now,
            "data": {"message_id": message.message_id, "to": message.to}})
    return int(message_id)
