"""The mailbox store's batch commit: what each item's metadata holds, on both backends."""

from __future__ import annotations

import base64

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import mailboxes as store
from storage.models import inbox_items
from storage.storable import EXACT

HOLDER = "host:1:feed"


async def _stored_meta(engine: AsyncEngine, folder: str, meta: dict[str, object]
                       ) -> list[dict[str, object]]:
    assert await store.hold(engine, "support", HOLDER, 30)
    await store.start_folder(engine, "support", HOLDER, 30, folder, 7)
    fetched = [store.Fetched(uid=uid, raw=f"Subject: {uid}\r\n\r\nbody {uid}\r\n".encode(),
                             size=30, message_id=f"<{uid}@x>",
                             internal_date="2026-12-05T03:24:06+00:00" if uid == 2 else None)
               for uid in (1, 2)]
    stored = await store.store_fetched(engine, name="support", holder=HOLDER, lease=30,
                                       folder_name=folder, uidvalidity=7, messages=fetched,
                                       meta=meta)
    assert sorted(stored.items) == [1, 2]
    async with engine.connect() as conn:
        return list((await conn.execute(select(inbox_items.c.meta)
                                        .order_by(inbox_items.c.id))).scalars())


async def test_store_fetched__metadata_checked_once_per_batch_is_kept_exactly(
        engine: AsyncEngine) -> None:
    """A batch's shared metadata is checked once; each item adds its UID (and
    date) as they are."""
    metas = await _stored_meta(engine, "INBOX", {"mailbox": "support",
                                                 "rcpt_tos": ["support@example.com"]})
    assert metas == [
        {"mailbox": "support", "rcpt_tos": ["support@example.com"], "folder": "INBOX",
         "uidvalidity": 7, "uid": 1},
        {"mailbox": "support", "rcpt_tos": ["support@example.com"], "folder": "INBOX",
         "uidvalidity": 7, "uid": 2, "internal_date": "2026-12-05T03:24:06+00:00"}]


async def test_store_fetched__unstorable_shared_text_keeps_its_bytes_in_every_item(
        engine: AsyncEngine) -> None:
    """Shared metadata no text column takes (here a NUL in an address) is made
    storable in each item, its exact bytes kept beside it, as SMTP's envelope is."""
    metas = await _stored_meta(engine, "INBOX", {"mailbox": "support",
                                                 "rcpt_tos": ["a\x00b@example.com"]})
    assert [m["rcpt_tos"] for m in metas] == [["a\ufffdb@example.com"]] * 2
    assert [m["uid"] for m in metas] == [1, 2]
    assert [m[EXACT] for m in metas] == [
        {"/rcpt_tos/0": base64.b64encode(b"a\x00b@example.com").decode()}] * 2
