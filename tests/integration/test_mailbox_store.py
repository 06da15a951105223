"""The mailbox store's batch commit: what each item's metadata holds, on both backends."""

from __future__ import annotations

import base64

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import mailboxes as store
from storage.models import inbox_items, mailbox_folders, mailbox_messages, mailboxes
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


def _message(uid: int) -> store.Fetched:
    raw = f"Subject: {uid}\r\n\r\nbody {uid}\r\n".encode()
    return store.Fetched(uid=uid, raw=raw, size=len(raw), message_id=f"<{uid}@x>")


async def _store(engine: AsyncEngine, messages: list[store.Fetched]) -> store.Stored:
    return await store.store_fetched(engine, name="support", holder=HOLDER, lease=30,
                                     folder_name="INBOX", uidvalidity=7, messages=messages,
                                     meta={"mailbox": "support", "rcpt_tos": ["s@x"]})


async def _records(engine: AsyncEngine) -> list[tuple[int, bool]]:
    async with engine.connect() as conn:
        return [(r.uid, r.item_id is not None) for r in await conn.execute(
            select(mailbox_messages.c.uid, mailbox_messages.c.item_id)
            .order_by(mailbox_messages.c.uid))]


@pytest.mark.parametrize("twice", [False, True], ids=["distinct bytes", "same bytes twice"])
async def test_store_fetched__uids_recorded_before_are_left_out_once_each(
        engine: AsyncEngine, twice: bool) -> None:
    """A batch holding UIDs recorded before (here the position was moved back
    by hand) stores only the others, once each, and moves the position on.
    With the same bytes twice in the batch (on PostgreSQL the other way of
    looking), the copy at a new UID stands for both."""
    assert await store.hold(engine, "support", HOLDER, 30)
    await store.start_folder(engine, "support", HOLDER, 30, "INBOX", 7)
    first = await _store(engine, [_message(1), _message(2)])
    assert sorted(first.items) == [1, 2]
    async with engine.begin() as conn:
        await conn.execute(mailbox_folders.update().values(next_uid=2))
    third = _message(3)
    again = [store.Fetched(uid=2, raw=third.raw, size=third.size) if twice else _message(2),
             third]
    stored = await _store(engine, again)
    assert sorted(stored.items) == [3] and stored.duplicates == []
    assert await _records(engine) == [(1, True), (2, True), (3, True)]
    async with engine.connect() as conn:
        assert (await conn.execute(select(mailbox_folders.c.next_uid))).scalar_one() == 4
        assert (await conn.execute(select(func.count()).select_from(inbox_items))
                ).scalar_one() == 3


async def _nothing_stored(engine: AsyncEngine, next_uid: int) -> None:
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(inbox_items))
                ).scalar_one() == 0
        assert (await conn.execute(select(func.count()).select_from(mailbox_messages))
                ).scalar_one() == 0
        assert (await conn.execute(select(mailbox_folders.c.next_uid))).scalar_one() == next_uid


async def test_store_fetched__a_lost_lease_commits_nothing(engine: AsyncEngine) -> None:
    assert await store.hold(engine, "support", HOLDER, 30)
    await store.start_folder(engine, "support", HOLDER, 30, "INBOX", 7)
    async with engine.begin() as conn:  # another process took over
        await conn.execute(mailboxes.update().values(holder="host:2:beef"))
    with pytest.raises(store.LeaseLost):
        await _store(engine, [_message(1), _message(2)])
    await _nothing_stored(engine, 1)


async def test_store_fetched__a_batch_after_one_not_committed_commits_nothing(
        engine: AsyncEngine) -> None:
    """A batch chained after another (`after`) commits only from where that one
    left the position: not if it was not committed, nor if it failed."""
    assert await store.hold(engine, "support", HOLDER, 30)
    await store.start_folder(engine, "support", HOLDER, 30, "INBOX", 7)

    async def failed() -> None:
        raise store.LeaseLost("support")

    for previous in (None, failed()):
        with pytest.raises(store.OutOfOrder):
            await store.store_fetched(
                engine, name="support", holder=HOLDER, lease=30, folder_name="INBOX",
                uidvalidity=7, messages=[_message(3), _message(4)], meta={"mailbox": "support"},
                after=2, previous=previous)
        await _nothing_stored(engine, 1)
    await _store(engine, [_message(1), _message(2)])
    stored = await store.store_fetched(
        engine, name="support", holder=HOLDER, lease=30, folder_name="INBOX", uidvalidity=7,
        messages=[_message(3), _message(4)], meta={"mailbox": "support"}, after=2)
    assert sorted(stored.items) == [3, 4]
    async with engine.connect() as conn:
        assert (await conn.execute(select(mailbox_folders.c.next_uid))).scalar_one() == 5
        assert (await conn.execute(select(mailboxes.c.fetched))).scalar_one() == 4
