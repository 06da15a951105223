"""What a message on an existing request changes there.

A customer's answer while we wait on them puts the request back in the queue,
and one to a resolved or closed request (within its reopen window: later it
became a new request, storage/placing.py) reopens it
(`domain.lifecycle.status_after_reply`, with what follows for the service-level
clock); a rule for replies may route it again. Each is recorded on the
timeline after the message itself, and told to subscribers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.lifecycle import (
    Actor,
    Event,
    EventKind,
    PublicEvent,
    Status,
    announces_work,
    status_after_reply,
)
from storage.models import requests
from storage.placing import Landed
from storage.records import Placed
from storage.sla_store import Clock, clocks, status_columns


@dataclass(frozen=True, slots=True)
class Answer:
    """What one message changes on the request it landed on."""

    changes: dict[str, Any]
    events: tuple[Event, ...]
    # What subscribers are told it changed (webhooks, the broker).
    public: tuple[tuple[PublicEvent, dict[str, Any]], ...] = ()


async def answers(conn: AsyncConnection, batch: list[Landed],
                  now: datetime) -> list[Answer | None]:
    """Per item of the batch, in its order: what it changes (None: it is no
    message on an existing request). Statuses are read once, as they were
    before the batch; the first answer to a request changes its status, so
    two answers in one batch reopen it once."""
    from_people = [one.request_id for one in batch if one.placement.kind == Placed.THREAD
                   and one.new.hints is not None and not one.new.hints.automatic
                   and not one.new.archived]
    current = await clocks(conn, from_people) if from_people else {}
    found: list[Answer | None] = []
    for one in batch:
        if one.placement.kind != Placed.THREAD:
            found.append(None)
            continue
        if one.new.archived:  # history: it reopens and reroutes nothing
            found.append(Answer({}, ()))
            continue
        answer = _answer(one, current.get(one.request_id), now)
        if "status" in answer.changes:
            current.pop(one.request_id, None)  # changed: a later answer leaves it
        found.append(answer)
    return found


def _answer(one: Landed, clock: Clock | None, now: datetime) -> Answer:
    changes: dict[str, Any] = {}
    found: list[Event] = []
    public: list[tuple[PublicEvent, dict[str, Any]]] = []
    hints = one.new.hints
    after = (status_after_reply(clock.status, automatic=hints.automatic)
             if clock is not None and hints is not None else None)
    if clock is not None and after is not None:
        changes |= status_columns(clock, after, now) | {"status": after}
        found.append(Event(kind=EventKind.STATUS_CHANGED, actor=Actor.REQUESTER,
                           data={"from": clock.status, "to": after, "by": "customer reply"}))
        public.append((PublicEvent.STATUS_CHANGED, {"from": clock.status, "status": after,
                                                    "actor": Actor.REQUESTER}))
        if after == Status.REOPENED:
            reopened = {"from": clock.status, "by": "customer reply",
                        "message_id": hints.message_id if hints else None}
            found.append(Event(kind=EventKind.REOPENED, actor=Actor.REQUESTER, data=reopened))
            public.append((PublicEvent.REOPENED, reopened))
    if one.new.reply_changes:
        changes |= one.new.reply_changes
        found.append(Event(kind=EventKind.REROUTED, actor=Actor.RULE,
                           data={"by": "reply rule", "changes": one.new.reply_changes,
                                 "decision": one.new.reply_decision}))
    return Answer(changes, tuple(found), tuple(public))


_AT = bindparam("dated", type_=requests.c.updated_at.type)
_DATED = (update(requests)
          .where(requests.c.id == bindparam("rid"), requests.c.updated_at < _AT)
          .values(updated_at=_AT))


async def apply_answers(conn: AsyncConnection, batch: list[Landed],
                        found: list[Answer | None], now: datetime) -> dict[int, str]:
    """A request with a new message was updated now; one an answer changed
    gets the new columns and a new version (once, however many answers).
    The queues of the requests it made work again (reopened, open), by id:
    their waiting agents are told."""
    touched = {one.request_id for one in batch if one.placement.kind == Placed.THREAD
               and not one.new.archived}
    if touched:
        await conn.execute(update(requests).where(requests.c.id.in_(touched))
                           .values(updated_at=now))
    # Archived mail moves a request's last change only up to its own date: a
    # finished request stays finished when its history ended, for reports.
    dated = [{"rid": one.request_id, "dated": one.new.created_at} for one in batch
             if one.placement.kind == Placed.THREAD and one.new.archived and one.new.created_at]
    if dated:
        await conn.execute(_DATED, dated)
    changed: dict[int, dict[str, Any]] = {}
    for one, answer in zip(batch, found, strict=True):
        if answer is not None and answer.changes:
            changed[one.request_id] = changed.get(one.request_id, {}) | answer.changes
    work: dict[int, str] = {}
    for request_id, values in changed.items():
        queue = (await conn.execute(update(requests).where(requests.c.id == request_id)
                                    .values({**values, "version": requests.c.version + 1})
                                    .returning(requests.c.queue))).scalar()
        if queue is not None and "status" in values and announces_work(values["status"]):
            work[request_id] = queue
    return work
