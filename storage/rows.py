"""Rows of a stored request and its messages, as the tables take them.

The pipeline fits what it built to the columns and records each change
(storage/fitting.py); the rows are built through `fit_row` all the same, so
no caller can hand a table a value it refuses: NUL and lone surrogates become
U+FFFD, NaN null, and text longer than its column is cut.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import FromClause, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.lifecycle import clock_held
from storage.engine import insert_ids
from storage.fitting import limit
from storage.models import attachments, messages, requests
from storage.processing import ClaimedItem
from storage.records import NewAttachment, NewMessage, NewRequest
from storage.storable import needs_change, storable, stored_as_is
from storage.uploads import insert_blobs


def scrub(value: Any) -> Any:
    """A JSON-able value as both databases store it (storage/storable.py): the
    value itself when it is stored as it is (a check is cheaper than a copy)."""
    return value if stored_as_is(value) else storable(value)


def fit_row(table: FromClause, row: dict[str, Any]) -> dict[str, Any]:
    """`row` storable, each text cut to its column's length (a new dict)."""
    fitted = storable(row) if needs_change(row) else dict(row)
    for key, value in fitted.items():
        if isinstance(value, str):
            size = limit(table, key)
            if size is not None and len(value) > size:
                fitted[key] = value[:size]
    return fitted  # type: ignore[no-any-return]


# The service-level columns of a new request. Every row carries all of them
# (None when no deadline applies): a batch is one multi-row INSERT, whose rows
# must have the same keys, and an automatic mail (closed, no deadlines) may sit
# next to a normal one.
SLA_COLUMNS = ("sla_policy", "first_response_due_at", "resolution_due_at", "due_at",
               "next_check_at")


def request_row(item: ClaimedItem, new: NewRequest, now: datetime) -> dict[str, Any]:
    unknown = set(new.sla) - set(SLA_COLUMNS)
    if unknown:
        raise ValueError(f"not service-level columns: {', '.join(sorted(unknown))}")
    row = {
        "reference": item.reference, "inbox_item_id": item.id, "status": new.status,
        "queue": new.queue, "channel": item.channel, "priority": new.priority,
        "type": new.type, "category": new.category, "component": new.component,
        "requester_email": new.requester_email, "requester_name": new.requester_name,
        "subject": new.message.subject, "custom_fields": new.custom_fields,
        # Archived mail keeps its own date: reports count it then, and as finished
        # then (closed at once: its last change), not when it was imported.
        "tags": new.tags, "escalation_level": new.escalation_level,
        "created_at": new.created_at or now, "updated_at": new.created_at or now, "version": 1,
        "status_token": new.status_token or secrets.token_urlsafe(24),
        **dict.fromkeys(SLA_COLUMNS), **new.sla,
        # Held in quarantine from the start: its clocks stand still and nothing
        # is checked until it is released (storage.actions.release).
        **({"sla_paused_at": now, "next_check_at": None} if clock_held(new.status)
           else {"sla_paused_at": None}),
    }
    # What fit_request fitted is not walked again; the rest is ours (references,
    # ids, tokens, times).
    return row if new.fitted else fit_row(requests, row)


def message_row(request_id: int, item_id: int, m: NewMessage,
                now: datetime, *, fitted: bool = False) -> dict[str, Any]:
    """`fitted`: `m` is the message of a request fit_request fitted."""
    row = {
        "request_id": request_id, "inbox_item_id": item_id, "direction": "in",
        "message_id": m.message_id, "in_reply_to": m.in_reply_to,
        "references": m.references, "from_address": m.from_address,
        "from_name": m.from_name, "to": m.to, "cc": m.cc, "subject": m.subject,
        "new_text": m.new_text, "text": m.text, "html": m.html, "flags": m.flags,
        "created_at": now,
    }
    return row if fitted else fit_row(messages, row)


def outbound_row(request_id: int, m: NewMessage, now: datetime, *,
                 fitted: bool = False) -> dict[str, Any]:
    """A message we send: no inbox item behind it. `fitted`: `m` is the
    acknowledgement of a request fit_request fitted."""
    return message_row(request_id, 0, m, now, fitted=fitted) | {"inbox_item_id": None,
                                                               "direction": "out"}


async def insert_returning(conn: AsyncConnection, table: Any,
                           rows: list[dict[str, Any]]) -> list[int]:
    """Insert in few statements (storage/engine.py `insert_ids`); the new ids
    in the order of `rows`, which must all carry the same columns (the
    statement is compiled from the first)."""
    keys = set(rows[0]) if rows else set()
    for row in rows[1:]:
        if set(row) != keys:
            raise ValueError("rows of one insert differ in their columns: "
                             f"{', '.join(sorted(keys ^ set(row)))}")
    return await insert_ids(conn, table, rows)


_INSERT_ATTACHMENTS = insert(attachments)


async def insert_attachments(conn: AsyncConnection,
                             found: list[tuple[int, NewAttachment]]) -> None:
    """Attachments by message id; contents go to the blob store once each."""
    if not found:
        return
    hashed = [(message_id, a, a.stored_sha256 or hashlib.sha256(a.content).hexdigest())
              for message_id, a in found]
    await insert_blobs(conn, {sha: a.content for _, a, sha in hashed
                              if a.stored_sha256 is None})
    await conn.execute(_INSERT_ATTACHMENTS, [fit_row(attachments, {
        "message_id": message_id, "sha256": sha, "filename": a.filename,
        "content_type": a.content_type,
        "size": a.stored_size if a.stored_sha256 else len(a.content),
        "content_id": a.content_id, "inline": a.inline,
    }) for message_id, a, sha in hashed])
