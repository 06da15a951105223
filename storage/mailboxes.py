"""IMAP mailboxes in the database: leases, how far each folder is fetched, and
every message seen (gateway/mailbox/ fetches; this is all its SQL).

Exactly once rests on one transaction per batch of fetched messages: their
inbox items, their `mailbox_messages` rows and the folder's new `next_uid` are
committed together, and only then is anything changed on the server. A crash
after the commit leaves rows `owed` (the move, flag or delete still to do); a
crash before it leaves nothing, and the same UIDs are fetched again.

The same message is never stored twice in a mailbox: by (folder, UIDVALIDITY,
UID), and by the sha256 of its raw bytes (the same bytes: the same Message-ID
and all), which is how mail re-read after a UIDVALIDITY change, or copied back
into a folder, is known; a unique index decides, whichever process asks.

A process fetches a mailbox only while it holds its lease, and each batch's
transaction first renews that lease: a process that lost it (paused past its
lease while another took over) commits nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage.engine import (
    as_utc,
    connection,
    insert_ids,
    insert_new,
    json_text,
    transaction,
    utcnow,
)
from storage.inbox import NewItem, item_row
from storage.models import STORED, inbox_items, mailbox_folders, mailbox_messages, mailboxes
from storage.storable import needs_change

OWED, DONE, TOO_LARGE = "owed", "done", "too_large"
# Rows per IN (...) list: under SQLite's and asyncpg's parameter limits.
_CHUNK = 500
ERROR_LENGTH = 1000


class LeaseLost(Exception):
    """Another process holds the mailbox now: this one must stop fetching it."""


class OutOfOrder(Exception):
    """A batch's predecessor was not committed: the batch is not either."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """One message as fetched: its whole raw bytes, or only its header section
    when it is over the size limit (`too_large`)."""

    uid: int
    raw: bytes
    size: int
    message_id: str | None = None
    internal_date: str | None = None
    too_large: bool = False
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha256", hashlib.sha256(self.raw).hexdigest())


@dataclass(frozen=True, slots=True)
class Folder:
    uidvalidity: int
    next_uid: int


@dataclass(frozen=True, slots=True)
class Stored:
    """What a batch became: new inbox items by UID, UIDs already stored under
    another UID (nothing new made), and UIDs recorded as too large."""

    items: dict[int, int]
    duplicates: list[int]
    too_large: list[int]

    @property
    def owed(self) -> list[int]:
        """UIDs whose after-fetch action is now owed (the too large stay put)."""
        too_large = set(self.too_large)
        return sorted(uid for uid in (*self.items, *self.duplicates) if uid not in too_large)


@dataclass(frozen=True, slots=True)
class MailboxState:
    name: str
    holder: str | None
    lease_until: datetime | None
    connected: bool
    last_fetch_at: datetime | None
    last_error: str | None
    failing_since: datetime | None
    behind: int
    fetched: int


def _chunks(values: Sequence[Any]) -> list[Sequence[Any]]:
    return [values[i:i + _CHUNK] for i in range(0, len(values), _CHUNK)]


async def _ensure(conn: AsyncConnection, name: str) -> None:
    await conn.execute(insert_new(conn, mailboxes).values(
        name=name, connected=False, behind=0, fetched=0))


async def hold(engine: AsyncEngine, name: str, holder: str, seconds: float) -> bool:
    """Take the mailbox's lease, or renew it if `holder` has it; False while
    another holds an unexpired one."""
    now = utcnow()
    async with transaction(engine) as conn:
        await _ensure(conn, name)
        result = await conn.execute(
            update(mailboxes)
            .where(mailboxes.c.name == name,
                   (mailboxes.c.holder == holder) | mailboxes.c.holder.is_(None)
                   | (mailboxes.c.lease_until < now))
            .values(holder=holder, lease_until=now + timedelta(seconds=seconds)))
        return result.rowcount == 1


async def _fence(conn: AsyncConnection, name: str, holder: str, seconds: float) -> None:
    """Renew the lease inside a writing transaction, or raise LeaseLost."""
    now = utcnow()
    result = await conn.execute(
        update(mailboxes)
        .where(mailboxes.c.name == name, mailboxes.c.holder == holder,
               mailboxes.c.lease_until >= now)
        .values(lease_until=now + timedelta(seconds=seconds)))
    if result.rowcount != 1:
        raise LeaseLost(name)


async def release(engine: AsyncEngine, name: str, holder: str) -> None:
    """Give the lease up (a clean stop): another process may take it at once."""
    async with transaction(engine) as conn:
        await conn.execute(update(mailboxes)
                           .where(mailboxes.c.name == name, mailboxes.c.holder == holder)
                           .values(holder=None, lease_until=None, connected=False))


async def folder(engine: AsyncEngine, name: str, folder_name: str) -> Folder | None:
    async with connection(engine) as conn:
        row = (await conn.execute(
            select(mailbox_folders.c.uidvalidity, mailbox_folders.c.next_uid)
            .where(mailbox_folders.c.mailbox == name,
                   mailbox_folders.c.folder == folder_name))).first()
    return None if row is None else Folder(row.uidvalidity, row.next_uid)


async def start_folder(engine: AsyncEngine, name: str, holder: str, lease: float,
                       folder_name: str, uidvalidity: int) -> Folder:
    """Begin a folder, or begin it again under a new UIDVALIDITY (every UID is
    read again; the raw bytes' hash keeps what was stored from being stored twice)."""
    async with transaction(engine) as conn:
        await _fence(conn, name, holder, lease)
        changed = await conn.execute(
            update(mailbox_folders)
            .where(mailbox_folders.c.mailbox == name, mailbox_folders.c.folder == folder_name)
            .values(uidvalidity=uidvalidity, next_uid=1))
        if changed.rowcount == 0:
            await conn.execute(mailbox_folders.insert().values(
                mailbox=name, folder=folder_name, uidvalidity=uidvalidity, next_uid=1))
    return Folder(uidvalidity, 1)


def _meta(base: Mapping[str, Any], folder_name: str, uidvalidity: int,
          message: Fetched | None) -> dict[str, Any]:
    """An item's metadata (None: what every item of the folder shares)."""
    meta = dict(base) | {"folder": folder_name, "uidvalidity": uidvalidity}
    if message is None:
        return meta
    meta["uid"] = message.uid
    if message.internal_date:
        meta["internal_date"] = message.internal_date
    if message.too_large:
        meta["too_large"] = message.size
    return meta


def _recorded_id(message: Fetched) -> str | None:
    return (message.message_id or "")[:998] or None


def _state(message: Fetched) -> str:
    return TOO_LARGE if message.too_large else OWED


def _record(name: str, folder_name: str, uidvalidity: int, message: Fetched,
            item_id: int | None, now: datetime) -> dict[str, Any]:
    return {"mailbox": name, "folder": folder_name, "uidvalidity": uidvalidity,
            "uid": message.uid, "item_id": item_id, "message_id": _recorded_id(message),
            "raw_sha256": message.sha256, "size": message.size, "state": _state(message),
            "stored_at": now}


def _record_once(conn: AsyncConnection) -> Any:
    """INSERT of records that made an item, skipping any whose digest made one before."""
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    return dialect_insert(mailbox_messages).on_conflict_do_nothing(
        index_elements=["mailbox", "raw_sha256"], index_where=STORED)


# Built once: a batch's statements are the same every time but for their values.
_FOLDER = (mailbox_messages.c.mailbox == bindparam("b_name"),
           mailbox_messages.c.folder == bindparam("b_folder"),
           mailbox_messages.c.uidvalidity == bindparam("b_uidvalidity"))
_IN_RANGE = mailbox_messages.c.uid.between(bindparam("b_lo"), bindparam("b_hi"))
_SEEN = select(mailbox_messages.c.uid).where(*_FOLDER, _IN_RANGE)
# A range, not a list of UIDs: every owed record of a folder in the range of a
# batch acted on is one of that batch (earlier ones were settled before it).
_SETTLE = (update(mailbox_messages).where(*_FOLDER, _IN_RANGE, mailbox_messages.c.state == OWED)
           .values(state=DONE))
_FOLDER_ROW = (mailbox_folders.c.mailbox == bindparam("b_name"),
               mailbox_folders.c.folder == bindparam("b_folder"),
               mailbox_folders.c.uidvalidity == bindparam("b_uidvalidity"))
_ADVANCE = (update(mailbox_folders)
            .where(*_FOLDER_ROW, mailbox_folders.c.next_uid <= bindparam("b_last"))
            .values(next_uid=bindparam("b_next")))
# A batch committed while the one before it may still be committing moves
# the position only from where that one left it, so a failed batch is never
# skipped over by the next one.
_ADVANCE_AFTER = (update(mailbox_folders)
                  .where(*_FOLDER_ROW, mailbox_folders.c.next_uid == bindparam("b_after"))
                  .values(next_uid=bindparam("b_next")))
# Last in a batch's transaction: counts it, and renews the lease or finds it
# lost (then nothing of the batch is committed).
_FENCE = (update(mailboxes)
          .where(mailboxes.c.name == bindparam("b_name"),
                 mailboxes.c.holder == bindparam("b_holder"),
                 mailboxes.c.lease_until >= bindparam("b_now"))
          .values(lease_until=bindparam("b_until"), last_fetch_at=bindparam("b_now"),
                  fetched=mailboxes.c.fetched + bindparam("b_added")))

# PostgreSQL: both of the above in one statement (`b_after` NULL: the first
# batch in flight, moving the position only forward); how many rows each changed.
_PG_CLOSE = text(
    "WITH advanced AS (UPDATE mailbox_folders SET next_uid = CAST(:b_next AS bigint)"
    " WHERE mailbox = :b_name AND folder = :b_folder AND uidvalidity = :b_uidvalidity"
    " AND (next_uid = CAST(:b_after AS bigint) OR (CAST(:b_after AS bigint) IS NULL"
    " AND next_uid <= CAST(:b_last AS bigint))) RETURNING 1),"
    " fenced AS (UPDATE mailboxes SET lease_until = CAST(:b_until AS timestamptz),"
    " last_fetch_at = CAST(:b_now AS timestamptz),"
    " fetched = fetched + CAST(:b_added AS integer) WHERE name = :b_name"
    " AND holder = :b_holder AND lease_until >= CAST(:b_now AS timestamptz) RETURNING 1)"
    " SELECT (SELECT count(*) FROM advanced), (SELECT count(*) FROM fenced)")


# PostgreSQL: a batch's items and their records in one statement (a UID
# recorded before left out), each column that differs between rows as one
# array (what they share goes once), unnested by the server, so the client
# builds no parameter per value (most of a batch's CPU here). A record whose
# digest was stored before is refused by the unique index (its item is then
# taken back by the caller).
_PG_STORE = text(
    "WITH t AS (SELECT * FROM unnest(CAST(:raw AS bytea[]), CAST(:meta AS jsonb[]),"
    " CAST(:uid AS bigint[]), CAST(:message_id AS varchar[]), CAST(:raw_sha256 AS varchar[]),"
    " CAST(:size AS bigint[]), CAST(:state AS varchar[])) WITH ORDINALITY"
    " AS t(raw, meta, uid, message_id, raw_sha256, size, state, n)"
    " WHERE t.uid NOT IN (SELECT m.uid FROM mailbox_messages m WHERE m.mailbox = :mailbox"
    " AND m.folder = :folder AND m.uidvalidity = :uidvalidity"
    " AND m.uid BETWEEN CAST(:lo AS bigint) AND CAST(:hi AS bigint))),"
    " items AS (INSERT INTO inbox_items (channel, received_at, raw, meta, state, attempts,"
    " next_attempt_at) SELECT CAST(:channel AS varchar), CAST(:received_at AS timestamptz),"
    " t.raw, t.meta, CAST(:item_state AS varchar), CAST(:attempts AS integer),"
    " CAST(:next_attempt_at AS timestamptz) FROM t ORDER BY t.n"
    " RETURNING id, (meta ->> 'uid')::bigint AS uid),"
    " records AS (INSERT INTO mailbox_messages (mailbox, folder, uidvalidity, uid, item_id,"
    " message_id, raw_sha256, size, state, stored_at) SELECT CAST(:mailbox AS varchar),"
    " CAST(:folder AS varchar), CAST(:uidvalidity AS bigint), t.uid, items.id, t.message_id,"
    " t.raw_sha256, t.size, t.state, CAST(:stored_at AS timestamptz)"
    " FROM t JOIN items ON items.uid = t.uid ORDER BY t.n"
    " ON CONFLICT (mailbox, raw_sha256) WHERE item_id IS NOT NULL DO NOTHING RETURNING uid)"
    " SELECT items.uid, items.id, records.uid IS NOT NULL AS taken"
    " FROM items LEFT JOIN records ON records.uid = items.uid")


async def _insert_arrays(conn: AsyncConnection, candidates: Sequence[Fetched],
                         rows: list[dict[str, Any]], record: dict[str, Any]
                         ) -> tuple[dict[int, int], set[int]]:
    """Items and their records on PostgreSQL (`record`: what the batch's
    records share): the new items by UID, and the UIDs whose record was taken
    (not a digest stored before)."""
    item = rows[0]  # what every row of the batch shares
    uids = [m.uid for m in candidates]
    result = await conn.execute(_PG_STORE, {
        "channel": item["channel"], "received_at": item["received_at"],
        "item_state": item["state"], "attempts": item["attempts"],
        "next_attempt_at": item["next_attempt_at"], "mailbox": record["mailbox"],
        "folder": record["folder"], "uidvalidity": record["uidvalidity"],
        "stored_at": record["stored_at"], "raw": [row["raw"] for row in rows],
        "meta": [json_text(row["meta"]) for row in rows],
        "uid": uids, "lo": min(uids), "hi": max(uids),
        "message_id": [_recorded_id(m) for m in candidates],
        "raw_sha256": [m.sha256 for m in candidates], "size": [m.size for m in candidates],
        "state": [_state(m) for m in candidates]})
    made: dict[int, int] = {}
    taken: set[int] = set()
    for uid, item_id, was_taken in result:
        made[int(uid)] = int(item_id)
        if was_taken:
            taken.add(int(uid))
    return made, taken


async def store_fetched(engine: AsyncEngine, *, name: str, holder: str, lease: float,
                        folder_name: str, uidvalidity: int, messages: Sequence[Fetched],
                        meta: Mapping[str, Any], settled: Sequence[int] = (),
                        after: int | None = None,
                        previous: Awaitable[object] | None = None) -> Stored:
    """Commit a batch of fetched messages (ascending UIDs) with their folder's
    new position, in one transaction under the lease (LeaseLost: none of it).
    `meta`: what every item's metadata carries (mailbox, addresses as
    `rcpt_tos`, archive); `settled`: UIDs of the folder acted on since the
    last batch (recorded here rather than in a transaction of their own);
    `after`: the last UID of the batch before, still being committed by
    `previous`: this one waits for it before it moves the folder's position,
    and commits only if that one did (else OutOfOrder, and nothing)."""
    now = utcnow()
    items: dict[int, int] = {}
    folder = {"b_name": name, "b_folder": folder_name, "b_uidvalidity": uidvalidity}
    async with transaction(engine) as conn:
        if settled:
            await conn.execute(_SETTLE, folder | {"b_lo": min(settled), "b_hi": max(settled)})
        uids = [m.uid for m in messages]
        pg = conn.dialect.name == "postgresql"
        # A UID recorded before (rare: the folder's position is past every
        # recorded one) is left out. On PostgreSQL the batch's statement
        # leaves it out itself, unless the batch holds the same bytes twice
        # (which copy stands for both then depends on which were recorded).
        folded = pg and len({m.sha256 for m in messages}) == len(messages)
        fresh = list(messages)
        if uids and not folded:
            seen = set((await conn.execute(
                _SEEN, folder | {"b_lo": min(uids), "b_hi": max(uids)})).scalars())
            fresh = [m for m in messages if m.uid not in seen]
        # The same bytes twice in one batch: the first stands for both.
        first: dict[str, Fetched] = {}
        for message in fresh:
            first.setdefault(message.sha256, message)
        candidates = list(first.values())
        if candidates:
            # Items first; a message whose bytes were stored before (in any
            # folder, under any UIDVALIDITY) is refused by the unique index on
            # stored digests, and its item taken back: the index, not a look-up
            # the planner may turn into a scan, decides (and across processes).
            # What the batch's items share is checked once: what each adds is
            # numbers and an RFC 3339 date, always storable.
            shared = not needs_change(_meta(meta, folder_name, uidvalidity, None))
            rows = [item_row(NewItem(channel="imap", raw=m.raw,
                                     meta=_meta(meta, folder_name, uidvalidity, m)), now,
                             meta_storable=shared)
                    for m in candidates]
            if pg:
                made, taken = await _insert_arrays(conn, candidates, rows, _record(
                    name, folder_name, uidvalidity, candidates[0], None, now))
                if folded:
                    fresh = [m for m in fresh if m.uid in made]
            else:
                ids = await insert_ids(conn, inbox_items, rows)
                made = {m.uid: item_id for m, item_id in zip(candidates, ids, strict=True)}
                records = [_record(name, folder_name, uidvalidity, m, made[m.uid], now)
                           for m in candidates]
                taken = set((await conn.execute(
                    _record_once(conn).returning(mailbox_messages.c.uid), records)).scalars())
            items = {uid: item_id for uid, item_id in made.items() if uid in taken}
            if refused := [item_id for uid, item_id in made.items() if uid not in taken]:
                for part in _chunks(refused):
                    await conn.execute(inbox_items.delete().where(inbox_items.c.id.in_(part)))
        duplicates = [m.uid for m in fresh if m.uid not in items]
        if duplicates:
            await conn.execute(mailbox_messages.insert(), [
                _record(name, folder_name, uidvalidity, m, None, now)
                for m in fresh if m.uid not in items])
        if uids and after is not None and previous is not None:
            try:
                await previous
            except Exception as exc:  # noqa: BLE001 - its own caller sees it
                raise OutOfOrder(f"{name}: the batch before UID {min(uids)} failed") from exc
        fence = {"b_name": name, "b_holder": holder, "b_now": now, "b_added": len(items),
                 "b_until": now + timedelta(seconds=lease)}
        if uids and pg:  # the position and the fence in one statement
            moved, fenced = (await conn.execute(_PG_CLOSE, folder | fence | {
                "b_after": None if after is None else after + 1, "b_last": max(uids),
                "b_next": max(uids) + 1})).one()
        else:
            moved = fenced = 1
            if uids and after is None:
                await conn.execute(_ADVANCE, folder | {"b_last": max(uids),
                                                       "b_next": max(uids) + 1})
            elif uids:
                moved = (await conn.execute(_ADVANCE_AFTER, folder | {
                    "b_after": after + 1, "b_next": max(uids) + 1})).rowcount
            if moved == 1:
                fenced = (await conn.execute(_FENCE, fence)).rowcount
        if after is not None and moved != 1:
            raise OutOfOrder(f"{name}: the batch before UID {min(uids)} was not committed")
        if fenced != 1:
            raise LeaseLost(name)
    return Stored(items=items, duplicates=duplicates,
                  too_large=[m.uid for m in fresh if m.too_large])


async def owed(engine: AsyncEngine, name: str, folder_name: str, uidvalidity: int,
               limit: int = 10_000) -> list[int]:
    """UIDs stored whose after-fetch action is still to be done on the server."""
    async with connection(engine) as conn:
        return list((await conn.execute(
            select(mailbox_messages.c.uid)
            .where(mailbox_messages.c.mailbox == name, mailbox_messages.c.state == OWED,
                   mailbox_messages.c.folder == folder_name,
                   mailbox_messages.c.uidvalidity == uidvalidity)
            .order_by(mailbox_messages.c.uid).limit(limit))).scalars())


async def settle(engine: AsyncEngine, name: str, folder_name: str, uidvalidity: int,
                 uids: Sequence[int]) -> None:
    """The after-fetch action is done for these UIDs (or they are gone from the server)."""
    async with transaction(engine) as conn:
        await _settle(conn, name, folder_name, uidvalidity, uids)


async def _settle(conn: AsyncConnection, name: str, folder_name: str, uidvalidity: int,
                  uids: Sequence[int]) -> None:
    if uids:
        await conn.execute(_SETTLE, {"b_name": name, "b_folder": folder_name,
                                     "b_uidvalidity": uidvalidity, "b_lo": min(uids),
                                     "b_hi": max(uids)})


async def forget_owed(engine: AsyncEngine, name: str, folder_name: str,
                      uidvalidity: int) -> int:
    """Actions owed under an old UIDVALIDITY cannot be done (those UIDs mean
    nothing now): the messages are found again by their hash and acted on then."""
    async with transaction(engine) as conn:
        result = await conn.execute(
            update(mailbox_messages)
            .where(mailbox_messages.c.mailbox == name, mailbox_messages.c.folder == folder_name,
                   mailbox_messages.c.uidvalidity != uidvalidity,
                   mailbox_messages.c.state == OWED)
            .values(state=DONE))
        return result.rowcount


async def report(engine: AsyncEngine, name: str, *, connected: bool,
                 error: str | None = None, behind: int | None = None,
                 settled: Sequence[tuple[str, int, Sequence[int]]] = ()) -> None:
    """How the mailbox goes, for the health check, metrics and `intake mailboxes`:
    an error starts (or continues) `failing_since`; a success clears both.
    `settled`: (folder, UIDVALIDITY, UIDs) acted on at the end of the pass, so
    recorded in the same transaction (as `settle`)."""
    now = utcnow()
    values: dict[str, Any] = {"connected": connected, "updated_at": now}
    if error is None:
        values |= {"last_error": None, "failing_since": None}
    else:
        # Errors quote servers and token endpoints: no NUL (no column takes it);
        # the rest is kept as said, and each reader shows it safely.
        values |= {"last_error": error.replace("\x00", " ")[:ERROR_LENGTH],
                   "failing_since": func.coalesce(mailboxes.c.failing_since, now)}
    if behind is not None:
        values["behind"] = max(0, behind)
    async with transaction(engine) as conn:
        for folder_name, uidvalidity, uids in settled:
            await _settle(conn, name, folder_name, uidvalidity, uids)
        await _ensure(conn, name)
        await conn.execute(update(mailboxes).where(mailboxes.c.name == name).values(values))


async def states(engine: AsyncEngine, names: Sequence[str] | None = None
                 ) -> list[MailboxState]:
    """Every mailbox's state (or those named), by name."""
    query = select(mailboxes).order_by(mailboxes.c.name)
    if names is not None:
        query = query.where(mailboxes.c.name.in_(list(names)))
    async with connection(engine) as conn:
        rows = (await conn.execute(query)).all()
    return [MailboxState(name=r.name, holder=r.holder, lease_until=as_utc(r.lease_until),
                         connected=bool(r.connected), last_fetch_at=as_utc(r.last_fetch_at),
                         last_error=r.last_error, failing_since=as_utc(r.failing_since),
                         behind=r.behind, fetched=r.fetched) for r in rows]


async def refresh_token(engine: AsyncEngine, name: str) -> tuple[str | None, str | None]:
    """The rotated refresh token stored for the mailbox, and the sha256 of the
    configured token it descends from."""
    async with connection(engine) as conn:
        row = (await conn.execute(select(mailboxes.c.refresh_token, mailboxes.c.refresh_seed)
                                  .where(mailboxes.c.name == name))).first()
    return (None, None) if row is None else (row.refresh_token, row.refresh_seed)


async def save_refresh_token(engine: AsyncEngine, name: str, token: str, seed: str) -> None:
    """Keep a refresh token the provider rotated: the old one may no longer work."""
    async with transaction(engine) as conn:
        await _ensure(conn, name)
        await conn.execute(update(mailboxes).where(mailboxes.c.name == name)
                           .values(refresh_token=token, refresh_seed=seed))
