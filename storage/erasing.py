"""The steps of an erasure: each a bounded batch, in one transaction with the
task's new position (storage/erasures.py), so a crash repeats at most the step
it was in and a step done twice changes nothing more.

The phases, in order:

- `names`: the names the person used (as requester, as sender, beside their
  address in a To or Cc), to be looked for with the address.
- `inbox`: every stored input up to the one last stored when the erasure was
  asked for. One that became no message (pending, dead-lettered, dropped) and
  is the person's (envelope sender, From, the API or form requester) is
  deleted; any other that names them (theirs that became messages are deleted
  with those, later) has the address and names blanked in its raw bytes and
  metadata. One a worker is processing now is waited for.
- `requests`: the requests they opened. Deleted whole (messages, attachments,
  events, outbox rows, service-level marks, the inputs) unless someone else
  wrote in it; then anonymised: no requester address, the name "[erased]",
  custom fields (their form's or API's data) emptied, and their messages
  removed as in `messages`.
- `messages`: their messages anywhere become tombstones: the row stays (the
  thread's order and Message-IDs keep other people's replies threaded) with no
  sender, recipients, subject or text, flagged `erased`; its raw input and
  attachments are deleted.
- `sweep_*`: requests, messages (and their raw inputs), events and outbox
  rows still naming them have the address and names blanked; outbox rows to
  them (an acknowledgement, which is also what its limits count) are deleted.

Attachment contents (blobs) go once no attachment refers to them.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from email.utils import getaddresses
from typing import Any

from sqlalchemy import Column, String, Table, Text, cast, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from domain.lifecycle import ItemState, counted_recipient
from domain.redaction import (
    ERASED,
    Terms,
    mentions_bytes,
    mentions_value,
    names_beside,
    redact_bytes,
    redact_quoted,
    redact_value,
)
from storage.audit import Audit
from storage.engine import as_utc, transaction, utcnow
from storage.erasures import Task, advance, held
from storage.models import (
    Base,
    attachments,
    blob_chunks,
    blobs,
    events,
    inbox_items,
    messages,
    outbox,
    requests,
)
from storage.participants import in_chunks

PHASES = ("names", "inbox", "requests", "messages", "sweep_requests", "sweep_messages",
          "sweep_events", "sweep_outbox", "done")
# Ids looked at per step and table: every statement is bounded by the window,
# however large the table, and a whole phase reads the table once.
WINDOW = 5000
REQUESTS_PER_STEP = 50
ROWS_PER_STEP = 500
# Raw inputs read per step: at least one, else at most this many bytes.
INBOX_BYTES_PER_STEP = 8 * 1024 * 1024
INBOX_ITEMS_PER_STEP = 200


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a step did: the task as it now stands, and whether it waits for
    something (an input being processed) before going on."""

    task: Task
    waiting: bool = False

    @property
    def finished(self) -> bool:
        return self.task.phase == "done"


async def work_step(engine: AsyncEngine, task: Task, *, lease_seconds: float,
                    audit: Audit | None) -> Outcome | None:
    """One step of `task` committed with its new position; None if its claim was
    lost (another process holds it now)."""
    async with transaction(engine) as conn:
        if not await held(conn, task):
            return None
        step = _Step(conn, task)
        waiting = await _PHASE_STEPS[task.phase](step)
        done = replace(step.task, counts=dict(step.counts), references=tuple(step.refs))
        await advance(conn, done, lease_seconds=lease_seconds, finished=done.phase == "done",
                      audit=audit)
        return Outcome(done, waiting)


class _Step:
    """One step's connection and the task's progress as the step changes it."""

    def __init__(self, conn: AsyncConnection, task: Task) -> None:
        self.conn = conn
        self.task = task
        self.counts: Counter[str] = Counter(task.counts)
        self.refs: dict[str, None] = dict.fromkeys(task.references)

    @property
    def terms(self) -> Terms:
        return self.task.terms

    def count(self, key: str, n: int = 1) -> None:
        if n:
            self.counts[key] += n

    def moved(self, cursor: int, *, next_phase: bool, terms: Terms | None = None) -> None:
        phase = self.task.phase
        if next_phase:
            phase, cursor = PHASES[PHASES.index(phase) + 1], 0
        self.task = replace(self.task, phase=phase, cursor=cursor,
                            terms=terms or self.task.terms)

    async def window(self, table: Table, columns: Sequence[Any], condition: Any,
                     limit: int, upto: int | None = None) -> tuple[list[Any], int, bool]:
        """Rows matching `condition` in the next window of ids (at most `limit`):
        the rows, the cursor after them, and whether the table is done."""
        start = self.task.cursor
        top = start + WINDOW
        last = (await self.conn.execute(select(func.max(table.c.id)))).scalar() or 0
        if upto is not None:
            last = min(last, upto)
        top = min(top, last)
        rows = (await self.conn.execute(
            select(*columns).where(table.c.id > start, table.c.id <= top, condition)
            .order_by(table.c.id).limit(limit))).all()
        cursor = rows[-1].id if len(rows) == limit else top
        return rows, cursor, cursor >= last


def _any_mention(columns: Iterable[ColumnElement[Any]], terms: Terms) -> ColumnElement[bool]:
    """SQL that finds the candidates (case-insensitively); Python decides exactly."""
    return or_(*(column.icontains(term, autoescape=True)
                 for column in columns for term in terms.all()))


def _as_text(column: Column[Any]) -> ColumnElement[Any]:
    return cast(column, Text)


# --- names --------------------------------------------------------------------------


async def _names(step: _Step) -> bool:
    terms = step.terms
    found: list[str] = []
    if step.task.cursor == 0:
        # Addresses are stored lower-cased (parsers.addresses): the index serves it.
        found += [row[0] for row in await step.conn.execute(
            select(requests.c.requester_name).distinct()
            .where(requests.c.requester_email == terms.address,
                   requests.c.requester_name.is_not(None)).limit(100))]
    rows, cursor, done = await step.window(
        messages, (messages.c.id, messages.c.from_address, messages.c.from_name,
                   messages.c.to, messages.c.cc),
        or_(func.lower(messages.c.from_address) == terms.address,
            _any_mention((_as_text(messages.c.to), _as_text(messages.c.cc)),
                         Terms(terms.address))),
        ROWS_PER_STEP)
    for row in rows:
        if (row.from_address or "").lower() == terms.address and row.from_name:
            found.append(row.from_name)
        found += names_beside(row.to, terms.address) + names_beside(row.cc, terms.address)
    step.moved(cursor, next_phase=done, terms=terms.with_names(found))
    return False


# --- inbox --------------------------------------------------------------------------


def _owners(channel: str, raw: bytes, meta: Any) -> set[str]:
    """Whose input this is, as far as it says (lower-cased addresses)."""
    found: set[str] = set()
    if isinstance(meta, dict) and isinstance(meta.get("mail_from"), str):
        found.add(meta["mail_from"])
    if channel in ("api", "form"):
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if isinstance(data, dict):
            requester = data.get("requester")
            if isinstance(requester, dict):
                found.add(str(requester.get("email") or ""))
            found.add(str(data.get("requester_email") or ""))
    else:
        try:
            headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(
                raw)
            values = [str(v) for name in ("From", "Sender", "Reply-To")
                      for v in headers.get_all(name, [])]
            found |= {address for _, address in getaddresses(values)}
        except Exception:  # noqa: BLE001, S110 - hostile headers: then it says nothing
            pass
    return {address.strip().lower() for address in found if address}


async def _inbox(step: _Step) -> bool:
    conn, terms, now = step.conn, step.terms, utcnow()
    sized, cursor, done = await step.window(
        inbox_items, (inbox_items.c.id, func.length(inbox_items.c.raw).label("size")),
        inbox_items.c.id.is_not(None), INBOX_ITEMS_PER_STEP, upto=step.task.inbox_upto)
    taken, total = [], 0
    for row in sized:
        if taken and total + (row.size or 0) > INBOX_BYTES_PER_STEP:
            cursor, done = taken[-1], False
            break
        taken.append(row.id)
        total += row.size or 0
    if not taken:
        step.moved(cursor, next_phase=done)
        return False
    linked = set((await conn.execute(select(messages.c.inbox_item_id).where(
        messages.c.inbox_item_id.in_(taken)))).scalars())
    linked |= set((await conn.execute(select(requests.c.inbox_item_id).where(
        requests.c.inbox_item_id.in_(taken)))).scalars())
    # Hers that became her messages or requests: deleted with those, later.
    hers = set((await conn.execute(select(messages.c.inbox_item_id).where(
        messages.c.inbox_item_id.in_(taken),
        func.lower(messages.c.from_address) == terms.address))).scalars())
    hers |= set((await conn.execute(select(requests.c.inbox_item_id).where(
        requests.c.inbox_item_id.in_(taken),
        func.lower(requests.c.requester_email) == terms.address))).scalars())
    rows = (await conn.execute(
        select(inbox_items.c.id, inbox_items.c.channel, inbox_items.c.state,
               inbox_items.c.lease_until, inbox_items.c.raw, inbox_items.c.meta)
        .where(inbox_items.c.id.in_(taken)).order_by(inbox_items.c.id))).all()
    for row in rows:
        if not (mentions_bytes(row.raw, terms) or mentions_value(row.meta, terms)):
            continue
        lease = as_utc(row.lease_until)
        if row.state == ItemState.PROCESSING and lease is not None and lease > now:
            # A worker is making it a request now: come back once it is done.
            step.moved(row.id - 1, next_phase=False)
            return True
        if row.id in hers:
            continue
        if row.id not in linked and terms.address in _owners(row.channel, row.raw, row.meta):
            await conn.execute(delete(inbox_items).where(inbox_items.c.id == row.id))
            step.count("inputs_deleted")
        else:
            await conn.execute(update(inbox_items).where(inbox_items.c.id == row.id).values(
                raw=redact_bytes(row.raw, terms), meta=redact_value(row.meta, terms)))
            step.count("inputs_redacted")
    step.moved(cursor, next_phase=done)
    return False


# --- requests and messages -----------------------------------------------------------


def _referring(target: Table, *, skip: Iterable[str] = ()) -> list[tuple[Table, Column[Any]]]:
    """Every (table, column) with a foreign key to `target`'s id, from the models:
    a table added later is followed too."""
    found = []
    for table in Base.metadata.sorted_tables:
        if table.name in skip:
            continue
        for key in table.foreign_keys:
            if key.column.table is target:
                found.append((table, key.parent))
    return found


async def _drop_blobs(step: _Step, shas: Iterable[str]) -> None:
    """Blobs no attachment refers to any more: their content goes."""
    for chunk in in_chunks(set(shas)):
        used = set((await step.conn.execute(select(attachments.c.sha256).distinct().where(
            attachments.c.sha256.in_(chunk)))).scalars())
        unused = [sha for sha in chunk if sha not in used]
        if unused:
            await step.conn.execute(delete(blob_chunks).where(blob_chunks.c.sha256.in_(unused)))
            result = await step.conn.execute(delete(blobs).where(blobs.c.sha256.in_(unused)))
            step.count("blobs_deleted", result.rowcount or 0)


async def _delete_inputs(step: _Step, item_ids: Iterable[int | None]) -> None:
    ids = [i for i in set(item_ids) if i is not None]
    for chunk in in_chunks(ids):
        for table, column in _referring(inbox_items):
            await step.conn.execute(update(table).where(column.in_(chunk)).values(
                {column.name: None}))
        result = await step.conn.execute(delete(inbox_items).where(inbox_items.c.id.in_(chunk)))
        step.count("inputs_deleted", result.rowcount or 0)


async def _delete_attachments(step: _Step, message_ids: Sequence[int]) -> None:
    shas: list[str] = []
    for chunk in in_chunks(message_ids):
        shas += (await step.conn.execute(delete(attachments).where(
            attachments.c.message_id.in_(chunk)).returning(attachments.c.sha256))).scalars()
    step.count("attachments_deleted", len(shas))
    await _drop_blobs(step, shas)


async def _tombstone(step: _Step, rows: Sequence[Any]) -> None:
    """Their messages: the rows stay as tombstones, the content and input go,
    and so do pieces of their text on the requests' timelines (a classifier's
    sample and cues)."""
    ids = [row.id for row in rows]
    if not ids:
        return
    await _unquote_events(step, ids)
    await _delete_attachments(step, ids)
    for chunk in in_chunks(ids):
        await step.conn.execute(update(messages).where(messages.c.id.in_(chunk)).values(
            from_address=None, from_name=None, to=[], cc=[], subject="", new_text="", text="",
            html=None, flags={"erased": True}, inbox_item_id=None))
    step.count("messages_erased", len(ids))
    await _delete_inputs(step, [row.inbox_item_id for row in rows])


async def _unquote_events(step: _Step, message_ids: Sequence[int]) -> None:
    conn = step.conn
    for chunk in in_chunks(message_ids):
        found = (await conn.execute(select(
            messages.c.request_id, messages.c.subject, messages.c.new_text, messages.c.text,
            messages.c.html).where(messages.c.id.in_(chunk)))).all()
        sources: dict[int, list[str]] = {}
        for row in found:
            sources.setdefault(row.request_id, []).extend(
                [f"{row.subject}\n{row.new_text}", f"{row.subject}\n{row.text}",
                 row.html or ""])
        for request_id, texts in sources.items():
            for event in await conn.execute(select(events.c.id, events.c.data).where(
                    events.c.request_id == request_id)):
                after = redact_quoted(event.data, texts)
                if after != event.data:
                    await conn.execute(update(events).where(events.c.id == event.id)
                                       .values(data=after))
                    step.count("events_redacted")


async def _delete_requests(step: _Step, ids: list[int]) -> None:
    conn = step.conn
    found = (await conn.execute(select(messages.c.id, messages.c.inbox_item_id).where(
        messages.c.request_id.in_(ids)))).all()
    message_ids = [row.id for row in found]
    await _delete_attachments(step, message_ids)
    inputs = [row.inbox_item_id for row in found]
    inputs += (await conn.execute(select(requests.c.inbox_item_id).where(
        requests.c.id.in_(ids)))).scalars()
    for table, column in _referring(requests, skip=("messages",)):
        if table is requests:  # other requests merged into or following this one
            await conn.execute(update(requests).where(column.in_(ids)).values(
                {column.name: None}))
        else:
            result = await conn.execute(delete(table).where(column.in_(ids)))
            step.count(f"{table.name}_deleted", result.rowcount or 0)
    for chunk in in_chunks(message_ids):
        await conn.execute(delete(messages).where(messages.c.id.in_(chunk)))
    step.count("messages_deleted", len(message_ids))
    await conn.execute(delete(requests).where(requests.c.id.in_(ids)))
    step.count("requests_deleted", len(ids))
    await _delete_inputs(step, inputs)


async def _requests(step: _Step) -> bool:
    conn, terms = step.conn, step.terms
    rows, cursor, done = await step.window(
        requests, (requests.c.id, requests.c.reference),
        func.lower(requests.c.requester_email) == terms.address, REQUESTS_PER_STEP)
    ids = [row.id for row in rows]
    step.refs.update(dict.fromkeys(row.reference for row in rows))
    # Someone else wrote in it: it is theirs too, and stays, anonymised.
    shared: set[int] = set()
    if ids:
        shared = set((await conn.execute(select(messages.c.request_id).distinct().where(
            messages.c.request_id.in_(ids), messages.c.direction == "in",
            messages.c.from_address.is_not(None),
            func.lower(messages.c.from_address) != terms.address))).scalars())
    own = [i for i in ids if i not in shared]
    if own:
        await _delete_requests(step, own)
    if shared:
        theirs = (await conn.execute(select(messages.c.id, messages.c.inbox_item_id).where(
            messages.c.request_id.in_(shared), messages.c.direction == "in",
            func.lower(messages.c.from_address) == terms.address))).all()
        first_inputs = (await conn.execute(select(requests.c.inbox_item_id).where(
            requests.c.id.in_(shared)))).scalars().all()
        await conn.execute(update(requests).where(requests.c.id.in_(shared)).values(
            requester_email=None, requester_name=ERASED, custom_fields={}))
        await _tombstone(step, theirs)
        await _delete_inputs(step, first_inputs)
        step.count("requests_anonymised", len(shared))
    step.moved(cursor, next_phase=done)
    return False


async def _messages(step: _Step) -> bool:
    rows, cursor, done = await step.window(
        messages, (messages.c.id, messages.c.inbox_item_id, messages.c.request_id),
        (func.lower(messages.c.from_address) == step.terms.address)
        & (messages.c.direction == "in"), ROWS_PER_STEP)
    if rows:
        step.refs.update(dict.fromkeys((await step.conn.execute(
            select(requests.c.reference).where(requests.c.id.in_(
                {row.request_id for row in rows})))).scalars()))
        await _tombstone(step, rows)
    step.moved(cursor, next_phase=done)
    return False


# --- sweeps -------------------------------------------------------------------------


async def _sweep(step: _Step, table: Table, fields: Sequence[str]) -> list[Any]:
    """Rows of `table` naming the person in `fields`, each blanked there; returns
    the rows changed (as read)."""
    columns = [table.c[name] for name in fields]
    searched = [c if isinstance(c.type, String) else _as_text(c) for c in columns]
    rows, cursor, done = await step.window(
        table, (table.c.id, *columns), _any_mention(searched, step.terms), ROWS_PER_STEP)
    changed = []
    for row in rows:
        values = {}
        for name in fields:
            before = getattr(row, name)
            after = redact_value(before, step.terms)
            if after != before:
                values[name] = after
        if values:
            await step.conn.execute(update(table).where(table.c.id == row.id).values(values))
            changed.append(row)
    step.count(f"{table.name}_redacted", len(changed))
    step.moved(cursor, next_phase=done)
    return changed


async def _sweep_requests(step: _Step) -> bool:
    await _sweep(step, requests, ("subject", "requester_name", "custom_fields", "tags"))
    return False


async def _sweep_messages(step: _Step) -> bool:
    # Their raw inputs were blanked in the `inbox` phase, every one of them.
    await _sweep(step, messages, ("from_address", "from_name", "to", "cc", "subject",
                                  "new_text", "text", "html"))
    return False


async def _sweep_events(step: _Step) -> bool:
    await _sweep(step, events, ("data",))
    return False


async def _sweep_outbox(step: _Step) -> bool:
    start = step.task.cursor
    # Mail to them (their acknowledgements, and so what the limits count, under
    # the folded key: domain.lifecycle.counted_recipient) is gone; a row under the
    # same key for someone else's spelling of it stays.
    address = step.terms.address
    key = counted_recipient(address).mailbox
    result = await step.conn.execute(delete(outbox).where(
        outbox.c.id > start, outbox.c.id <= start + WINDOW,
        or_(func.lower(outbox.c.recipient) == address,
            (outbox.c.recipient == key)
            & _as_text(outbox.c.payload).icontains(address, autoescape=True))))
    step.count("outbox_deleted", result.rowcount or 0)
    await _sweep(step, outbox, ("payload", "last_error"))
    return False


async def _finished(step: _Step) -> bool:
    return False


_PHASE_STEPS = {
    "names": _names, "inbox": _inbox, "requests": _requests, "messages": _messages,
    "sweep_requests": _sweep_requests, "sweep_messages": _sweep_messages,
    "sweep_events": _sweep_events, "sweep_outbox": _sweep_outbox, "done": _finished,
}
