"""Email to a queue's agents on new work, escalations and SLA breaches.

Off unless a queue lists happenings in `[[queue]] notify_on`. The recipients
are the active agents who work the queue (`agents`; one with no queues works
them all) and the queue's `notify` addresses. Each happening becomes one
outbox row per recipient (never a mail sent inline), due at once, or when the
queue's quiet hours end (read in the time zone of the queue's SLA calendar),
plus the queue's digest window; an agent's own quiet hours and digest window
(`PATCH /v1/admin/agents/{id}`), when set, stand for the queue's. The row
that falls due takes every other pending row of its recipient along: one mail
lists them all (storage/notifications.py).

They come from the public events the outbox worker fans out (`created`,
`escalated`, `sla_breached`), read with the request as it is now.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from domain.lifecycle import Status, announces_work
from gateway.config import Config
from gateway.config.sections import QueueSection
from gateway.delivery.outbound import identity, new_message_id, one_line
from storage.notifications import Notice, Recipient

# Public events that notify, by the name queues use in `notify_on`.
FROM_EVENTS = {"created": "new_request", "escalated": "escalated",
               "sla_breached": "sla_breached"}
LABELS = {"new_request": "New request", "escalated": "Escalated",
          "sla_breached": "Service level breached"}
MAX_LISTED = 50  # a digest lists at most this many happenings (the rest are counted)


def _queue(config: Config, name: str) -> QueueSection | None:
    return next((q for q in config.queue if q.name == name), None)


def wanted(config: Config) -> bool:
    """Whether any queue notifies at all (else nothing is looked up)."""
    return any(q.notify_on for q in config.queue)


def _timezone(config: Config, queue: str) -> ZoneInfo:
    policy = config.sla.select(queue=queue) if config.sla is not None else None
    return ZoneInfo(policy.calendar.timezone if policy is not None else "UTC")


def quiet_until(window: str, local: datetime) -> datetime | None:
    """When the quiet hours `HH:MM-HH:MM` that hold at `local` end (None: not quiet)."""
    start, end = (time.fromisoformat(part) for part in window.split("-"))
    now = local.time()
    if start <= end:
        quiet = start <= now < end
        later = False
    else:  # over midnight
        quiet = now >= start or now < end
        later = now >= start
    if not quiet:
        return None
    day = local.date() + timedelta(days=1 if later else 0)
    return datetime.combine(day, end, tzinfo=local.tzinfo)


def due(config: Config, spec: QueueSection, now: datetime, *, quiet_hours: str | None = None,
        digest_minutes: int | None = None) -> datetime:
    """When a notice of `spec`'s queue made `now` may go; an agent's own
    `quiet_hours` and `digest_minutes`, when set, stand for the queue's."""
    window = quiet_hours or spec.quiet_hours
    at = now
    if window:
        ends = quiet_until(window, now.astimezone(_timezone(config, spec.name)))
        if ends is not None:
            at = ends.astimezone(now.tzinfo)
    minutes = spec.digest_minutes if digest_minutes is None else digest_minutes
    return at + timedelta(minutes=minutes)


def notices(config: Config, agents: Mapping[str, Sequence[Recipient]], *, kind: str,
            queue: str, reference: str, at: datetime, key: str, subject: str = "",
            priority: str | None = None, detail: str = "") -> list[Notice]:
    """One notice per recipient of `queue` for a happening of `kind`; none when
    the queue does not ask for it. `key`: what makes the happening unique."""
    spec = _queue(config, queue)
    if spec is None or kind not in spec.notify_on:
        return []
    recipients = {who.email.lower(): who for who in (
        Recipient(*agent) for agent in (*agents.get(queue, ()), *agents.get("*", ())))}
    for address in spec.notify:
        recipients.setdefault(address.lower(), Recipient(address, ""))
    event = {"kind": kind, "label": LABELS[kind], "reference": reference, "queue": queue,
             "subject": one_line(subject), "priority": priority or "", "at": at.isoformat(),
             "detail": one_line(detail), "url": f"{config.public_url}/v1/requests/{reference}"}
    found = []
    for lowered, who in sorted(recipients.items()):
        when = due(config, spec, at, quiet_hours=who.quiet_hours,
                   digest_minutes=who.digest_minutes)
        found.append(Notice(to=who.email, name=who.name, due=when,
                            dedupe_key=f"notice:{key}:{lowered}",
                            payload={"event": event, "due": when.isoformat(), "target": lowered,
                                     "recipient": lowered, "to": who.email, "name": who.name}))
    return found


def from_event(config: Config, agents: Mapping[str, Sequence[Recipient]],
               request: Mapping[str, Any] | None, item_id: int, payload: Mapping[str, Any],
               now: datetime) -> list[Notice]:
    """The notices a fanned-out public event makes (new work, escalations,
    breaches); `request`: its queue, status, subject, priority as they are now."""
    kind = FROM_EVENTS.get(str(payload.get("event")))
    data = payload.get("data") or {}
    if kind is None or request is None or not isinstance(data, dict):
        return []
    if kind == "new_request":
        try:
            if not announces_work(Status(request["status"])):
                return []  # quarantined, automatic: no one's work yet
        except ValueError:
            return []
    rules = data.get("rules") or []
    detail = (", ".join(str(r) for r in rules) if isinstance(rules, list) and rules
              else str(data.get("target") or ""))
    return notices(config, agents, kind=kind, queue=str(request["queue"]),
                   reference=str(payload["reference"]), at=now, key=f"event:{item_id}",
                   subject=str(request.get("subject") or ""), priority=request.get("priority"),
                   detail=detail)


def digest(config: Config, payloads: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One mail to one recipient listing their pending notices (an outbox
    `message` payload for the mailer). Raises jinja2's errors if the
    `notification` template cannot be rendered."""
    first = payloads[0]
    events = [dict(p["event"]) for p in payloads]
    queue = str(events[0]["queue"])
    sender = identity(config, queue)
    text = config.templates.render_named(
        "notification", agent=one_line(str(first.get("name") or ""), 100), queue=queue,
        signature=sender.signature, events=events[:MAX_LISTED])
    if len(events) > MAX_LISTED:
        text += f"\n... and {len(events) - MAX_LISTED} more.\n"
    one = events[0]
    subject = (f"{one['label']}: {one['reference']}"
               + (f" {one['subject']}" if one["subject"] else "")
               if len(events) == 1 else
               f"{len(events)} updates: " + ", ".join(dict.fromkeys(
                   str(e["reference"]) for e in events[:10])))
    return {"subject": one_line(subject), "text": text, "from_address": sender.address,
            "from_name": sender.name, "message_id": new_message_id(config),
            "to": [{"name": one_line(str(first.get("name") or ""), 100),
                    "address": str(first["to"])}],
            "cc": [], "in_reply_to": None, "references": [],
            "auto_submitted": "auto-generated"}
