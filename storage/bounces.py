"""Hard bounces on a request: a delivery report that says our mail failed for good.

A bounce threads onto the request of the mail it reports on (by the
Message-ID it returns, storage/placing.py). When it is permanent (a 5.x.x
status), the request is tagged `bounced` once and its timeline gets a
`delivery_failed` entry naming our message and the statuses, never the
addresses or the report's text. A rule for replies with `when = { bounce =
true }` can move it (gateway/pipeline/building.py runs those rules for it).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.lifecycle import Event, EventKind
from storage.models import requests
from storage.placing import Landed
from storage.records import Placed
from storage.replies import Answer

BOUNCED_TAG = "bounced"


def hard_bounce(bounce: Any) -> bool:
    """Whether a parsed delivery report (a message's `flags.bounce`) says our mail
    could not be delivered for good: permanent, with a 5.x.x status for a
    recipient (a heuristic report without statuses counts when permanent)."""
    if not isinstance(bounce, dict) or not bounce.get("permanent"):
        return False
    statuses = [str(r.get("status") or "") for r in bounce.get("recipients") or []
                if isinstance(r, dict)]
    return not any(statuses) or any(s.startswith("5.") for s in statuses)


async def with_bounces(conn: AsyncConnection, batch: list[Landed],
                       found: list[Answer | None]) -> list[Answer | None]:
    """`found` (storage/replies.py `answers`) with each hard bounce's tag and event."""
    bounced = {one.request_id for one in batch if one.placement.kind == Placed.THREAD
               and hard_bounce(one.new.message.flags.get("bounce"))}
    if not bounced:
        return found
    tags = {row.id: list(row.tags or []) for row in (await conn.execute(
        select(requests.c.id, requests.c.tags).where(requests.c.id.in_(bounced)))).all()}
    out: list[Answer | None] = []
    for one, answer in zip(batch, found, strict=True):
        if one.request_id not in bounced or one.placement.kind != Placed.THREAD:
            out.append(answer)
            continue
        base = answer if answer is not None else Answer({}, ())
        bounce = one.new.message.flags["bounce"]
        changes = dict(base.changes)
        current = tags.get(one.request_id, [])
        if BOUNCED_TAG not in current:
            current.append(BOUNCED_TAG)  # a second bounce in the batch sees it
            changes["tags"] = list(current)
        event = Event(kind=EventKind.DELIVERY_FAILED, data={
            "message_id": bounce.get("original_message_id"), "kind": bounce.get("kind"),
            "statuses": sorted({str(r.get("status") or "") for r in
                                bounce.get("recipients") or [] if isinstance(r, dict)} - {""})})
        out.append(replace(base, changes=changes, events=(*base.events, event)))
    return out
