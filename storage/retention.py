"""Retention: the SQL that deletes and anonymises what policies no longer keep.

A pass is a list of stages (`plan`), each run in bounded batches (`run_batch`):
one transaction per batch of at most `batch` rows, so intake and the pipeline
never wait long behind it. Per policy (most specific first, each policy's
requests being those no more specific policy takes: domain/retention.py):
finished requests deleted, anonymised, their raw bytes dropped; then, from the
default policy, dead letters, outbox history and the audit purged.

Several processes run passes at once safely: on PostgreSQL a batch's rows are
locked (`FOR UPDATE SKIP LOCKED`), so each batch is one process's and the
others take the next rows; SQLite has one process, its writers take turns
(`transaction`). A stage walks the finished requests oldest first through
`ix_requests_finished` with a cursor, so a pass reads each expired row once.

What stays, by stage:
- delete: nothing of the request (messages, events, service-level marks,
  attachments, outbox rows, the inbox items it came from; a blob's content
  once no attachment refers to it). Requests linked or merged into it lose
  the link.
- anonymise: the request's metadata (queue, status, type, dates, subject,
  tags, service-level times) and its timeline's kinds and times; gone are the
  requester, custom fields, status link, every message's people and text, the
  event data, attachments, raw bytes and envelopes, and delivered outbox rows.
- raw: the inbox items' raw bytes (envelope metadata kept) and attachment
  contents; an attachment keeps its name, type and size, its content points
  at DROPPED_SHA256 (an empty blob), so a download says it is gone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, delete, exists, false, func, not_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.lifecycle import DeliveryState, ItemState
from domain.retention import Policy, by_specificity, default_policy, overriding
from storage.audit import purge_before
from storage.engine import connection, insert_new, transaction
from storage.models import (
    FINISHED_AT,
    IS_FINISHED,
    attachments,
    audit_events,
    blob_chunks,
    blobs,
    events,
    inbox_items,
    messages,
    outbox,
    requests,
    sla_marks,
)

# The blob an attachment whose content was dropped points at: no content
# hashes to it, and it is empty.
DROPPED_SHA256 = "0" * 64
# Outbox rows that are history: nothing will deliver them again.
_DELIVERED = (DeliveryState.DONE, DeliveryState.DISCARDED)
_FINAL = (DeliveryState.DONE, DeliveryState.DISCARDED, DeliveryState.DEAD)


class What(StrEnum):
    DELETE = "requests deleted"
    ANONYMISE = "requests anonymised"
    RAW = "requests' raw mail and attachments dropped"
    DEAD_LETTERS = "dead letters purged"
    OUTBOX = "outbox rows purged"
    AUDIT = "audit events purged"


@dataclass(slots=True)
class Stage:
    """One thing one policy removes, with its cutoff and its place in the walk."""

    policy: Policy
    what: What
    cutoff: datetime
    now: datetime
    # The requests this stage may take: the policy's, less the more specific ones'.
    others: tuple[Policy, ...] = ()
    # An earlier stage of the policy takes what finished before this (deleted
    # before it would be anonymised; anonymised is raw dropped too).
    floor: datetime | None = None
    # The last (finished time, id) done: the next batch starts after it.
    after: tuple[datetime, int] | None = None
    done: int = 0
    finished: bool = False
    counted: int | None = field(default=None)


def plan(policies: Sequence[Policy], now: datetime) -> list[Stage]:
    """Every stage of a pass at `now`, most specific policies first."""
    now = now.astimezone(UTC)  # SQLite compares timestamps as the text they are stored as
    ordered = by_specificity(policies)
    stages: list[Stage] = []
    for policy in ordered:
        others = tuple(overriding(ordered, policy))
        floor: datetime | None = None
        for what, days in ((What.DELETE, policy.delete_after_days),
                           (What.ANONYMISE, policy.anonymise_after_days),
                           (What.RAW, policy.raw_after_days)):
            cutoff = policy.cutoff(days, now)
            if cutoff is not None:
                stages.append(Stage(policy, what, cutoff, now, others, floor))
                floor = cutoff if floor is None else max(floor, cutoff)
    default = default_policy(policies)
    if default is not None:
        for what, days in ((What.DEAD_LETTERS, default.dead_letters_after_days),
                           (What.OUTBOX, default.outbox_after_days),
                           (What.AUDIT, default.audit_after_days)):
            cutoff = default.cutoff(days, now)
            if cutoff is not None:
                stages.append(Stage(default, what, cutoff, now))
    return stages


def _matches(policy: Policy) -> Any:
    condition = []
    if policy.queue is not None:
        condition.append(requests.c.queue == policy.queue)
    if policy.type is not None:
        # coalesce: a request without a type must not make NOT (...) unknown.
        condition.append(func.coalesce(requests.c.type, "") == policy.type)
    return and_(*condition) if condition else None


def _governed(stage: Stage) -> Any:
    """The finished requests this stage takes, expired and not yet done."""
    condition = [IS_FINISHED, FINISHED_AT < stage.cutoff]
    if stage.floor is not None:
        condition.append(FINISHED_AT >= stage.floor)
    own = _matches(stage.policy)
    if own is not None:
        condition.append(own)
    for other in stage.others:
        theirs = _matches(other)
        condition.append(not_(theirs) if theirs is not None else false())
    if stage.what is What.ANONYMISE:
        condition.append(requests.c.anonymised_at.is_(None))
    elif stage.what is What.RAW:
        condition.append(requests.c.raw_dropped_at.is_(None))
    return and_(*condition)


async def count(engine: AsyncEngine, stage: Stage) -> int:
    """What the stage would remove now (the dry run's figure)."""
    async with connection(engine) as conn:
        if stage.what in (What.DELETE, What.ANONYMISE, What.RAW):
            query = select(func.count()).select_from(requests).where(_governed(stage))
        elif stage.what is What.DEAD_LETTERS:
            query = select(
                select(func.count()).select_from(inbox_items)
                .where(_dead_items(stage)).scalar_subquery()
                + select(func.count()).select_from(outbox)
                .where(outbox.c.state == DeliveryState.DEAD,
                       outbox.c.created_at < stage.cutoff).scalar_subquery())
        elif stage.what is What.OUTBOX:
            query = select(func.count()).select_from(outbox).where(
                outbox.c.state.in_(_DELIVERED), outbox.c.created_at < stage.cutoff)
        else:
            query = select(func.count()).select_from(audit_events).where(
                audit_events.c.at < stage.cutoff)
        return int((await conn.execute(query)).scalar_one())


async def run_batch(engine: AsyncEngine, stage: Stage, *, batch: int) -> int:
    """One batch of the stage, in one transaction; 0 (and `stage.finished`) when
    nothing is left."""
    if stage.finished:
        return 0
    if stage.what is What.AUDIT:
        done = await purge_before(engine, stage.cutoff, limit=batch)
    elif stage.what is What.DEAD_LETTERS:
        done = await _purge_dead_letters(engine, stage, batch)
    elif stage.what is What.OUTBOX:
        done = await _purge_outbox(engine, stage.cutoff, batch)
    else:
        done = await _request_batch(engine, stage, batch)
    stage.done += done
    if done < batch and stage.what not in (What.DELETE, What.ANONYMISE, What.RAW):
        stage.finished = True
    elif done == 0:
        stage.finished = True
    return done


def _locked(conn: AsyncConnection, query: Any) -> Any:
    """A batch's rows, each locked for this transaction; rows another process
    holds are left to it (PostgreSQL; SQLite has one writer at a time)."""
    if conn.dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True)
    return query


async def _request_batch(engine: AsyncEngine, stage: Stage, batch: int) -> int:
    async with transaction(engine) as conn:
        query = select(requests.c.id, FINISHED_AT.label("finished")).where(_governed(stage))
        if stage.after is not None:
            query = query.where(tuple_(FINISHED_AT, requests.c.id) > tuple_(*stage.after))
        rows = (await conn.execute(
            _locked(conn, query.order_by(FINISHED_AT, requests.c.id).limit(batch)))).all()
        if not rows:
            return 0
        ids = [row.id for row in rows]
        last = rows[-1]
        finished = last.finished
        if isinstance(finished, str):  # SQLite: coalesce() of two timestamps is text
            finished = datetime.fromisoformat(finished)
        stage.after = (finished, last.id)
        if stage.what is What.DELETE:
            await delete_requests(conn, ids)
        elif stage.what is What.ANONYMISE:
            await anonymise_requests(conn, ids, stage.now)
        else:
            await drop_raw(conn, ids, stage.now)
    return len(ids)


async def _parts(conn: AsyncConnection, ids: list[int]) -> tuple[list[int], list[int]]:
    """The requests' messages, and the inbox items they and their messages came from."""
    rows = (await conn.execute(select(messages.c.id, messages.c.inbox_item_id)
                               .where(messages.c.request_id.in_(ids)))).all()
    items = {row.inbox_item_id for row in rows if row.inbox_item_id is not None}
    items |= {item for item in (await conn.execute(
        select(requests.c.inbox_item_id).where(requests.c.id.in_(ids)))).scalars()
        if item is not None}
    return [row.id for row in rows], sorted(items)


async def _drop_unreferenced_blobs(conn: AsyncConnection, shas: set[str]) -> None:
    """Blob contents no attachment refers to any more (shared ones stay)."""
    shas.discard(DROPPED_SHA256)
    if not shas:
        return
    orphan = and_(blobs.c.sha256.in_(sorted(shas)),
                  ~exists().where(attachments.c.sha256 == blobs.c.sha256))
    gone = list((await conn.execute(select(blobs.c.sha256).where(orphan))).scalars())
    if gone:
        await conn.execute(delete(blob_chunks).where(blob_chunks.c.sha256.in_(gone)))
        await conn.execute(delete(blobs).where(blobs.c.sha256.in_(gone)))


async def _delete_attachments(conn: AsyncConnection, message_ids: list[int]) -> None:
    if not message_ids:
        return
    shas = set((await conn.execute(select(attachments.c.sha256).where(
        attachments.c.message_id.in_(message_ids)))).scalars())
    await conn.execute(delete(attachments).where(attachments.c.message_id.in_(message_ids)))
    await _drop_unreferenced_blobs(conn, shas)


async def delete_requests(conn: AsyncConnection, ids: list[int]) -> None:
    """Every row of these requests, dependants first (the foreign keys' order)."""
    message_ids, item_ids = await _parts(conn, ids)
    await _delete_attachments(conn, message_ids)
    for table in (events, sla_marks, outbox):
        await conn.execute(delete(table).where(table.c.request_id.in_(ids)))
    # Another request's link to one of these (a follow-up, a merge) is let go.
    for column in (requests.c.linked_from_id, requests.c.merged_into_id):
        await conn.execute(update(requests).where(column.in_(ids), requests.c.id.not_in(ids))
                           .values({column.name: None}))
    await conn.execute(delete(messages).where(messages.c.request_id.in_(ids)))
    await conn.execute(delete(requests).where(requests.c.id.in_(ids)))
    if item_ids:
        await conn.execute(delete(inbox_items).where(inbox_items.c.id.in_(item_ids)))


async def anonymise_requests(conn: AsyncConnection, ids: list[int], now: datetime) -> None:
    message_ids, item_ids = await _parts(conn, ids)
    await _delete_attachments(conn, message_ids)
    if item_ids:
        await conn.execute(update(inbox_items).where(inbox_items.c.id.in_(item_ids))
                           .values(raw=b"", meta={}))
    if message_ids:
        await conn.execute(update(messages).where(messages.c.id.in_(message_ids)).values(
            from_address=None, from_name=None, to=[], cc=[], subject="", new_text="",
            text="", html=None))
    await conn.execute(update(events).where(events.c.request_id.in_(ids)).values(data={}))
    await conn.execute(delete(outbox).where(outbox.c.request_id.in_(ids),
                                            outbox.c.state.in_(_FINAL)))
    await conn.execute(update(requests).where(requests.c.id.in_(ids)).values(
        requester_email=None, requester_name=None, custom_fields={}, status_token=None,
        anonymised_at=now,
        raw_dropped_at=func.coalesce(requests.c.raw_dropped_at, now)))


async def drop_raw(conn: AsyncConnection, ids: list[int], now: datetime) -> None:
    message_ids, item_ids = await _parts(conn, ids)
    if item_ids:
        await conn.execute(update(inbox_items).where(inbox_items.c.id.in_(item_ids))
                           .values(raw=b""))
    if message_ids:
        shas = set((await conn.execute(select(attachments.c.sha256).where(
            attachments.c.message_id.in_(message_ids)))).scalars())
        if shas - {DROPPED_SHA256}:
            await conn.execute(insert_new(conn, blobs).values(
                sha256=DROPPED_SHA256, size=0, content=b""))
            await conn.execute(update(attachments).where(
                attachments.c.message_id.in_(message_ids)).values(sha256=DROPPED_SHA256))
            await _drop_unreferenced_blobs(conn, shas)
    await conn.execute(update(requests).where(requests.c.id.in_(ids))
                       .values(raw_dropped_at=now))


def _dead_items(stage: Stage) -> Any:
    # A dead item made no request; the checks keep a replayed one's rows safe.
    return and_(inbox_items.c.state == ItemState.DEAD,
                inbox_items.c.received_at < stage.cutoff,
                ~exists().where(requests.c.inbox_item_id == inbox_items.c.id),
                ~exists().where(messages.c.inbox_item_id == inbox_items.c.id))


async def _purge_dead_letters(engine: AsyncEngine, stage: Stage, batch: int) -> int:
    async with transaction(engine) as conn:
        items = list((await conn.execute(_locked(conn, select(inbox_items.c.id).where(
            _dead_items(stage)).limit(batch)))).scalars())
        if items:
            await conn.execute(delete(inbox_items).where(inbox_items.c.id.in_(items)))
        rows = list((await conn.execute(_locked(conn, select(outbox.c.id).where(
            outbox.c.state == DeliveryState.DEAD, outbox.c.created_at < stage.cutoff)
            .limit(batch - len(items))))).scalars()) if len(items) < batch else []
        if rows:
            await conn.execute(delete(outbox).where(outbox.c.id.in_(rows)))
    return len(items) + len(rows)


async def _purge_outbox(engine: AsyncEngine, cutoff: datetime, batch: int) -> int:
    async with transaction(engine) as conn:
        rows = list((await conn.execute(_locked(conn, select(outbox.c.id).where(
            outbox.c.state.in_(_DELIVERED), outbox.c.created_at < cutoff)
            .order_by(outbox.c.created_at).limit(batch)))).scalars())
        if rows:
            await conn.execute(delete(outbox).where(outbox.c.id.in_(rows)))
    return len(rows)


async def run_pass(engine: AsyncEngine, policies: Sequence[Policy], now: datetime, *,
                   batch: int, dry_run: bool = False) -> list[Stage]:
    """A whole pass, every stage to its end (the command line's); dry run: each
    stage's `counted` is what it would remove, and nothing changes."""
    stages = plan(policies, now)
    for stage in stages:
        if dry_run:
            stage.counted = await count(engine, stage)
            continue
        while await run_batch(engine, stage, batch=batch):
            pass
    return stages
