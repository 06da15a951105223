"""What a customer may see of their request, found by its status token.

One rule for the status page (HTML) and its JSON (storage/actions.py
`status_page`): the requester's own messages ("you"), those of people who take
part in the request (storage/participants.py: someone the requester copied),
and our replies to them. Never shown: internal notes (not messages at all),
automatic mail (out-of-office replies, bounces, our own mail come back, our
acknowledgements and any other mail we sent on our own), erased messages, and
anything from someone who takes no part (a stranger's mail stored before
threading checked senders, the requester of a request merged into this one).

A copied person is given by name to the page; their address is kept for the
JSON only, which showed it before the page existed. Files are listed for every
shown message and downloadable (`downloadable`) only from the customer's own
messages and our replies.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.lifecycle import EventKind, Status, written_by_person
from storage.engine import as_utc, connection
from storage.install_key import REFERENCES, references
from storage.models import attachments, events, install_keys, messages, requests
from storage.participants import established, in_chunks
from storage.retention import DROPPED_SHA256

# The kinds of our outbound mail a customer sees: an agent's reply ("reply"),
# or one stored before mail had a kind. Acknowledgements and other automatic
# mail carry another kind, or `auto_submitted`.
PUBLIC_OUTBOUND_KINDS = (None, "reply")
# What the install's key is turned into for the status page's tokens (its own key:
# knowing one says nothing of the other).
PAGE_KEY_LABEL = b"intake: status page tokens"
STATUS_TOKEN_CHARS = 64  # requests.status_token: no longer one is stored


class Author(StrEnum):
    YOU = "you"  # the requester
    COPIED = "copied"  # someone who takes part: copied by the requester or by us
    US = "us"  # our reply


@dataclass(frozen=True, slots=True)
class PublicFile:
    id: int
    filename: str | None
    content_type: str
    size: int
    downloadable: bool  # the customer's own file, or one of our reply's
    removed: bool = False  # its content was dropped by a retention policy


@dataclass(frozen=True, slots=True)
class PublicMessage:
    author: Author
    # A copied person's display name (may be None), or the name our reply came from.
    name: str | None
    # A copied person's address: for the JSON only, never on the page.
    address: str | None
    subject: str
    text: str
    at: datetime
    files: tuple[PublicFile, ...] = ()
    message_row: int = 0  # the message's row id, to attach its files


@dataclass(frozen=True, slots=True)
class StatusView:
    """A request as its customer sees it, with what the page needs to say what
    happens next (its status, queue, service-level columns, reopen window)."""

    request_id: int
    reference: str
    status: Status
    subject: str
    queue: str
    version: int
    created_at: datetime
    updated_at: datetime
    requester_email: str | None
    requester_name: str | None
    # When it was resolved or closed (else its last change): its reopen window.
    done_at: datetime | None
    # The service-level columns as gateway/pipeline/service_levels.describe reads them.
    sla: dict[str, Any]
    # The classifier's guess at the language of its first message, as stored
    # (value, score, source); None when it made none.
    language_guess: dict[str, Any] | None
    messages: tuple[PublicMessage, ...]
    # The last Message-ID stored on it: what a reply from the page answers.
    last_message_id: str | None

    def public_file(self, attachment_id: int) -> PublicFile | None:
        """A file the customer may download from this page, or None."""
        for message in self.messages:
            for found in message.files:
                if found.id == attachment_id and found.downloadable:
                    return found
        return None


def _shown_outbound(flags: Mapping[str, Any]) -> bool:
    return not flags.get("auto_submitted") and flags.get("kind") in PUBLIC_OUTBOUND_KINDS


def public_messages(requester: str | None, rows: Sequence[Any]) -> list[PublicMessage]:
    """The messages the customer sees, in order (pure: `rows` are the request's
    message rows in the order they were stored, with direction, from_address,
    from_name, to, cc, subject, new_text, text, created_at, flags, id)."""
    people = established(requester, [(m.direction, m.from_address, m.to, m.cc) for m in rows])
    own = (requester or "").strip().lower()
    shown: list[PublicMessage] = []
    for index, m in enumerate(rows):
        flags = m.flags if isinstance(m.flags, dict) else {}
        if flags.get("erased") or not written_by_person(m.direction, flags):
            continue
        sender = (m.from_address or "").strip().lower()
        name, address = None, None
        if m.direction != "in":
            if not _shown_outbound(flags):
                continue
            author, name = Author.US, m.from_name
        elif index == 0 or (own and sender == own):
            author = Author.YOU
        elif sender and sender in people:
            author, name, address = Author.COPIED, m.from_name, sender
        else:
            continue
        shown.append(PublicMessage(author=author, name=name, address=address,
                                   subject=m.subject or "", text=m.new_text or m.text or "",
                                   at=as_utc(m.created_at) or m.created_at,
                                   message_row=m.id))
    return shown


async def _files(conn: AsyncConnection, shown: list[PublicMessage]) -> list[PublicMessage]:
    by_message: dict[int, list[PublicFile]] = {}
    ids = [m.message_row for m in shown]
    for chunk in in_chunks(ids):
        rows = await conn.execute(
            select(attachments.c.id, attachments.c.message_id, attachments.c.filename,
                   attachments.c.content_type, attachments.c.size, attachments.c.sha256)
            .where(attachments.c.message_id.in_(chunk)).order_by(attachments.c.id))
        for row in rows:
            by_message.setdefault(row.message_id, []).append(PublicFile(
                id=row.id, filename=row.filename, content_type=row.content_type,
                size=row.size, downloadable=False, removed=row.sha256 == DROPPED_SHA256))
    found = []
    for m in shown:
        files = tuple(PublicFile(f.id, f.filename, f.content_type, f.size,
                                 downloadable=m.author in (Author.YOU, Author.US)
                                 and not f.removed, removed=f.removed)
                      for f in by_message.get(m.message_row, ()))
        found.append(PublicMessage(m.author, m.name, m.address, m.subject, m.text, m.at,
                                   files, m.message_row))
    return found


async def _language_guess(conn: AsyncConnection, request_id: int) -> dict[str, Any] | None:
    """The classifier's language guess when the request was routed."""
    data = (await conn.execute(
        select(events.c.data).where(events.c.request_id == request_id,
                                    events.c.kind == EventKind.CLASSIFIED)
        .order_by(events.c.id).limit(1))).scalar()
    classification = data.get("classification") if isinstance(data, dict) else None
    guess = classification.get("language") if isinstance(classification, dict) else None
    return guess if isinstance(guess, dict) else None


async def read_view(engine: AsyncEngine, token: str) -> StatusView | None:
    """The request whose status token is `token`, as its customer sees it."""
    if not token or len(token) > STATUS_TOKEN_CHARS:
        return None
    async with connection(engine) as conn:
        row = (await conn.execute(
            select(requests.c.id, requests.c.reference, requests.c.status,
                   requests.c.subject, requests.c.queue, requests.c.version,
                   requests.c.created_at, requests.c.updated_at, requests.c.requester_email,
                   requests.c.requester_name, requests.c.sla_policy,
                   requests.c.first_response_at, requests.c.resolved_at,
                   requests.c.sla_pauses, requests.c.sla_paused_at,
                   func.coalesce(requests.c.resolved_at,
                                 requests.c.updated_at).label("done_at"))
            .where(requests.c.status_token == token))).first()
        if row is None:
            return None
        stored = (await conn.execute(
            select(messages.c.id, messages.c.direction, messages.c.message_id,
                   messages.c.from_address, messages.c.from_name, messages.c.to,
                   messages.c.cc, messages.c.subject, messages.c.new_text, messages.c.text,
                   messages.c.created_at, messages.c.flags)
            .where(messages.c.request_id == row.id).order_by(messages.c.id))).all()
        shown = await _files(conn, public_messages(row.requester_email, stored))
        guess = await _language_guess(conn, row.id)
    created = as_utc(row.created_at)
    assert created is not None
    return StatusView(
        request_id=row.id, reference=row.reference, status=Status(row.status),
        subject=row.subject or "", queue=row.queue, version=row.version,
        created_at=created, updated_at=as_utc(row.updated_at) or created,
        requester_email=row.requester_email, requester_name=row.requester_name,
        done_at=as_utc(row.done_at),
        sla={"sla_policy": row.sla_policy, "created_at": created,
             "first_response_at": as_utc(row.first_response_at),
             "resolved_at": as_utc(row.resolved_at), "sla_pauses": row.sla_pauses,
             "sla_paused_at": as_utc(row.sla_paused_at)},
        language_guess=guess, messages=tuple(shown),
        last_message_id=next((m.message_id for m in reversed(stored) if m.message_id), None))


def as_json(view: StatusView) -> dict[str, Any]:
    """The JSON the status link answers an API client (as before the page)."""
    def who(m: PublicMessage) -> str:
        if m.author == Author.YOU:
            return "you"
        if m.author == Author.US:
            return m.name or "support"
        # Someone the customer copied: by name, never their address (the link
        # may be forwarded; their address is theirs to give).
        return m.name or "someone you copied"

    return {"reference": view.reference, "status": view.status, "subject": view.subject,
            "created_at": view.created_at, "updated_at": view.updated_at,
            "messages": [{"from": who(m), "subject": m.subject, "text": m.text, "at": m.at}
                         for m in view.messages]}


async def page_key(engine: AsyncEngine) -> bytes:
    """The key of the status page's tokens: derived from the install's key
    (storage/install_key.py), so every process on the database, and the same
    process after a restart, takes the pages the others gave out."""
    await references(engine)  # made now if the database has none yet
    async with connection(engine) as conn:
        secret = (await conn.execute(select(install_keys.c.secret).where(
            install_keys.c.name == REFERENCES))).scalar_one()
    return hmac.new(bytes.fromhex(secret), PAGE_KEY_LABEL, hashlib.sha256).digest()
