"""Where each item of a batch lands, and what its timeline says about that.

The choice is the caller's pure `place` function (gateway/pipeline/placement.py);
this module reads what it needs to know (stored Message-IDs, requests named by
subject tags and who takes part in them) in a few queries per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.lifecycle import Event, EventKind, ItemState
from storage.models import inbox_items, messages, requests
from storage.processing import ClaimedItem
from storage.records import (
    KnownMessage,
    NewRequest,
    Placed,
    Placement,
    TaggedRequest,
    ThreadHints,
)
from storage.reference import id_for, reference_for

Place = Callable[[ThreadHints, Mapping[str, KnownMessage], Mapping[str, TaggedRequest]],
                 Placement]
Work = Sequence[tuple[ClaimedItem, NewRequest]]
NEW_REQUEST = Placement(Placed.NEW, "new request")


@dataclass(frozen=True, slots=True)
class Known:
    """What is stored already that a batch may refer to."""

    stored_before: set[int]  # items of the batch stored by an earlier attempt
    messages: Mapping[str, KnownMessage]  # by Message-ID
    tagged: Mapping[str, TaggedRequest]  # by reference tag


@dataclass(frozen=True, slots=True)
class Landed:
    """An item of the batch, where it landed and the id of its request."""

    item: ClaimedItem
    new: NewRequest
    placement: Placement
    request_id: int


async def read_known(conn: AsyncConnection, work: Work) -> Known:
    hints = [new.hints for _, new in work if new.hints is not None]
    return Known(stored_before=await _stored_items(conn, [item.id for item, _ in work]),
                 messages=await _known_messages(conn, hints),
                 tagged=await _tagged_requests(conn, hints))


def placeholder(index: int) -> int:
    """The id of the batch's `index`th item as a new request until it is
    inserted: negative, so it never meets a real one."""
    return -(index + 1)


def place_all(work: Work, known: Known, place: Place) -> list[Placement | None]:
    """Each item's placement (None: stored before), decided in order, so a
    reply later in the batch finds an earlier item."""
    seen = dict(known.messages)
    placements: list[Placement | None] = []
    for index, (item, new) in enumerate(work):
        if item.id in known.stored_before:
            placements.append(None)
            continue
        hints = new.hints
        placement = NEW_REQUEST if hints is None else place(hints, seen, known.tagged)
        if placement.kind == Placed.NEW:
            placement = replace(placement, request_id=placeholder(index))
        if hints is not None and hints.message_id and placement.kind != Placed.DUPLICATE:
            assert placement.request_id is not None
            seen[hints.message_id] = KnownMessage(placement.request_id, "in", hints.sender)
        placements.append(placement)
    return placements


def landed(work: Work, placements: list[Placement | None],
           inserted: Mapping[int, int]) -> list[Landed]:
    """The items that add something, with placeholders replaced by the ids
    `inserted` gave the new requests."""
    found = []
    for (item, new), placement in zip(work, placements, strict=True):
        if placement is None:
            continue
        assert placement.request_id is not None
        request_id = inserted.get(placement.request_id, placement.request_id)
        found.append(Landed(item, new, placement, request_id))
    return found


def timeline(landing: Landed) -> list[Event]:
    """The events an item adds to its request: a new request's own (with how
    it was threaded after `received`), or a message received on an existing one."""
    item, new, placement = landing.item, landing.new, landing.placement
    if placement.kind == Placed.NEW:
        threaded = ([Event(kind=EventKind.THREADED,
                           data={"placement": Placed.NEW, "reason": placement.reason})]
                    if new.hints is not None else [])
        received = [new.received] if new.received is not None else []
        return [*received, *threaded, *new.events]
    hints = new.hints
    about = {"inbox_item": item.id, "channel": item.channel,
             "message_id": hints.message_id if hints else None,
             "from": hints.sender if hints else None, "reason": placement.reason}
    if placement.kind == Placed.DUPLICATE:
        return [Event(kind=EventKind.DUPLICATE_DELIVERY, data=about)]
    automatic = hints.automatic if hints else False
    return [Event(kind=EventKind.MESSAGE_RECEIVED, data=about | {"automatic": automatic})]


async def _stored_items(conn: AsyncConnection, ids: list[int]) -> set[int]:
    rows = await conn.execute(select(messages.c.inbox_item_id)
                              .where(messages.c.inbox_item_id.in_(ids)))
    found = set(rows.scalars())
    rows = await conn.execute(select(inbox_items.c.id).where(
        inbox_items.c.id.in_(ids), inbox_items.c.state == ItemState.DONE))
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
