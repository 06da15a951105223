"""SQLAlchemy 2 models: the tables, shared by PostgreSQL and SQLite.

The hot paths use Core statements over these tables (`Model.__table__`); the
declarative classes are the single definition the migrations are checked
against.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    func,
    literal,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import JSON

from domain.lifecycle import DONE, WORKABLE

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets BIGINT.
Id = BigInteger().with_variant(Integer(), "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")
Timestamp = DateTime(timezone=True)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: Json, list[Any]: Json}


class InboxItem(Base):
    """Exactly what arrived (raw bytes and envelope or HTTP metadata), committed first."""

    __tablename__ = "inbox_items"
    __table_args__ = (Index(None, "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(8))  # smtp, lmtp, api
    received_at: Mapped[datetime] = mapped_column(Timestamp)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    meta: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(Timestamp)
    lease_until: Mapped[datetime | None] = mapped_column(Timestamp)
    # The claim that holds the item (a fresh token per claim): its state is
    # changed only under it, so a worker whose lease ran out cannot.
    claim_token: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(Text)
    # "<token id>:<client key>" so two clients' keys never collide.
    idempotency_key: Mapped[str | None] = mapped_column(String(300), unique=True)
    body_sha256: Mapped[str | None] = mapped_column(String(64))


class Request(Base):
    __tablename__ = "requests"
    __table_args__ = (Index(None, "queue", "status", "priority"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    reference: Mapped[str] = mapped_column(String(16), unique=True)
    # One inbox item makes at most one request, however often it is processed.
    inbox_item_id: Mapped[int | None] = mapped_column(
        ForeignKey("inbox_items.id"), unique=True
    )
    status: Mapped[str] = mapped_column(String(24), default="new")
    queue: Mapped[str] = mapped_column(String(64))  # indexed by ix_requests_queue_status_priority
    channel: Mapped[str] = mapped_column(String(8))
    priority: Mapped[str | None] = mapped_column(String(8))
    type: Mapped[str | None] = mapped_column(String(32))
    category: Mapped[str | None] = mapped_column(String(64))
    component: Mapped[str | None] = mapped_column(String(64))
    requester_email: Mapped[str | None] = mapped_column(String(320), index=True)
    requester_name: Mapped[str | None] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(Text, default="")
    custom_fields: Mapped[dict[str, Any]]
    tags: Mapped[list[Any]]
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Who works on it now, until when (a lease: past it, the work is free again).
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claim_until: Mapped[datetime | None] = mapped_column(Timestamp)
    # The next service-level deadline; queues are worked in priority, then due order.
    due_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # The customer's unguessable key to its status page.
    status_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("requests.id"))
    # The finished request this one follows up: a customer's reply after the old
    # one's reopen window (domain.lifecycle.reply_starts_new), or a merge then.
    linked_from_id: Mapped[int | None] = mapped_column(ForeignKey("requests.id"), index=True)
    # Service levels: the policy, its deadlines, when they were met, and the
    # pauses (waiting on the customer) that push them out.
    sla_policy: Mapped[str | None] = mapped_column(String(100))
    first_response_due_at: Mapped[datetime | None] = mapped_column(Timestamp)
    resolution_due_at: Mapped[datetime | None] = mapped_column(Timestamp)
    first_response_at: Mapped[datetime | None] = mapped_column(Timestamp)
    resolved_at: Mapped[datetime | None] = mapped_column(Timestamp)
    sla_paused_at: Mapped[datetime | None] = mapped_column(Timestamp)
    sla_pauses: Mapped[list[Any] | None] = mapped_column(Json)
    # When the scheduler should look at this request next (warning, breach, ...).
    next_check_at: Mapped[datetime | None] = mapped_column(Timestamp, index=True)
    reopened_count: Mapped[int] = mapped_column(Integer, default=0)
    # Business-hours durations (seconds) under the request's calendar, pauses cut
    # out, measured after the moment (gateway/reports.py) for reports to
    # aggregate in SQL; the resolution's for the `resolved_at` it was measured at.
    first_response_business_seconds: Mapped[float | None] = mapped_column(Float)
    resolution_business_seconds: Mapped[float | None] = mapped_column(Float)
    resolution_measured_for: Mapped[datetime | None] = mapped_column(Timestamp)
    # Who answered first (`agent:<id>` or `token:<id>`), recorded with its time.
    first_responder: Mapped[str | None] = mapped_column(String(100))
    # Retention (storage/retention.py, migration 0016): when the request's people
    # and texts were removed, and when its raw mail and attachment contents were.
    anonymised_at: Mapped[datetime | None] = mapped_column(Timestamp)
    raw_dropped_at: Mapped[datetime | None] = mapped_column(Timestamp)


class SlaMark(Base):
    """A service-level step taken for a request (warned, breached, escalated by a
    rule): the unique pair makes each step happen once across processes."""

    __tablename__ = "sla_marks"

    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), primary_key=True)
    mark: Mapped[str] = mapped_column(String(100), primary_key=True)
    at: Mapped[datetime] = mapped_column(Timestamp)


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), index=True)
    inbox_item_id: Mapped[int | None] = mapped_column(
        ForeignKey("inbox_items.id"), unique=True
    )
    direction: Mapped[str] = mapped_column(String(3))  # in, out
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[list[Any]]
    from_address: Mapped[str | None] = mapped_column(String(320))
    from_name: Mapped[str | None] = mapped_column(String(200))
    to: Mapped[list[Any]]
    cc: Mapped[list[Any]]
    subject: Mapped[str] = mapped_column(Text, default="")
    new_text: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    html: Mapped[str | None] = mapped_column(Text)
    flags: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class Blob(Base):
    """Attachment content, stored once per distinct sha256."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    # NULL: the content is in blob_chunks (uploads, streamed in pieces).
    content: Mapped[bytes | None] = mapped_column(LargeBinary)


class BlobChunk(Base):
    """A piece of a large blob, in order: written and read without holding it whole."""

    __tablename__ = "blob_chunks"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Attachment(Base):
    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"), index=True)
    filename: Mapped[str | None] = mapped_column(String(500))
    content_type: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(BigInteger)
    content_id: Mapped[str | None] = mapped_column(String(500))
    inline: Mapped[bool] = mapped_column(default=False)


class Event(Base):
    """The request's timeline: what happened, when, and who or what did it."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(Timestamp)
    data: Mapped[dict[str, Any]]


class ApiToken(Base):
    """Bearer tokens; only the sha256 of the secret is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))  # admin, agent, intake
    queues: Mapped[list[Any]]
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # The person the token belongs to (None: a bare token, acting as `token:<id>`);
    # such a token's scope is the agent's queues, read at each look-up.
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"), index=True)
    # May move a request to any queue, also one out of its scope (hand-off).
    may_hand_off: Mapped[bool] = mapped_column(default=True)


class Agent(Base):
    """A person working requests: named on the timeline and in the replies they sign."""

    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    queues: Mapped[list[Any]]
    active: Mapped[bool] = mapped_column(default=True)
    # The agent's own notification settings; null: the queue's.
    quiet_hours: Mapped[str | None] = mapped_column(String(11))
    digest_minutes: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class CannedResponse(Base):
    """A reply template agents insert: per queue and language, rendered with the
    request's context (sandboxed Jinja2, strict undefined)."""

    __tablename__ = "canned_responses"
    __table_args__ = (Index(None, "queue", "language", "name", unique=True),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    queue: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class OutboxRow(Base):
    """An outbound effect (mail, webhook, broker message), written in the same
    transaction as the change that causes it, delivered by workers."""

    __tablename__ = "outbox"
    __table_args__ = (Index(None, "state", "next_attempt_at"),
                      # The acknowledgement limits count by these (storage/acknowledgements.py).
                      Index(None, "recipient", "created_at"),
                      Index(None, "recipient_domain", "created_at"),
                      Index(None, "created_at"))

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # email, webhook, broker
    request_id: Mapped[int | None] = mapped_column(ForeignKey("requests.id"), index=True)
    payload: Mapped[dict[str, Any]]
    # At most one row per key: one acknowledgement per request, whatever retries.
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    state: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(Timestamp)
    lease_until: Mapped[datetime | None] = mapped_column(Timestamp)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    delivered_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # An acknowledgement's recipient as its limits count it (domain.lifecycle.
    # counted_recipient): the mailbox it reaches and that mailbox's domain.
    recipient: Mapped[str | None] = mapped_column(String(320))
    recipient_domain: Mapped[str | None] = mapped_column(String(255))


class InstallKey(Base):
    """Secrets of this install, made once (storage/install_key.py). `references`
    keys the shuffle of inbox ids into references from `keyed_from` on."""

    __tablename__ = "install_keys"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret: Mapped[str] = mapped_column(String(128))  # hex
    keyed_from: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class AuditEvent(Base):
    """An agent's or admin's action (storage/audit.py): append-only. Triggers
    (migration 0014) refuse UPDATE, and DELETE outside the audit's own purge."""

    __tablename__ = "audit_events"
    __table_args__ = (Index(None, "at", "id"), Index(None, "actor", "at"),
                      Index(None, "action", "at"), Index(None, "target", "at"))

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(Timestamp)
    actor: Mapped[str] = mapped_column(String(100))  # token:<id>, agent:<id>, cli, system
    action: Mapped[str] = mapped_column(String(40))  # one of storage.audit.ACTIONS
    target: Mapped[str | None] = mapped_column(String(300))
    client: Mapped[str | None] = mapped_column(String(100))  # the HTTP client's address
    data: Mapped[dict[str, Any]]


class AuditPurge(Base):
    """SQLite's escape from the DELETE trigger: a row here only inside the
    audit's own purge transaction (PostgreSQL uses a session setting instead)."""

    __tablename__ = "audit_purge"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)


class Erasure(Base):
    """A person's erasure (storage/erasures.py): a durable task worked in steps,
    then its proof. The address and names it looks for (`terms`) are held only
    while it runs; once done, the row keeps their keyed hash, who asked, when,
    the counts and the references affected, and nothing else."""

    __tablename__ = "erasures"
    __table_args__ = (Index(None, "state", "lease_until"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    # HMAC-SHA256 of the lower-cased address under a key derived from the install's.
    address_hash: Mapped[str] = mapped_column(String(64), index=True)
    terms: Mapped[dict[str, Any] | None] = mapped_column(Json)
    state: Mapped[str] = mapped_column(String(12), default="pending")  # pending, running, done
    # The step it is at (storage/erasing.py PHASES) and how far through it (an id).
    phase: Mapped[str] = mapped_column(String(24))
    cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    # The last inbox item when it was asked for: what arrives later is a new contact.
    inbox_upto: Mapped[int] = mapped_column(BigInteger)
    requested_by: Mapped[str] = mapped_column(String(100))
    requested_at: Mapped[datetime] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
    lease_until: Mapped[datetime | None] = mapped_column(Timestamp)
    claim_token: Mapped[str | None] = mapped_column(String(32))
    counts: Mapped[dict[str, Any]]
    references: Mapped[list[Any]]



class Mailbox(Base):
    """An IMAP mailbox the gateway fetches from (gateway/mailbox/): which process
    holds it (a lease), how it goes, and the OAuth refresh token it was last given."""

    __tablename__ = "mailboxes"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(Timestamp)
    connected: Mapped[bool] = mapped_column(Boolean, default=False)
    last_fetch_at: Mapped[datetime | None] = mapped_column(Timestamp)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Since when it has failed without a success between (None: it works).
    failing_since: Mapped[datetime | None] = mapped_column(Timestamp)
    # Messages seen on the server and not yet stored, at the last look.
    behind: Mapped[int] = mapped_column(BigInteger, default=0)
    fetched: Mapped[int] = mapped_column(BigInteger, default=0)
    # A refresh token the provider rotated, and the sha256 of the configured one
    # it descends from (a new configured token wins over it).
    refresh_token: Mapped[str | None] = mapped_column(Text)
    refresh_seed: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime | None] = mapped_column(Timestamp)


class MailboxFolder(Base):
    """Where fetching a folder stands: every UID below `next_uid` under this
    UIDVALIDITY is stored or recorded."""

    __tablename__ = "mailbox_folders"

    mailbox: Mapped[str] = mapped_column(String(64), primary_key=True)
    folder: Mapped[str] = mapped_column(String(255), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    next_uid: Mapped[int] = mapped_column(BigInteger)


class MailboxMessage(Base):
    """One message seen in a mailbox folder, committed with its inbox item:
    `owed` (the after-fetch action is still to do on the server), `done` or
    `too_large` (recorded, left on the server). No `item_id`: the same message
    was stored before (seen again under a new UIDVALIDITY, or copied back)."""

    __tablename__ = "mailbox_messages"
    __table_args__ = (
        UniqueConstraint("mailbox", "folder", "uidvalidity", "uid"),
        Index(None, "mailbox", "state"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    mailbox: Mapped[str] = mapped_column(String(64))
    folder: Mapped[str] = mapped_column(String(255))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    item_id: Mapped[int | None] = mapped_column(BigInteger)
    message_id: Mapped[str | None] = mapped_column(String(998))
    raw_sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(12))
    stored_at: Mapped[datetime] = mapped_column(Timestamp)


class StatusLink(Base):
    """A key to a request's status page other than its status token, by its
    sha256 only: a one-time access link mailed on a lookup (`access`: good
    until `expires_at`, once), or a status token replaced by a rotation
    (`replaced`: kept to tell the holder it was replaced). Goes with the
    request (ON DELETE CASCADE)."""

    __tablename__ = "status_links"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(
        ForeignKey("requests.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    expires_at: Mapped[datetime | None] = mapped_column(Timestamp)
    used_at: Mapped[datetime | None] = mapped_column(Timestamp)


inbox_items = InboxItem.__table__
outbox = OutboxRow.__table__
sla_marks = SlaMark.__table__
requests = Request.__table__
messages = Message.__table__
blobs = Blob.__table__
blob_chunks = BlobChunk.__table__
attachments = Attachment.__table__
events = Event.__table__
api_tokens = ApiToken.__table__
agents = Agent.__table__
canned_responses = CannedResponse.__table__
install_keys = InstallKey.__table__
audit_events = AuditEvent.__table__
audit_purge = AuditPurge.__table__
erasures = Erasure.__table__
mailboxes = Mailbox.__table__
mailbox_folders = MailboxFolder.__table__
mailbox_messages = MailboxMessage.__table__
status_links = StatusLink.__table__

# Mailboxes (migration 0017): one stored message per digest of its bytes and
# mailbox; records of the same bytes seen again (no item) are not counted.
STORED = mailbox_messages.c.item_id.is_not(None)
Index("ux_mailbox_messages_stored", mailbox_messages.c.mailbox, mailbox_messages.c.raw_sha256,
      unique=True, postgresql_where=STORED, sqlite_where=STORED)

# Reports (migration 0012): the requests whose business-hours times are yet to
# be measured, and the timeline events a report counts.
UNMEASURED = text(
    "(first_response_at IS NOT NULL AND first_response_business_seconds IS NULL)"
    " OR (resolved_at IS NOT NULL AND (resolution_measured_for IS NULL"
    " OR resolution_measured_for <> resolved_at))")
Index("ix_requests_unmeasured", requests.c.id,
      postgresql_where=UNMEASURED, sqlite_where=UNMEASURED)
COUNTED_EVENTS = ("reopened", "sla_breached", "escalated")
Index("ix_events_counted", events.c.kind, events.c.at,
      postgresql_where=text("kind IN ('reopened', 'sla_breached', 'escalated')"),
      sqlite_where=text("kind IN ('reopened', 'sla_breached', 'escalated')"))

# Retention (migration 0016): finished requests by when they finished, which
# a pass walks oldest first and stops at its batch.
FINISHED_AT = func.coalesce(requests.c.resolved_at, requests.c.updated_at)
IS_FINISHED = requests.c.status.in_(
    bindparam("finished", [str(s) for s in DONE], expanding=True, literal_execute=True))
Index("ix_requests_finished", FINISHED_AT, requests.c.id,
      postgresql_where=IS_FINISHED, sqlite_where=IS_FINISHED)
# Deleting a request checks that no request is merged into it: without this
# index, a scan of every request per request deleted.
MERGED = requests.c.merged_into_id.is_not(None)
Index("ix_requests_merged_into_id", requests.c.merged_into_id,
      postgresql_where=MERGED, sqlite_where=MERGED)

# The order a queue is worked in (priority, then due time, then age), as the
# claim and the queue listing sort it, and which requests are workable. The
# constants are written into the SQL, never bound: a planner serves an
# expression from an index only if it is the indexed one, and uses a partial
# index only if the statement's own literals imply the index's WHERE.
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)  # the due time of a request without one


class _FarFuture(ColumnElement[datetime]):
    """FAR_FUTURE as a literal: as SQLite stores timestamps, and on PostgreSQL
    with its offset (no session time zone moves it) spelt as PostgreSQL
    shows it back, so that autogenerate finds the index unchanged."""

    type = Timestamp
    inherit_cache = True


@compiles(_FarFuture)
def _far_future(element: _FarFuture, compiler: Any, **kw: Any) -> str:
    return "'9999-01-01 00:00:00.000000'"


@compiles(_FarFuture, "postgresql")
def _far_future_pg(element: _FarFuture, compiler: Any, **kw: Any) -> str:
    return "'9999-01-01 00:00:00+00'"


WORK_ORDER = (
    func.coalesce(requests.c.priority, literal("P9", literal_execute=True)),
    func.coalesce(requests.c.due_at, _FarFuture()),
    requests.c.id,
)
IS_WORKABLE = requests.c.status.in_(
    bindparam("workable", [str(s) for s in WORKABLE], expanding=True, literal_execute=True))
# Claims and listings walk a queue's workable requests in order and stop at
# their LIMIT, however much closed history the table holds (migration 0011).
Index("ix_requests_queue_work_order", requests.c.queue, *WORK_ORDER,
      postgresql_where=IS_WORKABLE, sqlite_where=IS_WORKABLE)
