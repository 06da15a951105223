"""A request's life: its statuses, the events on its timeline, the outcomes of
an action on it, and the rules that follow from a change of status.

Pure: no I/O and no clock (the caller passes what it read). Storage and the
gateway ask it and store what it says, so each rule lives here once.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """Where a request stands. `received` is never stored on a request: it is
    what the API shows for an inbox item the pipeline has not processed yet."""

    RECEIVED = "received"
    NEW = "new"
    OPEN = "open"
    WAITING = "waiting"  # on the customer: the service-level clock pauses
    REOPENED = "reopened"
    RESOLVED = "resolved"
    CLOSED = "closed"
    QUARANTINED = "quarantined"  # held for review by a rule, never dropped
    MERGED = "merged"


# What an agent may set by hand (from any status: nothing else is refused).
SETTABLE = (Status.NEW, Status.OPEN, Status.WAITING, Status.RESOLVED, Status.CLOSED,
            Status.REOPENED)
# Waiting for an agent: listed in a queue, claimable, announced to waiting agents.
WORKABLE = (Status.NEW, Status.OPEN, Status.REOPENED)
# Still open: the current rules may route it again.
OPEN = (Status.NEW, Status.OPEN, Status.WAITING, Status.REOPENED, Status.QUARANTINED)
# Finished: the service-level scheduler no longer looks at it.
DONE = (Status.RESOLVED, Status.CLOSED, Status.MERGED)
# Setting one of these meets the resolution target; leaving one for open work reopens.
RESOLVING = (Status.RESOLVED, Status.CLOSED)
# A new request starting in one of these gets service-level deadlines (automatic
# mail, closed at once, gets none).
TIMED = (Status.NEW, Status.QUARANTINED)
# The service-level clock stands still in these: waiting on the customer, and held
# in quarantine (its clocks start when it is released: the time held is a pause).
HELD = (Status.WAITING, Status.QUARANTINED)
# A customer's reply reopens a resolved or closed request within this many days
# of its resolution (`[[queue]] reopen_days`); 0: never.
DEFAULT_REOPEN_DAYS = 14


class EventKind(StrEnum):
    """The kinds of entry on a request's timeline."""

    RECEIVED = "received"
    PARSED = "parsed"
    # Sender authentication's verdicts (and a front filter's spam verdict), in words.
    AUTHENTICATED = "authenticated"
    THREADED = "threaded"
    CLASSIFIED = "classified"
    ROUTED = "routed"
    ACKNOWLEDGEMENT = "acknowledgement"  # the decision: send one or not, and why
    ACKNOWLEDGEMENT_QUEUED = "acknowledgement_queued"
    ACKNOWLEDGEMENT_SKIPPED = "acknowledgement_skipped"
    # Its template would not render: the request stands, the mail is a dead letter.
    ACKNOWLEDGEMENT_FAILED = "acknowledgement_failed"
    # What became of one of our outbound mails at the relay: delivered, deferred
    # (will be retried) or failed (dead letter), with the SMTP reply code.
    DELIVERY = "delivery"
    # A delivery report (5.x.x) says one of our mails could not be delivered.
    DELIVERY_FAILED = "delivery_failed"
    MESSAGE_RECEIVED = "message_received"
    DUPLICATE_DELIVERY = "duplicate_delivery"
    MESSAGE_SENT = "message_sent"
    STATUS_CHANGED = "status_changed"
    REROUTED = "rerouted"
    RELEASED = "released"  # from quarantine
    UPDATED = "updated"
    NOTE = "note"
    REPLIED = "replied"
    ESCALATED = "escalated"
    MERGED = "merged"
    MERGED_FROM = "merged_from"
    CLAIMED = "claimed"
    RELEASED_CLAIM = "released_claim"
    SLA_WARNING = "sla_warning"
    SLA_BREACHED = "sla_breached"
    REOPENED = "reopened"  # a customer's reply or a merge undid the resolution
    LINKED_FROM = "linked_from"  # a new request that follows up a finished one
    FOLLOWED_UP = "followed_up"  # the finished request a new one follows up
    # The customer's status link: a one-time access link mailed on their lookup,
    # or the link replaced by a new one (the key is never in the entry).
    STATUS_LINK_SENT = "status_link_sent"
    STATUS_LINK_ROTATED = "status_link_rotated"


class PublicEvent(StrEnum):
    """What webhook subscribers and the broker are told happened to a request."""

    CREATED = "created"
    ROUTED = "routed"
    STATUS_CHANGED = "status_changed"
    REPLIED = "replied"
    ESCALATED = "escalated"
    MESSAGE_RECEIVED = "message_received"  # a customer's message on an existing request
    BOUNCED = "bounced"  # a delivery report on our mail
    MERGED = "merged"
    NOTE_ADDED = "note_added"
    REOPENED = "reopened"
    SLA_WARNING = "sla_warning"  # a service-level target reached its warning time
    SLA_BREACHED = "sla_breached"  # a service-level target was missed


class Actor(StrEnum):
    """Who did something, when it was not an agent's token (`token:ID`)."""

    SYSTEM = "system"
    RULE = "rule"
    REQUESTER = "requester"
    SCHEDULER = "scheduler"


class Outcome(StrEnum):
    """What became of an action on a stored request."""

    OK = "ok"
    MISSING = "missing"  # no such request
    STALE = "stale"  # changed since the caller read it (If-Match)
    SAME = "same"  # merging a request into itself
    MERGED = "merged"  # merged already
    LINKED = "linked"  # not merged: the target is finished past its reopen window


class ItemState(StrEnum):
    """Where an inbox item is on its way to becoming (part of) a request."""

    PENDING = "pending"
    PROCESSING = "processing"  # claimed by a worker, under a lease
    DONE = "done"
    DEAD = "dead"  # failed every attempt: kept, replayable


class DeliveryState(StrEnum):
    """Where an outbox row (a mail, a webhook call, an event to fan out) is."""

    PENDING = "pending"
    SENDING = "sending"  # claimed by a worker, under a lease
    DONE = "done"
    DEAD = "dead"  # failed every attempt: kept, retryable
    DISCARDED = "discarded"  # dead, and an operator let it go


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """An entry for a request's timeline; it happens when it is stored."""

    kind: EventKind
    # An Actor, or an agent's token (`token:ID`).
    actor: str = Actor.SYSTEM
    data: dict[str, Any] = field(default_factory=dict)


# --- Changes of status --------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """What follows from a change of status for the service-level clock."""

    old: Status
    new: Status
    pause_starts: bool = False  # waiting on the customer from now
    pause_ends: bool = False  # the pause that began when it started waiting ends now
    resolves: bool = False  # the resolution target is met now
    reopens: bool = False  # resolution undone, and counted as a reopening


def transition(old: Status, new: Status, *, paused: bool) -> Transition | None:
    """The change from `old` to `new` (None when it is no change); `paused` says
    whether the clock is paused now."""
    if old == new:
        return None
    held = new in HELD
    return Transition(
        old=old, new=new,
        pause_starts=held and not paused,
        pause_ends=not held and paused,
        resolves=new in RESOLVING,
        reopens=new == Status.REOPENED or (old in RESOLVING
                                           and new in (Status.OPEN, Status.NEW)),
    )


def status_after_reply(status: Status, *, automatic: bool) -> Status | None:
    """The status a request takes when the customer writes again, or None for
    no change: an answer to our question puts it back in the queue, and a reply
    to a resolved or closed request reopens it (one past its reopen window never
    gets here: `reply_starts_new`). Automatic mail (auto-replies, bounces)
    changes nothing."""
    if automatic:
        return None
    if status == Status.WAITING:
        return Status.OPEN
    if status in RESOLVING:
        return Status.REOPENED
    return None


def reply_starts_new(status: Status, *, automatic: bool, done_at: datetime | None,
                     now: datetime, reopen_days: int) -> bool:
    """Whether a person's message to a request in `status` starts a new request
    linked to it instead of joining it: the request is resolved or closed, and
    `done_at` (when it was) lies more than `reopen_days` before `now` (0: a
    finished request is never reopened). Automatic mail joins it (it never
    reopens anything, and a bounce belongs with the mail that bounced)."""
    if automatic or status not in RESOLVING:
        return False
    if reopen_days <= 0:
        return True
    return done_at is None or now - done_at > timedelta(days=reopen_days)


def status_after_merge(target: Status, *, source: Status) -> Status | None:
    """The status of the request merged into: a finished one takes in open work
    as a reply would (reopened); merging finished work changes nothing. The
    reopen window applies as for a reply (`reply_starts_new`)."""
    if target in RESOLVING and source in OPEN:
        return Status.REOPENED
    return None


def announces_work(status: Status) -> bool:
    """Whether agents waiting on a queue are told about a request in `status`."""
    return status in WORKABLE


def initial_status(*, quarantined: bool, automatic: bool, archived: bool = False) -> Status:
    """A new request's status: held by a rule, closed at once when nobody wrote
    it (kept and shown, not open work), else new. Mail imported from an archive
    is closed: it was dealt with then (closed, not resolved: nobody resolved it
    here, so it meets no resolution target and reports count no resolution)."""
    if archived:
        return Status.CLOSED
    if quarantined:
        return Status.QUARANTINED
    return Status.CLOSED if automatic else Status.NEW


def gets_deadlines(status: Status) -> bool:
    return status in TIMED


def clock_held(status: Status) -> bool:
    """Whether the service-level clock stands still in `status` (HELD)."""
    return status in HELD


# --- Acknowledgements ---------------------------------------------------------

# Local parts of addresses that do not take replies.
NO_REPLY = ("mailer-daemon", "postmaster", "noreply", "no-reply", "no_reply", "donotreply",
            "do-not-reply", "bounce", "bounces")
# The window of the limits per recipient and per recipient domain, and the one
# of the limit on all acknowledgements together (a loop and mail-bomb guard).
ACKNOWLEDGEMENT_WINDOW = timedelta(hours=1)
ACKNOWLEDGEMENT_BURST_WINDOW = timedelta(minutes=1)
PERSON = "new request from a person"
NO_RECIPIENT = "no address to answer that mail may be sent to"
FORGED_FROM = ("From is forged: it fails DMARC of a domain that asks for such mail to be "
               "quarantined or rejected, or DMARC spoke of another From than the one read")
# RFC 5233 subaddresses: ann+x@ and ann+y@ reach ann@, so they are counted as ann@.
SUBADDRESS_SEPARATOR = "+"
# RFC 5321 4.5.3.1: what a counted recipient is kept within (64 + 1 + 255 = 320).
MAX_LOCAL_PART = 64
MAX_DOMAIN = 255


@dataclass(frozen=True, slots=True, kw_only=True)
class MailTraits:
    """What decides whether an email gets an automatic answer."""

    sender: str  # the From address, lower case; "" when there is none
    has_sender: bool  # a From header with an address in it
    own_outbound: bool  # our own mail came back
    ours: bool  # sent from one of the addresses we receive for
    bounce: bool  # a delivery report
    auto_reply: bool  # RFC 3834
    list_mail: bool
    list_id: str | None = None
    # From fails DMARC of a domain whose policy is quarantine or reject.
    forged_from: bool = False

    @property
    def automatic(self) -> bool:
        """Nobody wrote it: it never reopens, notifies or becomes open work."""
        return self.own_outbound or self.auto_reply or self.bounce


def written_by_person(direction: str, flags: Mapping[str, Any]) -> bool:
    """Whether a stored message is a person's: one of ours (an agent's answer,
    an acknowledgement) or an inbound one whose flags mark no automatic mail
    (an auto-reply such as an out-of-office, a bounce, our own mail come back).
    An agent's answer threads on the last such message."""
    if direction != "in":
        return True
    return not (flags.get("auto_reply") or flags.get("bounce") or flags.get("own_outbound"))


def acknowledgement_veto(mail: MailTraits) -> str | None:
    """Why an email must not be answered automatically, or None if a person
    wrote it. Answering machines would answer each other for ever."""
    if mail.own_outbound:
        return "our own mail came back"
    if mail.forged_from:
        # Whoever the answer went to, it would tell the person impersonated
        # (backscatter) or the impersonator about a request not theirs.
        return FORGED_FROM
    if mail.ours:
        return "sent from one of our own addresses"
    if _takes_no_replies(mail.sender):
        return f"{mail.sender} does not take replies"
    if mail.bounce:
        return "delivery report"
    if mail.auto_reply:
        return "automatic reply (RFC 3834)"
    if mail.list_mail:
        return f"mailing-list mail ({mail.list_id or 'List-Id'})"
    if not mail.has_sender:
        return "no sender address"
    return None


def _takes_no_replies(address: str) -> bool:
    local = address.partition("@")[0]
    return any(local == word or local.startswith(word + "+") or local.startswith(word + "-")
               for word in NO_REPLY)


def recipient_veto(*, recipient: str | None, ours: bool) -> str | None:
    """Why no acknowledgement may go to `recipient` (the one checked address it
    would be sent to: Reply-To, else From, else the address a person gave), or
    None. `ours`: it is one of the addresses we receive for (we would write to
    ourselves)."""
    if ours:
        return "the answer would go to one of our own addresses"
    if recipient is None:
        return NO_RECIPIENT
    if _takes_no_replies(recipient):
        return f"{recipient} does not take replies"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Acknowledgement:
    """Whether a new request is acknowledged, why, and with which template."""

    send: bool
    reason: str
    template: str | None = None

    def data(self) -> dict[str, Any]:
        """As its timeline event shows it."""
        return {"send": self.send, "reason": self.reason, "template": self.template}


def acknowledgement(*, wanted: bool, quarantined: bool, veto: str | None,
                    template: str | None) -> Acknowledgement:
    """`wanted`: the rules ask for one; `veto`: why the input must not get one."""
    if veto is not None:
        return Acknowledgement(send=False, reason=veto)
    if quarantined:
        return Acknowledgement(send=False, reason="quarantined")
    if not wanted:
        return Acknowledgement(send=False, reason="a rule turned it off")
    return Acknowledgement(send=True, reason=PERSON, template=template)


def acknowledgement_limited(*, address: str, sent: int, per_hour: int | None) -> str | None:
    """Why no acknowledgement goes to `address` now that `sent` went there in
    the window, or None. The limit stops a loop with another auto-responder
    that answers each of ours."""
    if per_hour is None or sent < per_hour:
        return None
    return f"{sent} sent to {address} in the last hour (limit {per_hour})"


@dataclass(frozen=True, slots=True, kw_only=True)
class AcknowledgementLimits:
    """How many acknowledgements may go out: to one mailbox and to one domain in
    ACKNOWLEDGEMENT_WINDOW, and to anyone in ACKNOWLEDGEMENT_BURST_WINDOW.
    None: no limit; 0: none at all."""

    per_recipient_per_hour: int | None = None
    per_domain_per_hour: int | None = None
    per_minute: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AcknowledgementsSent:
    """What was sent already, counted as the limits count it."""

    to_recipient: int = 0  # to this mailbox in the last hour
    to_domain: int = 0  # to any address at the recipient's domain in the last hour
    in_last_minute: int = 0  # to anyone


@dataclass(frozen=True, slots=True, kw_only=True)
class Recipient:
    """What an acknowledgement is counted on: the mailbox it reaches and its domain."""

    mailbox: str
    domain: str


def counted_recipient(address: str) -> Recipient:
    """The mailbox and domain an acknowledgement to `address` (one checked
    addr-spec, its domain in A-labels) is counted on, so that spellings that
    reach one person count as one: the local part NFKC-folded, without a `+tag`
    and without dots (large providers ignore them: v.ictim@ is victim@). A key
    for counting, never an address: that it may join two near-identical
    addresses only makes the limit stricter for them."""
    local, _, domain = address.rpartition("@")
    folded = unicodedata.normalize("NFKC", local).casefold()
    # Folding may lengthen it ("ß" is "ss"): the key keeps the column's bounds.
    local = folded if len(folded) <= MAX_LOCAL_PART else local.lower()[:MAX_LOCAL_PART]
    base, separator, _ = local.partition(SUBADDRESS_SEPARATOR)
    if separator and base:
        local = base
    local = local.replace(".", "") or local
    domain = domain.lower().rstrip(".")[:MAX_DOMAIN]
    return Recipient(mailbox=f"{local}@{domain}", domain=domain)


def acknowledgement_held(*, recipient: Recipient, sent: AcknowledgementsSent,
                         limits: AcknowledgementLimits) -> str | None:
    """Why no acknowledgement goes to `recipient` now, or None: the first limit
    reached, the narrowest first. Per mailbox stops a loop with another
    auto-responder (and one victim flooded through many senders' Reply-To); per
    domain, many addresses at one organisation; per minute, a flood of any kind."""
    held = acknowledgement_limited(address=recipient.mailbox, sent=sent.to_recipient,
                                   per_hour=limits.per_recipient_per_hour)
    if held is not None:
        return held
    if limits.per_domain_per_hour is not None and sent.to_domain >= limits.per_domain_per_hour:
        return (f"{sent.to_domain} sent to addresses at {recipient.domain} in the last hour "
                f"(limit {limits.per_domain_per_hour})")
    if limits.per_minute is not None and sent.in_last_minute >= limits.per_minute:
        return (f"{sent.in_last_minute} sent to anyone in the last minute "
                f"(limit {limits.per_minute})")
    return None
