"""Storing what a batch of inbox items became, in one transaction.

Each item becomes a new request, a message on an existing request (a reply, a
bounce of our mail), or nothing new (the same message delivered again). The
choice is the caller's pure `place` function (storage/placing.py reads what it
needs to know); `complete_items` writes the result in named steps, each a few
statements for the whole batch.

It first locks the batch's inbox items and reads whose they are
(storage/processing.py `hold_items`): an item stored before (a retry after a
commit whose answer was lost, another worker that took it over) adds nothing,
and an item another claim holds now is left to it, never stored or marked.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.lifecycle import (
    AcknowledgementLimits,
    Actor,
    Event,
    EventKind,
    ItemState,
    PublicEvent,
    announces_work,
)
from storage.acknowledgements import queue_acknowledgements
from storage.bounces import with_bounces
from storage.engine import among, among_bound, transaction, utcnow
from storage.models import events, inbox_items, messages, requests
from storage.notify import notify
from storage.outbox import Requester, enqueue_rows, event_row
from storage.placing import (
    NEW_REQUEST,
    Landed,
    Place,
    Work,
    landed,
    place_all,
    placeholder,
    read_known,
    timeline,
)
from storage.processing import ClaimedItem, hold_items
from storage.records import (
    KnownMessage,
    NewMessage,
    NewRequest,
    Placed,
    Placement,
    TaggedRequest,
    ThreadHints,
)
from storage.replies import Answer, answers, apply_answers
from storage.rows import (
    insert_attachments,
    insert_returning,
    message_row,
    outbound_row,
    request_row,
    scrub,
)


@dataclass(frozen=True, slots=True)
class Stored:
    """Where an item landed: the request's reference and how it got there."""

    reference: str
    # None: not stored by this call, because another claim holds the item now
    # (its lease ran out under this worker); that claim's worker stores it.
    kind: Placed | None
    # The queue of a request now waiting for an agent (a new one, or one a
    # customer's reply reopened), else None.
    new_work: str | None = None
    # Whether storing it queued outbox rows (its acknowledgement, the events
    # subscribers take): the outbox has work then, and only then.
    queued: bool = False


def _new_only(hints: ThreadHints, known: Mapping[str, KnownMessage],
              tagged: Mapping[str, TaggedRequest]) -> Placement:
    return NEW_REQUEST


async def complete_item(engine: AsyncEngine, item: ClaimedItem, new: NewRequest,
                        place: Place = _new_only) -> Stored:
    return (await complete_items(engine, [(item, new)], place))[0]


# Every public event: what `complete_items` records unless told which are taken.
ALL_PUBLIC_EVENTS: frozenset[str] = frozenset(PublicEvent)


async def complete_items(engine: AsyncEngine, work: Work, place: Place = _new_only, *,
                         ack_limits: AcknowledgementLimits | None = None,
                         reopen_days: Mapping[str, int] | None = None,
                         announce: Container[str] = ALL_PUBLIC_EVENTS) -> list[Stored]:
    """Store a batch; an item stored before (a retry, a race) adds nothing, and
    an item held by another claim now is left alone. `reopen_days`: each
    queue's reopen window (storage/placing.py `place_all`). `announce`: the
    public events some subscriber takes; only those get an outbox row (an event
    row nobody takes would be written, claimed and dropped, for every item)."""
    now = utcnow()
    async with transaction(engine) as conn:
        holding = await hold_items(conn, [item for item, _ in work])
        ours = [(item, new) for item, new in work if item.id not in holding.lost]
        placements = place_all(ours, await read_known(conn, ours, holding.done), place,
                               reopen_days=reopen_days, now=now)
        batch = landed(ours, placements, await _insert_requests(conn, ours, placements, now))
        fresh = [one for one in batch if one.placement.kind == Placed.NEW]
        acknowledged = await queue_acknowledgements(
            conn, [(one.request_id, one.new, one.item.reference) for one in fresh], now,
            ack_limits)
        await _insert_messages(conn, batch, acknowledged.message_rows, now)
        answered = await with_bounces(conn, batch, await answers(conn, batch, now))
        # Every outbox row of the batch in one statement: the subscribers' events
        # (new requests first, then messages), then the acknowledgements.
        outbound = (_announce_created(fresh, now, announce)
                    + await _announce_messages(conn, batch, answered, now, announce)
                    + acknowledged.outbox_rows)
        await enqueue_rows(conn, outbound)
        await _write_events(conn, _timelines(batch, answered) + _follow_ups(fresh)
                            + acknowledged.events, now, _fitted_events(batch))
        reopened = await apply_answers(conn, batch, answered, now)
        await _finish_items(conn, [item.id for item, _ in ours],
                            [one.new.queue for one in fresh if announces_work(one.new.status)]
                            + list(reopened.values()))
        references = iter(await _references(conn, ours, placements, batch))
        placed = iter(placements)
    told = {row["request_id"] for row in outbound}
    queued = {one.item.id for one in batch if one.request_id in told}
    return [Stored(item.reference, None) if item.id in holding.lost
            else _stored(next(references), next(placed), new, reopened, item.id in queued)
            for item, new in work]


def _stored(reference: str, placement: Placement | None, new: NewRequest,
            reopened: Mapping[int, str], queued: bool) -> Stored:
    """`reopened`: the queues of requests a reply made work again, by id."""
    if placement is None:
        return Stored(reference, Placed.STORED_BEFORE)
    if placement.kind == Placed.THREAD and placement.request_id in reopened:
        return Stored(reference, placement.kind, reopened[placement.request_id], queued)
    is_work = placement.kind == Placed.NEW and announces_work(new.status)
    return Stored(reference, placement.kind, new.queue if is_work else None, queued)


async def _insert_requests(conn: AsyncConnection, work: Work,
                           placements: list[Placement | None], now: datetime) -> dict[int, int]:
    """Insert the new requests; their ids by placeholder."""
    fresh = [(index, item, new, placement) for index, ((item, new), placement)
             in enumerate(zip(work, placements, strict=True))
             if placement is not None and placement.kind == Placed.NEW]
    if not fresh:
        return {}
    # Every row names the request it follows up, if any: one set of columns.
    inserted = await insert_returning(conn, requests, [
        request_row(item, new, now) | {"linked_from_id": placement.linked_from}
        for _, item, new, placement in fresh])
    return {placeholder(index): request_id
            for (index, _, _, _), request_id in zip(fresh, inserted, strict=True)}


async def _insert_messages(conn: AsyncConnection, batch: list[Landed],
                           outbound: list[dict[str, Any]], now: datetime) -> None:
    """Each item's message (a duplicate delivery adds none) with its attachments,
    then `outbound` (the acknowledgements' rows), in one statement."""
    adding = [one for one in batch if one.placement.kind != Placed.DUPLICATE]
    if not adding and not outbound:
        return
    message_ids = await insert_returning(conn, messages, [
        message_row(one.request_id, one.item.id, one.new.message, one.new.created_at or now,
                    fitted=one.new.fitted)
        for one in adding]
        + outbound)
    await insert_attachments(conn, [(message_id, attachment) for message_id, one
                                    in zip(message_ids[:len(adding)], adding, strict=True)
                                    for attachment in one.new.message.attachments])


def _announce_created(fresh: list[Landed], now: datetime,
                      announce: Container[str]) -> list[dict[str, Any]]:
    """The outbox rows telling subscribers (webhooks, the broker) of each new
    request and its route (archived mail is history: no one is told)."""
    created, routed = PublicEvent.CREATED in announce, PublicEvent.ROUTED in announce
    rows: list[dict[str, Any]] = []
    for one in fresh if created or routed else ():
        item, new = one.item, one.new
        if new.archived:
            continue
        requester = Requester(new.requester_email, new.requester_name)
        if created:
            rows.append(event_row(PublicEvent.CREATED, one.request_id, item.reference, {
                "queue": new.queue, "status": new.status, "priority": new.priority,
                "type": new.type, "channel": item.channel,
                "subject": scrub(new.message.subject),
                "linked_from": one.placement.linked_reference}, requester, now))
        if routed:
            rows.append(event_row(PublicEvent.ROUTED, one.request_id, item.reference, {
                "queue": new.queue, "priority": new.priority, "type": new.type,
                "component": new.component, "tags": new.tags}, requester, now))
    return rows


def _message_event(one: Landed) -> tuple[PublicEvent, dict[str, Any]]:
    """What a message that joined a request is announced as: a delivery report
    on our mail, or a message received."""
    message, hints = one.new.message, one.new.hints
    bounce = message.flags.get("bounce")
    if bounce and hints is not None and hints.bounce_of:
        return PublicEvent.BOUNCED, {"message_id": message.message_id,
                                     "bounced_message_id": hints.bounce_of, "report": bounce}
    return PublicEvent.MESSAGE_RECEIVED, {
        "message_id": message.message_id, "channel": one.item.channel,
        "from": {"email": message.from_address, "name": message.from_name},
        "subject": message.subject,
        "automatic": bool(hints.automatic) if hints is not None else False}


async def _announce_messages(conn: AsyncConnection, batch: list[Landed],
                             answered: list[Answer | None], now: datetime,
                             announce: Container[str]) -> list[dict[str, Any]]:
    """The outbox rows telling subscribers of each message that joined an existing
    request (a customer's message, or a delivery report on our mail) and of what
    it changed (archived mail: nothing)."""
    told = [(one, [(event, data) for event, data
                   in (_message_event(one), *(answer.public if answer is not None else ()))
                   if event in announce])
            for one, answer in zip(batch, answered, strict=True)
            if one.placement.kind == Placed.THREAD and not one.new.archived]
    told = [(one, found) for one, found in told if found]
    if not told:
        return []
    owners = await conn.execute(
        select(requests.c.id, requests.c.reference, requests.c.requester_email,
               requests.c.requester_name)
        .where(among(conn, requests.c.id, {one.request_id for one, _ in told})))
    about = {r.id: (r.reference, Requester(r.requester_email, r.requester_name)) for r in owners}
    rows: list[dict[str, Any]] = []
    for one, found in told:
        reference, requester = about[one.request_id]
        rows.extend(event_row(event, one.request_id, reference, scrub(data), requester, now)
                    for event, data in found)
    return rows


def _follow_ups(fresh: list[Landed]) -> list[tuple[int, Event]]:
    """On each finished request a new one follows up: which one (the new one's
    own timeline says `linked_from`)."""
    return [(one.placement.linked_from, Event(kind=EventKind.FOLLOWED_UP, actor=Actor.REQUESTER,
                                              data={"reference": one.item.reference}))
            for one in fresh if one.placement.linked_from is not None]


def _timelines(batch: list[Landed], answered: list[Answer | None]) -> list[tuple[int, Event]]:
    """Each item's events, then what its answer changed, in the batch's order."""
    return [(one.request_id, event) for one, answer in zip(batch, answered, strict=True)
            for event in (*timeline(one), *(answer.events if answer else ()))]


_INSERT_EVENTS = insert(events)  # built once: see storage/rows.py


def _fitted_events(batch: list[Landed]) -> set[int]:
    """The events (by identity, held by `batch` meanwhile) whose data
    storage.fitting.fit_request made storable already: not walked again."""
    return {id(event) for one in batch if one.new.fitted
            for event in (*one.new.events, *((one.new.received,) if one.new.received else ()))}


async def _write_events(conn: AsyncConnection, found: list[tuple[int, Event]],
                        now: datetime, fitted: set[int]) -> None:
    if found:
        await conn.execute(_INSERT_EVENTS, [
            {"request_id": request_id, "kind": event.kind, "actor": event.actor, "at": now,
             "data": event.data if id(event) in fitted else scrub(event.data)}
            for request_id, event in found])


# Built once per backend (storage/engine.py `among_bound`).
_FINISH_ITEMS = {dialect: update(inbox_items).where(ids).values(
    state=ItemState.DONE, lease_until=None, claim_token=None, last_error=None)
    for dialect, ids in among_bound(inbox_items.c.id, "ids").items()}
_REFERENCES = {dialect: select(requests.c.id, requests.c.reference).where(ids)
               for dialect, ids in among_bound(requests.c.id, "ids").items()}


async def _finish_items(conn: AsyncConnection, item_ids: list[int], new_work: list[str]) -> None:
    """Mark the batch's items done, and wake agents waiting on the queues of new work."""
    if item_ids:
        await conn.execute(_FINISH_ITEMS[conn.dialect.name], {"ids": item_ids})
    await notify(conn, new_work)


async def _references(conn: AsyncConnection, work: Work, placements: list[Placement | None],
                      batch: list[Landed]) -> list[str]:
    """Each item's request reference; an item stored before answers with its own."""
    by_id: dict[int, str] = {}
    if batch:
        rows = await conn.execute(_REFERENCES[conn.dialect.name],
                                  {"ids": sorted({one.request_id for one in batch})})
        by_id = {request_id: reference for request_id, reference in rows}
    landing = iter(batch)  # in the order of the items that have a placement
    return [by_id[next(landing).request_id] if placement is not None
            else item.reference
            for (item, _), placement in zip(work, placements, strict=True)]


async def record_outbound(engine: AsyncEngine, reference: str, message: NewMessage) -> int:
    """Store a message we send, so replies and bounces can find their request."""
    now = utcnow()
    async with transaction(engine) as conn:
        request_id = (await conn.execute(select(requests.c.id)
                                         .where(requests.c.reference == reference))).scalar_one()
        message_id = (await conn.execute(insert(messages).returning(messages.c.id),
                                         outbound_row(request_id, message, now))).scalar_one()
        await conn.execute(insert(events), {
            "request_id": request_id, "kind": EventKind.MESSAGE_SENT, "actor": Actor.SYSTEM,
            "at": now, "data": {"message_id": message.message_id, "to": message.to}})
    return int(message_id)
