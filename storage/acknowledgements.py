"""Acknowledgements of new requests: stored as our outbound message and queued
for delivery in the transaction that stores the request.

How many may go out is the lifecycle's rule (`domain.lifecycle.
acknowledgement_held`: per recipient mailbox, per recipient domain, per
minute); this module counts what was sent. Each acknowledgement's outbox row
records the mailbox it actually goes to (an email's Reply-To, not its From)
and that mailbox's domain, and the limits count those columns.

On PostgreSQL, transactions that queue acknowledgements take one
transaction-level advisory lock before counting, so two pipelines (or two
processes) storing batches at once cannot both count below a limit and both
send: the second counts after the first commits. SQLite has one writer at a
time already.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    bindparam,
    func,
    literal_column,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.lifecycle import (
    ACKNOWLEDGEMENT_BURST_WINDOW,
    ACKNOWLEDGEMENT_WINDOW,
    AcknowledgementLimits,
    AcknowledgementsSent,
    Event,
    EventKind,
    Recipient,
    acknowledgement_held,
    counted_recipient,
)
from storage.engine import among_bound, transaction
from storage.models import messages, outbox
from storage.outbox import message_payload, outbox_row
from storage.records import NewMessage, NewRequest
from storage.rows import outbound_row

ACK_KEY = "ack:"  # the outbox dedupe key's prefix: one acknowledgement per request
# pg_advisory_xact_lock key of "counting acknowledgements" (any constant of our own).
COUNTING_LOCK = 0x1A_C4_0C_0B_7E


@dataclass(frozen=True, slots=True)
class _Wanted:
    request_id: int
    message: NewMessage
    recipient: Recipient
    # The request's reference and queue, carried for the delivery's log line.
    request: dict[str, str]
    # Fitted with its request (storage/fitting.py): its row is not walked again.
    fitted: bool


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """What `queue_acknowledgements` decided, for the caller to write in the same
    transaction with the rest of its batch, one statement per table: the timeline
    events by request id, the acknowledgements as our outbound messages, and
    their outbox rows (storage/outbox.py `enqueue_rows`)."""

    events: list[tuple[int, Event]] = field(default_factory=list)
    message_rows: list[dict[str, Any]] = field(default_factory=list)
    outbox_rows: list[dict[str, Any]] = field(default_factory=list)


async def queue_acknowledgements(conn: AsyncConnection,
                                 created: list[tuple[int, NewRequest, str]],
                                 now: datetime, limits: AcknowledgementLimits | None
                                 ) -> Acknowledged:
    """Queue the acknowledgement of each new request that has one, unless a limit
    holds it back (recorded with the reason); what to write (`Acknowledged`).
    Reads what the limits count, and writes nothing itself."""
    wanted = [_Wanted(request_id, new.acknowledgement,
                      counted_recipient(new.acknowledgement.to[0]["address"]),
                      {"reference": reference, "queue": new.queue}, new.fitted)
              for request_id, new, reference in created
              if new.acknowledgement is not None and new.acknowledgement.to]
    if not wanted:
        return Acknowledged()
    counts = await _Counts.read(conn, wanted, now) if limits is not None else None
    found: list[tuple[int, Event]] = []
    message_rows: list[dict[str, Any]] = []
    outbox_rows: list[dict[str, Any]] = []
    for one in wanted:
        if counts is not None and limits is not None:
            held = acknowledgement_held(recipient=one.recipient, sent=counts.sent(one.recipient),
                                        limits=limits)
            if held is not None:
                found.append((one.request_id, Event(kind=EventKind.ACKNOWLEDGEMENT_SKIPPED,
                                                    data={"reason": held})))
                continue
            counts.add(one.recipient)  # this batch counts too
        ack = one.message
        # A template that would not render: the request is stored all the same,
        # its acknowledgement a dead letter of its own, rendered again on retry.
        failed = ack.flags.get("render_error")
        payload: dict[str, Any] = {"message": message_payload(ack), "purpose": "acknowledgement",
                                   "request": one.request}
        if failed:
            payload["render"] = ack.flags.get("render")
            ack = replace(ack, flags={k: v for k, v in ack.flags.items() if k != "render"})
        message_rows.append(outbound_row(one.request_id, ack, now, fitted=one.fitted))
        outbox_rows.append(outbox_row(
            "email", payload, now, request_id=one.request_id,
            dedupe_key=f"{ACK_KEY}{one.request_id}", recipient=one.recipient.mailbox,
            recipient_domain=one.recipient.domain,
            dead_because=f"template: {failed}" if failed else None))
        found.append((one.request_id, Event(
            kind=EventKind.ACKNOWLEDGEMENT_FAILED if failed else
            EventKind.ACKNOWLEDGEMENT_QUEUED,
            data={"message_id": ack.message_id, "to": ack.to,
                  **({"error": failed, "dead_letter": True} if failed else {})})))
    return Acknowledged(found, message_rows, outbox_rows)


def _counting() -> dict[str, CompoundSelect]:
    """What the limits read, one statement per backend, built once: the
    acknowledgements of the last hour to each of `mailboxes` and to each of
    `domains`, and all of the last minute, each row (what, whose, how many)."""
    acks = outbox.c.dedupe_key.like(f"{ACK_KEY}%")
    hour = outbox.c.created_at > bindparam("hour_ago", type_=outbox.c.created_at.type)
    minute = outbox.c.created_at > bindparam("minute_ago", type_=outbox.c.created_at.type)
    mailbox = among_bound(outbox.c.recipient, "mailboxes")
    domain = among_bound(outbox.c.recipient_domain, "domains")
    return {backend: union_all(
        select(literal_column("'mailbox'"), outbox.c.recipient, func.count())
        .where(mailbox[backend], hour, acks).group_by(outbox.c.recipient),
        select(literal_column("'domain'"), outbox.c.recipient_domain, func.count())
        .where(domain[backend], hour, acks).group_by(outbox.c.recipient_domain),
        select(literal_column("'minute'"), literal_column("NULL"), func.count())
        .select_from(outbox).where(minute, acks))
        for backend in mailbox}


_COUNTING = _counting()


@dataclass(slots=True)
class _Counts:
    """Acknowledgements sent in the limits' windows, for the batch's recipients."""

    by_mailbox: Counter[str]
    by_domain: Counter[str]
    last_minute: int

    @classmethod
    async def read(cls, conn: AsyncConnection, wanted: list[_Wanted], now: datetime
                   ) -> _Counts:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": COUNTING_LOCK})
        counts = cls(Counter(), Counter(), 0)
        for kind, key, count in await conn.execute(_COUNTING[conn.dialect.name], {
                "mailboxes": sorted({w.recipient.mailbox for w in wanted}),
                "domains": sorted({w.recipient.domain for w in wanted}),
                "hour_ago": now - ACKNOWLEDGEMENT_WINDOW,
                "minute_ago": now - ACKNOWLEDGEMENT_BURST_WINDOW}):
            if kind == "mailbox":
                counts.by_mailbox[key] = count
            elif kind == "domain":
                counts.by_domain[key] = count
            else:
                counts.last_minute = int(count)
        return counts

    def sent(self, recipient: Recipient) -> AcknowledgementsSent:
        return AcknowledgementsSent(to_recipient=self.by_mailbox[recipient.mailbox],
                                    to_domain=self.by_domain[recipient.domain],
                                    in_last_minute=self.last_minute)

    def add(self, recipient: Recipient) -> None:
        self.by_mailbox[recipient.mailbox] += 1
        self.by_domain[recipient.domain] += 1
        self.last_minute += 1


async def store_rendered(engine: AsyncEngine, item_id: int, payload: dict[str, Any]) -> None:
    """A held acknowledgement rendered at last (retried after its template was
    fixed): the outbox row and the stored message take the text."""
    message = payload["message"]
    async with transaction(engine) as conn:
        await conn.execute(update(outbox).where(outbox.c.id == item_id)
                           .values(payload=payload))
        row = (await conn.execute(select(messages.c.id, messages.c.flags).where(
            messages.c.message_id == message["message_id"],
            messages.c.direction == "out"))).first()
        if row is not None:
            flags = {k: v for k, v in (row.flags or {}).items() if k != "render_error"}
            await conn.execute(update(messages).where(messages.c.id == row.id).values(
                text=message["text"], new_text=message["text"], flags=flags))
