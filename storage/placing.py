"""Where each item of a batch lands, and what its timeline says about that.

The choice is the caller's pure `place` function (gateway/pipeline/placement.py);
this module reads what it needs to know (stored Message-IDs, requests named by
subject tags and who takes part in them: storage/participants.py) in a few
queries per batch, and keeps it up to date while the batch is placed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.lifecycle import Event, EventKind, ItemState
from storage.models import inbox_items, messages, requests
from storage.participants import in_chunks, read_participants
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


async def read_known(conn: AsyncConnection, work: Work,
                     done: frozenset[int] = frozenset()) -> Known:
    """What the batch may refer to; `done` are items known to be stored before
    (storage/processing.py `hold_items` found them done)."""
    hints = [new.hints for _, new in work if new.hints is not None]
    found = await _known_messages(conn, hints)
    tags = await _tagged_requests(conn, hints)
    parties = await read_participants(
        conn, {known.request_id for known in found.values()} | set(tags.values()),
        _asking(hints, found, tags))
    known = {mid: replace(message, participants=parties[message.request_id].people,
                          reference=parties[message.request_id].reference)
             for mid, message in found.items() if message.request_id in parties}
    tagged = {tag: TaggedRequest(rid, parties[rid].reference, parties[rid].people)
              for tag, rid in tags.items() if rid in parties}
    stored = await _stored_items(conn, [item.id for item, _ in work if item.id not in done])
    return Known(stored_before=stored | done, messages=known, tagged=tagged)


def _asking(hints: list[ThreadHints], found: Mapping[str, KnownMessage],
            tags: Mapping[str, int]) -> dict[int, set[str]] | None:
    """Who asks to write into which stored request, so that a request only its
    requester asks about need not be read whole; None (read every request
    whole) when a mail answers another of the same batch, whose request is
    only known once the batch is placed."""
    in_batch = {h.message_id for h in hints if h.message_id}
    if any(parent in in_batch and parent != h.message_id
           for h in hints for parent in h.parent_ids):
        return None
    asking: dict[int, set[str]] = {}
    for h in hints:
        named = ({found[p].request_id for p in h.parent_ids if p in found}
                 | {tags[t] for t in h.tags if t in tags})
        for request_id in named:
            asking.setdefault(request_id, set()).add((h.sender or "").lower())
    return asking


def placeholder(index: int) -> int:
    """The id of the batch's `index`th item as a new request until it is
    inserted: negative, so it never meets a real one."""
    return -(index + 1)


def place_all(work: Work, known: Known, place: Place) -> list[Placement | None]:
    """Each item's placement (None: stored before), decided in order, so a
    reply later in the batch finds an earlier item, and the people an earlier
    item brought in (as storage/participants.py would count them once stored)."""
    batch = _Batch(dict(known.messages), dict(known.tagged))
    placements: list[Placement | None] = []
    for index, (item, new) in enumerate(work):
        if item.id in known.stored_before:
            placements.append(None)
            continue
        hints = new.hints
        placement = NEW_REQUEST if hints is None else place(hints, batch.seen, batch.tagged)
        if placement.kind == Placed.NEW:
            placement = replace(placement, request_id=placeholder(index))
        if hints is not None and placement.kind != Placed.DUPLICATE:
            assert placement.request_id is not None
            batch.landed(hints, placement, item.reference)
        placements.append(placement)
    return placements


@dataclass(slots=True)
class _Batch:
    """What placing a batch has learnt so far: its messages, and who takes
    part in their requests (by request id: reference and people)."""

    seen: dict[str, KnownMessage]
    tagged: dict[str, TaggedRequest]
    parties: dict[int, tuple[str | None, frozenset[str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for message in self.seen.values():
            self.parties[message.request_id] = (message.reference, message.participants)
        for request in self.tagged.values():
            self.parties[request.request_id] = (request.reference, request.participants)

    def landed(self, hints: ThreadHints, placement: Placement, reference: str) -> None:
        request_id = placement.request_id
        assert request_id is not None
        sender = (hints.sender or "").lower()
        if placement.kind == Placed.NEW:  # its first message: sender and copies take part
            people = frozenset({sender, *hints.copied} - {""})
        else:
            known_as, people = self.parties.get(request_id, (None, frozenset()))
            reference = known_as or reference
            if sender in people and not people.issuperset(hints.copied):
                people = people | frozenset(hints.copied)
                self._share(request_id, people)
        self.parties[request_id] = (reference, people)
        if hints.message_id:
            self.seen[hints.message_id] = KnownMessage(request_id, "in", hints.sender,
                                                       people, reference)

    def _share(self, request_id: int, people: frozenset[str]) -> None:
        """A participant copied someone new: they take part from now on."""
        for mid, message in self.seen.items():
            if message.request_id == request_id:
                self.seen[mid] = replace(message, participants=people)
        for tag, request in self.tagged.items():
            if request.request_id == request_id:
                self.tagged[tag] = replace(request, participants=people)


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
        refused = {"refused": list(placement.refused)} if placement.refused else {}
        threaded = ([Event(kind=EventKind.THREADED,
                           data={"placement": Placed.NEW, "reason": placement.reason} | refused)]
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
    found: set[int] = set()
    for chunk in in_chunks(ids):
        rows = await conn.execute(select(messages.c.inbox_item_id)
                                  .where(messages.c.inbox_item_id.in_(chunk)))
        found |= set(rows.scalars())
        rows = await conn.execute(select(inbox_items.c.id).where(
            inbox_items.c.id.in_(chunk), inbox_items.c.state == ItemState.DONE))
        found |= set(rows.scalars())
    return found


async def _known_messages(conn: AsyncConnection,
                          hints: list[ThreadHints]) -> dict[str, KnownMessage]:
    wanted = {mid for h in hints for mid in (h.message_id, h.bounce_of, *h.parent_ids) if mid}
    if not wanted:
        return {}
    known: dict[str, KnownMessage] = {}
    for chunk in in_chunks(wanted):
        # A reply to a merged request lands on the request it was merged into.
        rows = await conn.execute(
            select(messages.c.message_id,
                   func.coalesce(requests.c.merged_into_id, messages.c.request_id),
                   messages.c.direction, messages.c.from_address)
            .join(requests, requests.c.id == messages.c.request_id)
            .where(messages.c.message_id.in_(chunk)).order_by(messages.c.id))
        # The earliest message with an id wins: a later duplicate never redirects.
        for mid, rid, direction, sender in rows:
            known.setdefault(mid, KnownMessage(rid, direction, sender))
    return known


async def _tagged_requests(conn: AsyncConnection,
                           hints: list[ThreadHints]) -> dict[str, int]:
    """The requests subject tags name, by reference and by the tag as spelled."""
    wanted: dict[str, set[str]] = {}
    for h in hints:
        for tag in h.tags:
            item_id = id_for(tag)
            if item_id is not None:
                wanted.setdefault(reference_for(item_id), set()).add(tag)
    if not wanted:
        return {}
    result: dict[str, int] = {}
    for chunk in in_chunks(wanted):
        found = await conn.execute(select(requests.c.id, requests.c.reference)
                                   .where(requests.c.reference.in_(chunk)))
        for request_id, reference in found:
            for spelling in (reference, *wanted[reference]):
                result[spelling] = request_id
    return result
