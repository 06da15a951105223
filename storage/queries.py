"""Reading requests back: by reference, by the Message-ID of an email; and the
readiness checks (does the inbox take a write now, does work wait)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.lifecycle import ItemState, Status
from storage.engine import as_utc, connection, utcnow, write_gate
from storage.errors import StorageUnavailable
from storage.install_key import references
from storage.models import attachments, events, inbox_items, messages, requests


def _request_dict(row: Any) -> dict[str, Any]:
    return {
        "reference": row.reference, "status": row.status, "queue": row.queue,
        "channel": row.channel, "priority": row.priority, "type": row.type,
        "category": row.category, "component": row.component,
        "requester": {"email": row.requester_email, "name": row.requester_name},
        "subject": row.subject, "custom_fields": row.custom_fields, "tags": row.tags,
        "escalation_level": row.escalation_level, "created_at": as_utc(row.created_at),
        "updated_at": as_utc(row.updated_at), "version": row.version,
        "claimed_by": row.claimed_by, "claim_until": as_utc(row.claim_until),
        "due_at": as_utc(row.due_at), "status_token": row.status_token,
        "sla_policy": row.sla_policy,
        "first_response_due_at": as_utc(row.first_response_due_at),
        "resolution_due_at": as_utc(row.resolution_due_at),
        "first_response_at": as_utc(row.first_response_at),
        "resolved_at": as_utc(row.resolved_at), "sla_paused_at": as_utc(row.sla_paused_at),
        "sla_pauses": row.sla_pauses, "reopened_count": row.reopened_count,
    }


async def get_request(engine: AsyncEngine, reference: str, *,
                      whole: bool = True) -> dict[str, Any] | None:
    """The request with its messages and timeline; None if unknown.

    With `whole=False` only the request's own fields (one query): what checks
    of scope and state before an action need. A reference whose inbox item is
    committed but not yet processed is reported as `received` (it exists: we
    acknowledged it). One whose email joined another request as a reply (the
    reference its sender was given in the SMTP answer) is that request, with
    `input_reference` naming the reference asked for: the lookup follows it, so
    it never reads "received" forever.
    """
    refs = await references(engine)
    item_id = refs.id_for(reference)
    if item_id is None:
        return None
    canonical = refs.reference_for(item_id)
    async with connection(engine) as conn:
        row = (await conn.execute(
            select(requests).where(requests.c.reference == canonical))).first()
        joined = None
        if row is None:
            row = (await conn.execute(
                select(requests).join(messages, messages.c.request_id == requests.c.id)
                .where(messages.c.inbox_item_id == item_id))).first()
            joined = canonical if row is not None else None
        if row is None:
            item = (await conn.execute(
                select(inbox_items.c.state, inbox_items.c.received_at, inbox_items.c.channel,
                       inbox_items.c.last_error)
                .where(inbox_items.c.id == item_id))).first()
            if item is None:
                return None
            return {"reference": canonical, "status": Status.RECEIVED,
                    "processing": item.state, "channel": item.channel,
                    "received_at": as_utc(item.received_at),
                    "last_error": item.last_error if item.state == ItemState.DEAD else None}
        result = _request_dict(row) | ({"input_reference": joined} if joined else {})
        if not whole:
            return result
        # Links both ways: the finished request this one follows up, and the
        # requests that follow this one up (a reply after its reopen window).
        linked = (await conn.execute(select(requests.c.reference).where(
            requests.c.id == row.linked_from_id))).scalar() if row.linked_from_id else None
        follow_ups = (await conn.execute(
            select(requests.c.reference).where(requests.c.linked_from_id == row.id)
            .order_by(requests.c.id))).scalars().all()
        result |= {"linked_from": linked, "follow_ups": list(follow_ups)}
        message_rows = (await conn.execute(
            select(messages).where(messages.c.request_id == row.id)
            .order_by(messages.c.id))).all()
        attachment_rows = (await conn.execute(
            select(attachments).join(messages, messages.c.id == attachments.c.message_id)
            .where(messages.c.request_id == row.id).order_by(attachments.c.id))).all()
        event_rows = (await conn.execute(
            select(events).where(events.c.request_id == row.id).order_by(events.c.id))).all()
    by_message: dict[int, list[dict[str, Any]]] = {}
    for a in attachment_rows:
        by_message.setdefault(a.message_id, []).append({
            "id": a.id, "filename": a.filename, "content_type": a.content_type, "size": a.size,
            "sha256": a.sha256, "content_id": a.content_id, "inline": a.inline})
    result["messages"] = [{
        "direction": m.direction, "message_id": m.message_id, "in_reply_to": m.in_reply_to,
        "references": m.references,
        "from": {"address": m.from_address, "name": m.from_name},
        "to": m.to, "cc": m.cc, "subject": m.subject, "new_text": m.new_text,
        "text": m.text, "flags": m.flags, "created_at": as_utc(m.created_at),
        "attachments": by_message.get(m.id, []),
        # What sender authentication and a front spam filter said (the pipeline
        # keeps them in the flags); null when the mail was not checked.
        "authentication": _flag(m.flags, "authentication"), "spam": _flag(m.flags, "spam"),
    } for m in message_rows]
    result["timeline"] = [{"kind": e.kind, "actor": e.actor, "at": as_utc(e.at), "data": e.data}
                          for e in event_rows]
    return result


def _flag(flags: Any, name: str) -> dict[str, Any] | None:
    value = flags.get(name) if isinstance(flags, dict) else None
    return value if isinstance(value, dict) else None


async def find_by_message_id(engine: AsyncEngine, message_id: str) -> list[dict[str, Any]]:
    """Which requests hold an email with this Message-ID (angle brackets optional)."""
    bare = message_id.strip().strip("<>")
    wanted = [f"<{bare}>", bare]
    async with connection(engine) as conn:
        rows = (await conn.execute(
            select(requests.c.reference, requests.c.status, requests.c.queue,
                   requests.c.subject, messages.c.message_id, messages.c.created_at)
            .join(messages, messages.c.request_id == requests.c.id)
            .where(messages.c.message_id.in_(wanted))
            .order_by(messages.c.id))).all()
    return [{"reference": r.reference, "status": r.status, "queue": r.queue,
             "subject": r.subject, "message_id": r.message_id,
             "received_at": as_utc(r.created_at)} for r in rows]


class NotWritable(Exception):
    """The database would not take a write into the inbox now; the text says why."""


# Readiness waits this long for a lock on the inbox (a write waits as long as
# the database timeout; "ready" means it would not wait at all).
READY_LOCK_MS = 500
# PostgreSQL's reasons a write cannot happen now (SQLSTATE), in words.
_REASONS = {"55P03": "the inbox table is locked by another session",
            "57014": "the check timed out",
            "25006": "the database is read-only",
            "53300": "too many connections",
            "57P03": "the database is starting up or shutting down"}


async def writable(engine: AsyncEngine, *, lock_ms: int = READY_LOCK_MS) -> None:
    """Raise NotWritable unless an insert into the inbox would go through now.

    PostgreSQL: in a transaction that is rolled back, take the lock an INSERT
    takes (ROW EXCLUSIVE; it waits behind LOCK TABLE, DDL, a long CREATE INDEX)
    with `lock_timeout`, and check that the transaction may write (a standby or
    a read-only default refuses). SQLite: take the write lock (`BEGIN
    IMMEDIATE`; readers in WAL mode get on beside a stuck writer) with a short
    `busy_timeout`, then give it back. Nothing is written either way.
    """
    async with connection(engine) as conn:
        try:
            if conn.dialect.name == "sqlite":
                # After this process's own writers (write_gate), as briefly as
                # on the lock: one of ours stuck that long is stuck on the lock.
                try:
                    async with write_gate(engine, lock_ms / 1000):
                        await _sqlite_writable(conn, lock_ms)
                except StorageUnavailable:
                    raise NotWritable("the database is locked: a write waits") from None
                return
            await conn.exec_driver_sql(f"SET LOCAL lock_timeout = {int(lock_ms)}")
            await conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(lock_ms) * 2}")
            await conn.exec_driver_sql("LOCK TABLE inbox_items IN ROW EXCLUSIVE MODE")
            read_only = (await conn.exec_driver_sql(
                "SELECT current_setting('transaction_read_only')")).scalar()
            await conn.rollback()
        except DBAPIError as exc:
            # Caught here, inside the connection, so the reason is not lost to
            # the general "storage unavailable" of connection().
            raise NotWritable(_reason(exc)) from exc
    if read_only == "on":
        raise NotWritable(_REASONS["25006"])


async def _sqlite_writable(conn: Any, lock_ms: int) -> None:
    usual = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar()
    await conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(lock_ms)}")
    try:
        await conn.exec_driver_sql("BEGIN IMMEDIATE")
        await conn.rollback()
    finally:
        await conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(usual)}")


def _reason(exc: DBAPIError) -> str:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate in _REASONS:
        return _REASONS[sqlstate]
    text = str(exc.orig).splitlines()[0] if exc.orig is not None else ""
    if "locked" in text or "busy" in text:  # SQLite: SQLITE_BUSY, SQLITE_LOCKED
        return "the database is locked by another connection"
    if "readonly" in text or "read-only" in text:
        return _REASONS["25006"]
    return f"{type(exc.orig or exc).__name__}"


async def overdue_items(engine: AsyncEngine, *, older_than: float) -> bool:
    """Whether an inbox item has been due for processing, and not taken, for more
    than `older_than` seconds: the pipeline's work waiting, for its stall check.
    One indexed look-up (state, next_attempt_at)."""
    before = utcnow() - timedelta(seconds=older_than)
    waiting = or_(
        and_(inbox_items.c.state == ItemState.PENDING, inbox_items.c.next_attempt_at < before),
        and_(inbox_items.c.state == ItemState.PROCESSING, inbox_items.c.lease_until < before))
    async with connection(engine) as conn:
        row = (await conn.execute(select(inbox_items.c.id).where(waiting).limit(1))).first()
    return row is not None
