"""The audit trail: every agent's and admin's action, append-only.

An event says who (`actor`), when (`at`), what (`action`, one of ACTIONS), to
what (`target`) and from where (`client`, the HTTP client's address; None for
the command line). `record_action` writes it inside the caller's transaction,
so the action and its audit commit together or not at all; `record` is for an
action with no transaction of its own in storage.

Nothing here updates an event, and only `purge_before` (the audit's own
retention) deletes: the database refuses anything else (triggers, migration
0014), whatever code or SQL asks.

Values come from outside and are fitted to their columns (cut, NUL and lone
surrogates replaced); `data` is bounded and never keeps a secret: a value
under a key that names one (secret, password, ...) is stored as withheld.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage.engine import as_utc, connection, transaction, utcnow
from storage.fitting import Fitter
from storage.fitting import limit as column_limit
from storage.models import audit_events, audit_purge
from storage.storable import storable

ACTIONS = (
    "token.create", "token.revoke",
    "agent.create", "agent.update",
    "canned.save", "canned.delete",
    "rules.reload",
    "dead_letter.retry", "dead_letter.discard",
    "request.reroute", "request.merge", "request.status_link_rotate",
    "quarantine.release",
    "erasure.start", "erasure.finish", "export.create",
    "report.download",
    "audit.purge",
)
# token:<id> and agent:<id> over HTTP, `cli` for the command line, `system` for
# the scheduler and signals.
ACTOR = re.compile(r"(?:token|agent):\d{1,18}|cli|system")
# Keys whose values are never kept, whatever a caller passes.
_SECRET_KEY = re.compile(r"secret|password|passwd|passphrase|credential|token_hash|api_key",
                         re.IGNORECASE)
WITHHELD = "[withheld]"
# `data` bounds: enough to explain an action, bounded whatever the input.
MAX_TEXT = 500
MAX_ITEMS = 50
MAX_DEPTH = 4


def _bounded(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if isinstance(value, bool | int | float) or value is None:
        return value
    if depth >= MAX_DEPTH:
        return str(value)[:MAX_TEXT]
    if isinstance(value, Mapping):
        return {str(k)[:100]: WITHHELD if _SECRET_KEY.search(str(k)) else _bounded(v, depth + 1)
                for k, v in list(value.items())[:MAX_ITEMS]}
    if isinstance(value, list | tuple | set | frozenset):
        return [_bounded(v, depth + 1) for v in list(value)[:MAX_ITEMS]]
    return str(value)[:MAX_TEXT]  # datetimes, enums, ids: their text


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (a container)
        return "unknown"


def _row(actor: str, action: str, target: str | None, client: str | None,
         data: Mapping[str, Any] | None) -> dict[str, Any]:
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    if not ACTOR.fullmatch(actor):
        raise ValueError(f"audit actor must be token:<id>, agent:<id>, cli or system, "
                         f"not {actor!r}")
    values = dict(data or {})
    if actor == "cli":
        values.setdefault("os_user", _os_user())
    fit = Fitter(record=False)
    return {
        "at": utcnow(), "actor": actor, "action": action,
        "target": fit.optional(None if target is None else str(target), "",
                               column_limit(audit_events, "target")),
        "client": fit.optional(client, "", column_limit(audit_events, "client")),
        "data": storable(_bounded(values)),
    }


async def record_action(conn: AsyncConnection, *, actor: str, action: str,
                        target: str | None = None, client: str | None = None,
                        data: Mapping[str, Any] | None = None) -> None:
    """An audit event, in the caller's transaction (it commits with the action)."""
    await conn.execute(insert(audit_events), _row(actor, action, target, client, data))


async def record(engine: AsyncEngine, *, actor: str, action: str,
                 target: str | None = None, client: str | None = None,
                 data: Mapping[str, Any] | None = None) -> None:
    """An audit event in a transaction of its own."""
    row = _row(actor, action, target, client, data)
    async with transaction(engine) as conn:
        await conn.execute(insert(audit_events), row)


@dataclass(frozen=True, slots=True)
class Audit:
    """Who acts and from where, handed to the storage function that does the
    action: it records the event in the action's own transaction."""

    actor: str
    client: str | None = None

    async def action(self, conn: AsyncConnection, action: str, target: str | None = None,
                     data: Mapping[str, Any] | None = None) -> None:
        await record_action(conn, actor=self.actor, action=action, target=target,
                            client=self.client, data=data)


async def audit_dead_letters(conn: AsyncConnection, audit: Audit, action: str, kind: str,
                             ids: Sequence[int]) -> None:
    """One event for the dead letters one request retried or discarded: the
    letter itself as target when there is one, else its kind with the ids."""
    target = f"{kind}:{ids[0]}" if len(ids) == 1 else kind
    await audit.action(conn, action, target, {"count": len(ids), "ids": sorted(ids)})


async def _allow_purge(conn: AsyncConnection) -> None:
    """Open the triggers' one escape for this transaction only (migration 0014)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT set_config('intake.audit_purge', 'on', true)"))
    else:
        await conn.execute(insert(audit_purge).values(id=1))


async def _close_purge(conn: AsyncConnection) -> None:
    if conn.dialect.name != "postgresql":
        await conn.execute(delete(audit_purge))


async def purge_before(engine: AsyncEngine, cutoff: datetime, *, limit: int) -> int:
    """Delete up to `limit` of the oldest events from before `cutoff` (the audit's
    own retention; the only delete the database allows). A purge that deleted
    anything leaves its own event (`audit.purge`, actor system)."""
    if limit <= 0:
        return 0
    cutoff = cutoff.astimezone(UTC)  # SQLite compares timestamps as stored text
    async with transaction(engine) as conn:
        # Locked and skipped by a purge in another process (PostgreSQL; SQLite has
        # one writer at a time): each event is deleted, and counted, once.
        ids = (await conn.execute(
            select(audit_events.c.id).where(audit_events.c.at < cutoff)
            .order_by(audit_events.c.at, audit_events.c.id).limit(limit)
            .with_for_update(skip_locked=True))).scalars().all()
        if not ids:
            return 0
        await _allow_purge(conn)
        deleted = (await conn.execute(
            delete(audit_events).where(audit_events.c.id.in_(ids)))).rowcount
        await _close_purge(conn)
        await record_action(conn, actor="system", action="audit.purge",
                            data={"deleted": deleted, "before": cutoff.isoformat()})
    return int(deleted)


# Listing -------------------------------------------------------------------

MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class AuditFilters:
    actor: str | None = None
    action: str | None = None
    target: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


def encode_cursor(at: datetime, event_id: int) -> str:
    """An opaque cursor: the (at, id) of the last event of a page."""
    raw = f"{at.astimezone(UTC).isoformat()}|{event_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """(at, id) of a cursor; ValueError if it is not one of ours."""
    if len(cursor) > 100:
        raise ValueError("cursor too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at_text, _, id_text = raw.partition("|")
        at = datetime.fromisoformat(at_text)
        event_id = int(id_text)
        if at.tzinfo is None or not 0 < event_id < 2**63:
            raise ValueError("not a cursor of this listing")
        return at.astimezone(UTC), event_id
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        raise ValueError("not a cursor of this listing") from None


def _event(row: Any) -> dict[str, Any]:
    return {"id": row.id, "at": as_utc(row.at), "actor": row.actor, "action": row.action,
            "target": row.target, "client": row.client, "data": row.data}


async def list_events(engine: AsyncEngine, filters: AuditFilters, *, limit: int = 100,
                      after: tuple[datetime, int] | None = None
                      ) -> tuple[list[dict[str, Any]], str | None]:
    """Events newest first, filtered, and the cursor of the next page (None: the last)."""
    limit = max(1, min(limit, MAX_PAGE))
    t = audit_events
    conditions = [t.c[name] == value for name in ("actor", "action", "target")
                  if (value := getattr(filters, name)) is not None]
    if filters.since is not None:
        conditions.append(t.c.at >= filters.since.astimezone(UTC))
    if filters.until is not None:
        conditions.append(t.c.at < filters.until.astimezone(UTC))
    if after is not None:
        at, event_id = after
        # (at, id) before the cursor's; `at <= ` first, so the (at, id) index
        # serves it as a range on both backends (the OR alone scans).
        conditions += [t.c.at <= at, or_(t.c.at < at, t.c.id < event_id)]
    query = (select(t).where(*conditions)
             .order_by(t.c.at.desc(), t.c.id.desc()).limit(limit + 1))
    async with connection(engine) as conn:
        rows = (await conn.execute(query)).all()
    events = [_event(r) for r in rows[:limit]]
    more = len(rows) > limit
    last = events[-1] if events else None
    return events, (encode_cursor(last["at"], last["id"]) if more and last else None)
