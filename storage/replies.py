"""What a message on an existing request changes there.

A customer's answer while we wait on them puts the request back in the queue
(`domain.lifecycle.status_after_reply`, with what follows for the service-level
clock), and a rule for replies may route it again. Both are recorded on the
timeline after the message itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.lifecycle import Actor, Event, EventKind, status_after_reply
from storage.models import requests
from storage.placing import Landed
from storage.records import Placed
from storage.sla_store import Clock, clocks, status_columns


@dataclass(frozen=True, slots=True)
class Answer:
    """What one message changes on the request it landed on."""

    changes: dict[str, Any]
    events: tuple[Event, ...]


async def answers(conn: AsyncConnection, batch: list[Landed],
                  now: datetime) -> list[Answer | None]:
    """Per item of the batch, in its order: what it changes (None: it is no
    message on an existing request). Statuses are read once, as they were
    before the batch, so two answers in one batch reopen alike."""
    from_people = [one.request_id for one in batch if one.placement.kind == Placed.THREAD
                   and one.new.hints is not None and not one.new.hints.automatic]
    current = await clocks(conn, from_people) if from_people else {}
    return [_answer(one, current.get(one.request_id), now)
            if one.placement.kind == Placed.THREAD else None for one in batch]


def _answer(one: Landed, clock: Clock | None, now: datetime) -> Answer:
    changes: dict[str, Any] = {}
    found: list[Event] = []
    hints = one.new.hints
    after = (status_after_reply(clock.status, automatic=hints.automatic)
             if clock is not None and hints is not None else None)
    if clock is not None and after is not None:
        changes |= status_columns(clock, after, now) | {"status": after}
        found.append(Event(kind=EventKind.STATUS_CHANGED, actor=Actor.REQUESTER,
                           data={"from": clock.status, "to": after, "by": "customer reply"}))
    if one.new.reply_changes:
        changes |= one.new.reply_changes
        found.append(Event(kind=EventKind.REROUTED, actor=Actor.RULE,
                           data={"by": "reply rule", "changes": one.new.reply_changes,
                                 "decision": one.new.reply_decision}))
    return Answer(changes, tuple(found))


async def apply_answers(conn: AsyncConnection, batch: list[Landed],
                        found: list[Answer | None], now: datetime) -> None:
    """A request with a new message was updated now; one an answer changed
    gets the new columns and a new version (once, however many answers)."""
    touched = {one.request_id for one in batch if one.placement.kind == Placed.THREAD}
    if touched:
        await conn.execute(update(requests).where(requests.c.id.in_(touched))
                           .values(updated_at=now))
    changed: dict[int, dict[str, Any]] = {}
    for one, answer in zip(batch, found, strict=True):
        if answer is not None and answer.changes:
            changed[one.request_id] = changed.get(one.request_id, {}) | answer.changes
    for request_id, values in changed.items():
        await conn.execute(update(requests).where(requests.c.id == request_id)
                           .values({**values, "version": requests.c.version + 1}))
