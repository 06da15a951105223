"""Where each item of a batch lands, and what its timeline says about that.

The choice is the caller's pure `place` function (gateway/pipeline/placement.py);
this module reads what it needs to know (stored Message-IDs, requests named by
subject tags and who takes part in them: storage/participants.py) in a few
queries per batch, and keeps it up to date while the batch is placed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.lifecycle import (
    DEFAULT_REOPEN_DAYS,
    Event,
    EventKind,
    ItemState,
    Status,
    reply_starts_new,
)
from storage.engine import among, as_utc
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
from storage.reference import canonical

Place = Callable[[ThreadHints, Mapping[str, KnownMessage], Mapping[str, TaggedRequest]],
                 Placement]
Work = Sequence[tuple[ClaimedItem, NewRequest]]
NEW_REQUEST = Placement(Placed.NEW, "new request")


@dataclass(frozen=True, slots=True)
class Standing:
    """Where a stored request that a message names stands: for its reopen window."""

    reference: str
    status: Status
    queue: str
    done_at: datetime | None  # when it was resolved or closed (else its last change)


@dataclass(frozen=True, slots=True)
class Known:
    """What is stored already that a batch may refer to."""

    stored_before: set[int]  # items of the batch stored by an earlier attempt
    messages: Mapping[str, KnownMessage]  # by Message-ID
    tagged: Mapping[str, TaggedRequest]  # by reference tag
    standing: Mapping[int, Standing] = field(default_factory=dict)  # by request id


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
    standing = await _standing(conn, {m.request_id for m in known.values()}
                               | {t.request_id for t in tagged.values()})
    return Known(stored_before=stored | done, messages=known, tagged=tagged, standing=standing)


async def _standing(conn: AsyncConnection, request_ids: set[int]) -> dict[int, Standing]:
    found: dict[int, Standing] = {}
    for chunk in in_chunks(request_ids):
        rows = await conn.execute(
            select(requests.c.id, requests.c.reference, requests.c.status, requests.c.queue,
                   func.coalesce(requests.c.resolved_at, requests.c.updated_at))
            .where(among(conn, requests.c.id, chunk)))
        found |= {rid: Standing(reference, Status(status), queue, as_utc(done_at))
                  for rid, reference, status, queue, done_at in rows}
    return found


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


def place_all(work: Work, known: Known, place: Place, *,
              reopen_days: Mapping[str, int] | None = None,
              now: datetime | None = None) -> list[Placement | None]:
    """Each item's placement (None: stored before), decided in order, so a
    reply later in the batch finds an earlier item, and the people an earlier
    item brought in (as storage/participants.py would count them once stored).
    A person's reply to a request finished longer ago than its queue's
    `reopen_days` (by queue; DEFAULT_REOPEN_DAYS for a queue not named) starts
    a new request linked to it."""
    batch = _Batch(dict(known.messages), dict(known.tagged))
    placements: list[Placement | None] = []
    for index, (item, new) in enumerate(work):
        if item.id in known.stored_before:
            placements.append(None)
            continue
        hints = new.hints
        placement = NEW_REQUEST if hints is None else place(hints, batch.seen, batch.tagged)
        # Archived mail joins the request it names however long ago that one was
        # finished: it is its history, not a customer writing again.
        if (placement.kind == Placed.THREAD and hints is not None and now is not None
                and not new.archived):
            placement = _follow_up(placement, automatic=hints.automatic,
                                   standing=known.standing, reopen_days=reopen_days or {},
                                   now=now)
        if placement.kind == Placed.NEW:
            placement = replace(placement, request_id=placeholder(index))
        if hints is not None and placement.kind != Placed.DUPLICATE:
            assert placement.request_id is not None
            batch.landed(hints, placement, item.reference)
        placements.append(placement)
    return placements


def _follow_up(placement: Placement, *, automatic: bool, standing: Mapping[int, Standing],
               reopen_days: Mapping[str, int], now: datetime) -> Placement:
    """`placement`, or a new request linked to the finished request it named
    when that one's reopen window has passed (domain.lifecycle.reply_starts_new)."""
    assert placement.request_id is not None
    old = standing.get(placement.request_id)
    if old is None:  # a request of this batch: new, so open
        return placement
    days = reopen_days.get(old.queue, DEFAULT_REOPEN_DAYS)
    if not reply_starts_new(old.status, automatic=automatic, done_at=old.done_at, now=now,
                            reopen_days=days):
        return placement
    window = "is never reopened" if days <= 0 else f"was {old.status} more than {days} days ago"
    return Placement(Placed.NEW, f"{placement.reason}; request {old.reference} {window}: "
                                 f"a new request follows it up",
                     linked_from=placement.request_id, linked_reference=old.reference)


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
        linked = ([Event(kind=EventKind.LINKED_FROM,
                         data={"reference": placement.linked_reference})]
                  if placement.linked_from is not None else [])
        return [*received, *threaded, *linked, *new.events]
    hints = new.hints
    about = {"inbox_item": item.id, "channel": item.channel,
             "message_id": hints.message_id if hints else None,
             "from": hints.sender if hints else None, "reason": placement.reason}
    if placement.kind == Placed.DUPLICATE:
        return [Event(kind=EventKind.DUPLICATE_DELIVERY, data=about)]
    automatic = hints.automatic if hints else False
    # Who sent it, as sender authentication found, beside the message it is about.
    checked = [e for e in new.events if e.kind == EventKind.AUTHENTICATED]
    return [Event(kind=EventKind.MESSAGE_RECEIVED, data=about | {"automatic": automatic}),
            *checked]


async def _stored_items(conn: AsyncConnection, ids: list[int]) -> set[int]:
    found: set[int] = set()
    for chunk in in_chunks(ids):
        rows = await conn.execute(select(messages.c.inbox_item_id)
                                  .where(among(conn, messages.c.inbox_item_id, chunk)))
        found |= set(rows.scalars())
        rows = await conn.execute(select(inbox_items.c.id).where(
            among(conn, inbox_items.c.id, chunk), inbox_items.c.state == ItemState.DONE))
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
            .where(among(conn, messages.c.message_id, chunk)).order_by(messages.c.id))
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
            spelled = canonical(tag)
            if spelled is not None:
                wanted.setdefault(spelled, set()).add(tag)
    if not wanted:
        return {}
    result: dict[str, int] = {}
    for chunk in in_chunks(wanted):
        found = await conn.execute(select(requests.c.id, requests.c.reference)
                                   .where(among(conn, requests.c.reference, chunk)))
        for request_id, reference in found:
            for spelling in (reference, *wanted[reference]):
                result[spelling] = request_id
    return result
