"""Keys to a request's status page besides its status token: one-time access
links mailed on a lookup, and the status tokens a rotation replaced.

Only a key's sha256 is stored: the key itself travels once, in the mail the
outbox sends (keys are 256 random bits, so a plain hash is enough; there is
nothing to guess). A lookup does the same queries whether or not it matches
(`holder`, then `issue_access`), so the database's part of its answer time
does not depend on whether a reference or an address exists.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.lifecycle import Actor, EventKind, Outcome
from storage.audit import Audit
from storage.engine import as_utc, connection, transaction, utcnow
from storage.models import events, requests, status_links
from storage.outbox import enqueue

ACCESS = "access"
REPLACED = "replaced"
# Timeline entries (the key never is in them).
SENT = EventKind.STATUS_LINK_SENT
ROTATED = EventKind.STATUS_LINK_ROTATED
# Access links counted against a request's hourly cap over this window.
WINDOW = timedelta(hours=1)
# Never a request id: the no-match lookup runs the same queries with it.
NOBODY = 0
# The entries a request's language is read from (the first of each counts).
LANGUAGE_EVENTS = (EventKind.CLASSIFIED, EventKind.RECEIVED)
MAX_LANGUAGE_EVENTS = 8


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class Holder:
    """What a link's mail needs of its request (and a lookup compares)."""

    id: int
    reference: str
    requester_email: str | None
    requester_name: str | None
    queue: str
    subject: str
    status_token: str | None
    version: int
    # Its first `classified` and `received` entries (kind, data): where its
    # language is read from (gateway.i18n.from_timeline).
    timeline: tuple[dict[str, Any], ...] = ()


async def holder(engine: AsyncEngine, reference: str) -> Holder | None:
    """The request with this (canonical) reference. Two queries whether or not
    it exists: the lookup's timing must not tell."""
    async with connection(engine) as conn:
        row = (await conn.execute(
            select(requests.c.id, requests.c.reference, requests.c.requester_email,
                   requests.c.requester_name, requests.c.queue, requests.c.subject,
                   requests.c.status_token, requests.c.version)
            .where(requests.c.reference == reference))).first()
        found = (await conn.execute(
            select(events.c.kind, events.c.data)
            .where(events.c.request_id == (row.id if row is not None else NOBODY),
                   events.c.kind.in_(LANGUAGE_EVENTS))
            .order_by(events.c.id).limit(MAX_LANGUAGE_EVENTS))).all()
    if row is None:
        return None
    return Holder(id=row.id, reference=row.reference, requester_email=row.requester_email,
                  requester_name=row.requester_name, queue=row.queue, subject=row.subject or "",
                  status_token=row.status_token, version=row.version,
                  timeline=tuple({"kind": e.kind, "data": e.data} for e in found))


async def issue_access(engine: AsyncEngine, *, request_id: int | None, key: str,
                       expires_at: datetime, mail: dict[str, Any] | None, per_hour: int,
                       now: datetime | None = None) -> bool:
    """Store an access link and queue its `mail` (an outbox payload) in one
    transaction, unless the request had `per_hour` links in the last hour or
    there is nothing to send (`mail` None: no match). The count is read either
    way. True when the link was stored."""
    now = now or utcnow()
    async with transaction(engine) as conn:
        recent = (await conn.execute(
            select(func.count()).select_from(status_links)
            .where(status_links.c.request_id == (request_id or NOBODY),
                   status_links.c.kind == ACCESS,
                   status_links.c.created_at > now - WINDOW))).scalar_one()
        if mail is None or request_id is None or recent >= per_hour:
            return False
        await conn.execute(insert(status_links), {
            "request_id": request_id, "kind": ACCESS, "key_hash": key_hash(key),
            "created_at": now, "expires_at": expires_at, "used_at": None})
        await conn.execute(insert(events), {
            "request_id": request_id, "kind": SENT, "actor": Actor.REQUESTER, "at": now,
            "data": {"message_id": mail["message"].get("message_id"),
                     "expires_at": expires_at.isoformat()}})
        await enqueue(conn, "email", mail, request_id=request_id)
    return True


class Access(StrEnum):
    """What an access link is now."""

    OPEN = "open"  # good: not used, not expired
    USED = "used"
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # never issued (or its request is gone)


@dataclass(frozen=True, slots=True)
class Opened:
    state: Access
    status_token: str | None = None  # with OPEN: where the link leads


async def _state(conn: AsyncConnection, hashed: str, now: datetime) -> Access:
    row = (await conn.execute(
        select(status_links.c.used_at, status_links.c.expires_at)
        .where(status_links.c.key_hash == hashed, status_links.c.kind == ACCESS))).first()
    if row is None:
        return Access.UNKNOWN
    if row.used_at is not None:
        return Access.USED
    expires = as_utc(row.expires_at)
    return Access.EXPIRED if expires is None or expires <= now else Access.OPEN


async def peek_access(engine: AsyncEngine, key: str, now: datetime | None = None) -> Access:
    """What the link is, changing nothing (the page before it is used)."""
    async with connection(engine) as conn:
        return await _state(conn, key_hash(key), now or utcnow())


async def use_access(engine: AsyncEngine, key: str, now: datetime | None = None) -> Opened:
    """Spend the link: once, before it expires; its request's status token."""
    now = now or utcnow()
    hashed = key_hash(key)
    async with transaction(engine) as conn:
        spent = (await conn.execute(
            update(status_links)
            .where(status_links.c.key_hash == hashed, status_links.c.kind == ACCESS,
                   status_links.c.used_at.is_(None), status_links.c.expires_at > now)
            .values(used_at=now).returning(status_links.c.request_id))).first()
        if spent is None:
            return Opened(await _state(conn, hashed, now))
        token = (await conn.execute(select(requests.c.status_token)
                                    .where(requests.c.id == spent.request_id))).scalar()
    # A request anonymised since: its status page is gone with its token.
    return Opened(Access.OPEN, token) if token else Opened(Access.UNKNOWN)


async def was_replaced(engine: AsyncEngine, token: str) -> bool:
    """Whether `token` was a status token that a rotation replaced."""
    async with connection(engine) as conn:
        found = (await conn.execute(
            select(status_links.c.id)
            .where(status_links.c.key_hash == key_hash(token),
                   status_links.c.kind == REPLACED))).first()
    return found is not None


@dataclass(frozen=True, slots=True)
class Rotation:
    outcome: Outcome  # OK, MISSING, or STALE (changed since `expected_version`)
    version: int | None = None
    mailed: bool = False


async def rotate(engine: AsyncEngine, reference: str, new_token: str, *, actor: str,
                 mail: dict[str, Any] | None, expected_version: int | None = None,
                 audit: Audit | None = None) -> Rotation:
    """Replace the request's status token by `new_token`, keep the old one's
    hash (its link then says it was replaced), queue `mail` (the new link, to
    the requester) and record it on the timeline and in the audit, in one
    transaction. A request without a token (anonymised) is MISSING: it has no
    status page to give a new link to."""
    now = utcnow()
    async with transaction(engine) as conn:
        row = (await conn.execute(
            select(requests.c.id, requests.c.version, requests.c.status_token)
            .where(requests.c.reference == reference))).first()
        if row is None or not row.status_token:
            return Rotation(Outcome.MISSING)
        if expected_version is not None and expected_version != row.version:
            return Rotation(Outcome.STALE, row.version)
        # Compare-and-set: another change in between wins, this one is retried.
        done = (await conn.execute(
            update(requests).where(requests.c.id == row.id, requests.c.version == row.version)
            .values(status_token=new_token, version=row.version + 1)
            .returning(requests.c.version))).first()
        if done is None:
            return Rotation(Outcome.STALE)
        await conn.execute(insert(status_links), {
            "request_id": row.id, "kind": REPLACED, "key_hash": key_hash(row.status_token),
            "created_at": now, "expires_at": None, "used_at": None})
        message_id = mail["message"].get("message_id") if mail is not None else None
        await conn.execute(insert(events), {
            "request_id": row.id, "kind": ROTATED, "actor": actor, "at": now,
            "data": {"mailed": mail is not None, "message_id": message_id}})
        if mail is not None:
            await enqueue(conn, "email", mail, request_id=row.id)
        if audit is not None:
            await audit.action(conn, "request.status_link_rotate", reference,
                               {"mailed": mail is not None})
    return Rotation(Outcome.OK, done.version, mailed=mail is not None)
