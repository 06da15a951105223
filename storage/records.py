"""What the pipeline hands to storage: plain records, no parser or routing types."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from domain.lifecycle import Event, Status


@dataclass(frozen=True, slots=True)
class NewAttachment:
    filename: str | None
    content_type: str
    content: bytes
    content_id: str | None = None
    inline: bool = False
    # Set when the content is already stored (a form upload): `content` is then
    # empty and the attachment refers to the blob by hash.
    stored_sha256: str | None = None
    stored_size: int = 0


@dataclass(frozen=True, slots=True)
class NewMessage:
    subject: str
    text: str
    new_text: str
    from_address: str | None
    from_name: str | None
    message_id: str | None = None
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    to: list[dict[str, str]] = field(default_factory=list)
    cc: list[dict[str, str]] = field(default_factory=list)
    html: str | None = None
    flags: dict[str, Any] = field(default_factory=dict)
    attachments: list[NewAttachment] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class NewRequest:
    """What the pipeline decided an inbox item becomes."""

    queue: str
    message: NewMessage
    requester_email: str | None
    requester_name: str | None
    custom_fields: dict[str, Any] = field(default_factory=dict)
    # The timeline: `received` first (on a new request `threaded` follows it,
    # when the item was threaded), then `events` (parsed, classified, ...).
    received: Event | None = None
    events: tuple[Event, ...] = ()
    status: Status = Status.NEW
    tags: list[str] = field(default_factory=list)
    priority: str | None = None
    type: str | None = None
    category: str | None = None
    component: str | None = None
    escalation_level: int = 0
    # Email only: what may tie this message to an existing request.
    hints: ThreadHints | None = None
    # If it lands on an existing request: columns a reply rule sets there, and
    # the decision that set them (for the timeline).
    reply_changes: dict[str, Any] = field(default_factory=dict)
    reply_decision: dict[str, Any] | None = None
    # The customer's key to the status page, and the acknowledgement to send
    # (stored as our outbound message and queued in the same transaction).
    status_token: str | None = None
    acknowledgement: NewMessage | None = None
    # Service-level columns worked out when it was routed (policy, deadlines).
    sla: dict[str, Any] = field(default_factory=dict)
    # Old mail imported from a mailbox archive: nothing is told or sent (no outbox
    # row), and a message of it on an existing request changes nothing there
    # (no reopening, no reply rule, no new request after the reopen window).
    archived: bool = False
    # When it was written, for archived mail (its Date): the request (when new)
    # and its message are dated so; None: stored now.
    created_at: datetime | None = None
    # Set by storage.fitting.fit_request only: every value fits its column, so
    # storing does not walk the request's row, message and events again.
    fitted: bool = False


class SenderCheck(StrEnum):
    """What is known of whether the sender's address is really theirs.

    Without sender authentication (a listener's `sender_auth = "off"`, IMAP) a
    sender is UNKNOWN, and placement trusts the address only to take part in
    requests its owner takes part in (gateway/pipeline/placement.py `refusal`);
    VERIFIED does no more. FAILED never takes part in any.
    """

    UNKNOWN = "unknown"  # not checked
    VERIFIED = "verified"  # e.g. DMARC pass, aligned with From
    FAILED = "failed"  # e.g. DMARC fail: From is forged
    NOT_FROM = "not in From"  # From had no address; Sender, Reply-To or Return-Path's is used


@dataclass(frozen=True, slots=True)
class ThreadHints:
    message_id: str | None
    # In-Reply-To first, then References from the most recent back.
    parent_ids: tuple[str, ...] = ()
    # The Message-ID of our mail that a delivery report says bounced.
    bounce_of: str | None = None
    # References found in the subject tag, e.g. "[#7PY9-9T9S]".
    tags: tuple[str, ...] = ()
    sender: str | None = None
    # Auto-replies, bounces, our own mail: never reopen or notify.
    automatic: bool = False
    # The addresses in To and Cc, lower-cased: they take part in the request this
    # message starts, or join the one it lands on when its sender may write there.
    copied: tuple[str, ...] = ()
    # The sender is one of our own addresses (the intake's addresses and domains).
    sender_ours: bool = False
    sender_check: SenderCheck = SenderCheck.UNKNOWN


@dataclass(frozen=True, slots=True)
class KnownMessage:
    """A stored message that a new one may refer to, with who takes part in
    the request it belongs to, as far as the batch asks (storage/participants.py)."""

    request_id: int
    direction: str
    from_address: str | None
    participants: frozenset[str] = frozenset()
    reference: str | None = None  # of its request (None: not known yet)


@dataclass(frozen=True, slots=True)
class TaggedRequest:
    """A request named by a subject tag, with who takes part in it."""

    request_id: int
    reference: str
    participants: frozenset[str]


class Placed(StrEnum):
    """Where an inbox item landed."""

    NEW = "new"  # a new request
    THREAD = "thread"  # a message on an existing request
    DUPLICATE = "duplicate"  # the same message again: stored once
    STORED_BEFORE = "stored before"  # the item itself was stored already (a retry, a race)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where an inbound email goes, and why (recorded on the timeline)."""

    kind: Placed  # NEW, THREAD or DUPLICATE
    reason: str
    request_id: int | None = None
    # The references of requests the message named (by In-Reply-To, References
    # or subject tag) but was not let into: its sender takes no part in them.
    refused: tuple[str, ...] = ()
    # A new request that follows up a finished one (a reply after its reopen
    # window): the old request's id and reference.
    linked_from: int | None = None
    linked_reference: str | None = None
