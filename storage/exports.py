"""What a person's export holds (right of access): the requests they opened,
with their messages and ours to them, and their own messages on other
people's requests. Other people's messages are theirs and are left out.

Reads are bounded per statement (requests by pages of ids, messages per page);
the raw inputs and attachment contents are read one at a time by the archive
writer, never all at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.engine import as_utc, connection
from storage.models import attachments, inbox_items, messages, requests

PAGE = 200


@dataclass(frozen=True, slots=True)
class ExportedMessage:
    row: dict[str, Any]
    attachments: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ExportedRequest:
    row: dict[str, Any]
    role: str  # requester, or participant (they wrote on someone else's request)
    messages: list[ExportedMessage] = field(default_factory=list)


_REQUEST = (requests.c.id, requests.c.reference, requests.c.status, requests.c.queue,
            requests.c.channel, requests.c.priority, requests.c.type, requests.c.category,
            requests.c.subject, requests.c.requester_email, requests.c.requester_name,
            requests.c.custom_fields, requests.c.tags, requests.c.created_at,
            requests.c.updated_at, requests.c.resolved_at)
_MESSAGE = (messages.c.id, messages.c.request_id, messages.c.inbox_item_id,
            messages.c.direction, messages.c.message_id, messages.c.in_reply_to,
            messages.c.from_address, messages.c.from_name, messages.c.to, messages.c.cc,
            messages.c.subject, messages.c.text, messages.c.html, messages.c.created_at)


def _plain(row: Any) -> dict[str, Any]:
    return {k: as_utc(v) if k.endswith("_at") else v for k, v in row._mapping.items()}


async def requests_of(engine: AsyncEngine, address: str) -> AsyncIterator[ExportedRequest]:
    """The person's requests, oldest first, a page at a time."""
    address = address.strip().lower()
    cursor = 0
    while True:
        async with connection(engine) as conn:
            own = func.lower(requests.c.requester_email) == address
            wrote = requests.c.id.in_(
                select(messages.c.request_id).where(
                    func.lower(messages.c.from_address) == address,
                    messages.c.direction == "in"))
            page = (await conn.execute(select(*_REQUEST, own.label("own"))
                                       .where(requests.c.id > cursor, or_(own, wrote))
                                       .order_by(requests.c.id).limit(PAGE))).all()
            if not page:
                return
            ids = [row.id for row in page]
            found = (await conn.execute(select(*_MESSAGE).where(
                messages.c.request_id.in_(ids)).order_by(messages.c.id))).all()
            message_ids = [row.id for row in found]
            files = (await conn.execute(select(
                attachments.c.message_id, attachments.c.filename, attachments.c.content_type,
                attachments.c.size, attachments.c.sha256).where(
                attachments.c.message_id.in_(message_ids)).order_by(attachments.c.id))
                ).all() if message_ids else []
        by_message: dict[int, list[dict[str, Any]]] = {}
        for row in files:
            by_message.setdefault(row.message_id, []).append(_plain(row))
        by_request: dict[int, list[ExportedMessage]] = {}
        owner = {row.id: bool(row.own) for row in page}
        for row in found:
            theirs = row.direction == "in" and (row.from_address or "").lower() == address
            ours_to_them = row.direction == "out" and owner[row.request_id]
            if theirs or ours_to_them:
                by_request.setdefault(row.request_id, []).append(
                    ExportedMessage(_plain(row), by_message.get(row.id, [])))
        for row in page:
            plain = _plain(row)
            del plain["own"]
            yield ExportedRequest(plain, "requester" if row.own else "participant",
                                  by_request.get(row.id, []))
        cursor = page[-1].id


async def raw_input(engine: AsyncEngine, item_id: int) -> tuple[str, bytes] | None:
    """An input's channel and exact bytes, as received."""
    async with connection(engine) as conn:
        row = (await conn.execute(select(inbox_items.c.channel, inbox_items.c.raw)
                                  .where(inbox_items.c.id == item_id))).first()
    return None if row is None else (row.channel, row.raw)
