"""Who takes part in a request: the people the request itself let in.

Its requester, the people copied (To, Cc) on its first message, the recipients
of our mail on it, and the people a participant copied on a later message
(within its first MAX_THREAD_MESSAGES). A message from anyone else adds no one,
so a stranger whose message reached a request (before threading checked
senders) cannot bring accomplices in. A request merged into another lends it
its people: they still answer their own thread, which now leads to the other
request.

Placement (gateway/pipeline/placement.py) lets a message onto a request only
from a participant; the status page shows the customer only what participants
wrote.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeVar

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.models import messages, requests

# Values bound in one IN (...) list: a batch of hostile mail may name tens of
# thousands of Message-IDs, and asyncpg takes at most 32,767 bound parameters
# per statement (SQLite as built here 250,000).
IN_CHUNK = 5000
Key = TypeVar("Key", int, str)
# The messages of a request that establish who takes part (the first ones, in
# order): a mail naming a request costs at most this many rows to check,
# however long its thread; someone first copied later gets a new request.
MAX_THREAD_MESSAGES = 200

# One stored message as the rule reads it: direction ("in", "out"), sender, To, Cc
# (as stored: lists of {"name", "address"}).
MessageRow = tuple[str, str | None, Any, Any]


@dataclass(frozen=True, slots=True)
class Parties:
    """A request's reference and its participants (lower-cased addresses)."""

    reference: str
    people: frozenset[str]


def in_chunks(values: Iterable[Key]) -> Iterator[Sequence[Key]]:
    """`values`, once each, in lists short enough for one IN (...)."""
    unique = list(dict.fromkeys(values))
    for start in range(0, len(unique), IN_CHUNK):
        yield unique[start:start + IN_CHUNK]


def addresses(entries: Any) -> set[str]:
    """The lower-cased addresses of a stored To or Cc list (anything else: none)."""
    if not isinstance(entries, list):
        return set()
    return {str(entry["address"]).strip().lower() for entry in entries
            if isinstance(entry, dict) and entry.get("address")}


def established(requester: str | None, rows: Iterable[MessageRow]) -> frozenset[str]:
    """The participants of one request, from its requester and its messages in
    the order they were stored (the first is the one that made the request)."""
    people = {requester.strip().lower()} if requester else set()
    for index, (direction, sender, to, cc) in enumerate(islice(rows, MAX_THREAD_MESSAGES)):
        if index == 0 or direction == "out" or (sender or "").lower() in people:
            people |= addresses(to) | addresses(cc)
    people.discard("")
    return frozenset(people)


async def read_participants(conn: AsyncConnection, request_ids: Iterable[int],
                            asking: Mapping[int, Iterable[str]] | None = None
                            ) -> dict[int, Parties]:
    """The parties of each request (with those of the requests merged into it).

    `asking`, by request id, is who asks to write there; a request only its
    requester asks about is not read further (most replies come from the
    requester): its parties are then its requesters alone, which is all such
    an asker needs. Without `asking` every request is read whole.
    """
    wanted = set(request_ids)
    if not wanted:
        return {}
    by_id: dict[int, Any] = {}
    for chunk in in_chunks(wanted):
        found_now = await conn.execute(
            select(requests.c.id, requests.c.reference, requests.c.requester_email,
                   requests.c.merged_into_id)
            .where(or_(requests.c.id.in_(chunk), requests.c.merged_into_id.in_(chunk))))
        by_id |= {row.id: row for row in found_now}
    found = list(by_id.values())
    requesters: dict[int, set[str]] = {}
    for request_id, _, requester, into in found:
        for owner in (request_id, into):
            if owner in wanted and requester:
                requesters.setdefault(owner, set()).add(requester.strip().lower())
    whole = wanted if asking is None else {
        request_id for request_id in wanted
        if not {a.lower() for a in asking.get(request_id, ())} <= requesters.get(request_id, set())}
    sources = [row for row in found if row.id in whole or row.merged_into_id in whole]
    rows: dict[int, list[MessageRow]] = {row.id: [] for row in sources}
    for chunk in in_chunks(rows):  # a request's messages in one chunk: in their order
        numbered = (
            select(messages.c.id, messages.c.request_id, messages.c.direction,
                   messages.c.from_address, messages.c.to, messages.c.cc,
                   func.row_number().over(partition_by=messages.c.request_id,
                                          order_by=messages.c.id).label("n"))
            .where(messages.c.request_id.in_(chunk)).subquery())
        stored = await conn.execute(
            select(numbered.c.request_id, numbered.c.direction, numbered.c.from_address,
                   numbered.c.to, numbered.c.cc)
            .where(numbered.c.n <= MAX_THREAD_MESSAGES).order_by(numbered.c.id))
        for request_id, direction, sender, to, cc in stored:
            rows[request_id].append((direction, sender, to, cc))
    own = {row.id: established(row.requester_email, rows[row.id]) for row in sources}
    lent: dict[int, set[str]] = {}
    for row in sources:
        if row.merged_into_id in whole:
            lent.setdefault(row.merged_into_id, set()).update(own[row.id])
    return {row.id: Parties(row.reference, own[row.id] | frozenset(lent.get(row.id, ())))
            if row.id in whole
            else Parties(row.reference, frozenset(requesters.get(row.id, ())))
            for row in found if row.id in wanted}
