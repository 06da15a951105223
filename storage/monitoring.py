"""What the database says about the gateway's health, for /metrics and the health
check: backlogs, dead letters, lag, queues, IMAP mailboxes; and which process
reads them.

Every figure is one indexed statement (the (state, next_attempt_at) indexes of
inbox_items and outbox, requests' (queue, status, priority) and next_check_at,
the configured mailboxes' rows by their primary key), so its cost follows the
backlog, never the history: no full-table scan per scrape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.lifecycle import DONE, WORKABLE, DeliveryState, ItemState
from storage.engine import as_utc, connection, is_sqlite, utcnow
from storage.errors import is_storage_fault, unavailable
from storage.models import inbox_items, outbox, requests
from storage.models import mailboxes as mailbox_rows

# pg_try_advisory_lock key of "reads the figures for /metrics" (a constant of our own).
LEAD_KEY = 0x1A7A4F


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueFigures:
    name: str
    open: int                      # workable: new, open, reopened
    unclaimed: int                 # of those, not claimed or their claim's lease ran out
    oldest_waiting_seconds: float  # the oldest unclaimed one's age (0: none)
    past_due: int                  # due_at passed
    expired_claims: int            # claimed, the lease run out, not taken over yet


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxFigures:
    """A `[[mailbox]]`'s row (storage/mailboxes.py writes it), times in UTC."""

    name: str
    holder: str | None
    lease_until: datetime | None
    connected: bool
    last_fetch_at: datetime | None   # when mail was last stored (not every pass stores)
    reported_at: datetime | None     # the fetcher's last report, a pass's or a failure's
    last_error: str | None
    failing_since: datetime | None
    behind: int
    fetched: int

    def held(self, now: datetime) -> bool:
        """A process holds an unexpired lease: it fetches the mailbox."""
        return self.holder is not None and self.lease_until is not None \
            and self.lease_until >= now

    @property
    def last_pass_at(self) -> datetime | None:
        """When a pass last worked: the last report, unless it was a failure's."""
        return self.reported_at if self.failing_since is None else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Figures:
    at: datetime
    inbox: dict[str, int]          # pending, processing, dead
    lag_seconds: float             # how long the oldest item due has waited (0: none)
    # (kind, state): pending, sending, dead, and failing (pending after a failed attempt)
    outbox: dict[tuple[str, str], int]
    outbox_failing_error: str | None     # the last error of the most recent failing row
    scheduler_late_seconds: float  # how long the oldest service-level check due has waited
    queues: tuple[QueueFigures, ...]
    # The configured mailboxes' rows by name; one never fetched has none yet.
    mailboxes: dict[str, MailboxFigures] = field(default_factory=dict)

    @property
    def dead(self) -> int:
        return self.inbox.get(ItemState.DEAD, 0) + sum(
            n for (_, state), n in self.outbox.items() if state == DeliveryState.DEAD)

    def outbox_failing(self) -> int:
        return sum(n for (_, state), n in self.outbox.items() if state == "failing")


def _age(now: datetime, then: datetime | None) -> float:
    then = as_utc(then)
    return max(0.0, (now - then).total_seconds()) if then is not None else 0.0


async def _read(conn: AsyncConnection, queues: Sequence[str], now: datetime,
                mailbox_names: Sequence[str] = ()) -> Figures:
    inbox = {row.state: row.n for row in (await conn.execute(
        select(inbox_items.c.state, func.count().label("n"))
        .where(inbox_items.c.state.in_([ItemState.PENDING, ItemState.PROCESSING,
                                        ItemState.DEAD]))
        .group_by(inbox_items.c.state))).all()}
    # The lag: the oldest item due and not taken (the index's first entry), or
    # held by a worker whose lease ran out (a dead process's batch).
    due = (await conn.execute(
        select(func.min(inbox_items.c.next_attempt_at))
        .where(inbox_items.c.state == ItemState.PENDING,
               inbox_items.c.next_attempt_at <= now))).scalar()
    stranded = (await conn.execute(
        select(func.min(inbox_items.c.lease_until))
        .where(inbox_items.c.state == ItemState.PROCESSING,
               inbox_items.c.lease_until < now))).scalar()
    lag = max(_age(now, due), _age(now, stranded))
    live = (DeliveryState.PENDING, DeliveryState.SENDING, DeliveryState.DEAD)
    failing = and_(outbox.c.state == DeliveryState.PENDING, outbox.c.attempts > 0)
    out: dict[tuple[str, str], int] = {}
    for row in (await conn.execute(
            select(outbox.c.kind, outbox.c.state, func.count().label("n"),
                   func.count().filter(outbox.c.attempts > 0).label("retried"))
            .where(outbox.c.state.in_(live)).group_by(outbox.c.kind, outbox.c.state))).all():
        out[(row.kind, row.state)] = row.n
        if row.state == DeliveryState.PENDING and row.retried:
            out[(row.kind, "failing")] = row.retried
    error = None
    if any(state == "failing" for _, state in out):
        error = (await conn.execute(
            select(outbox.c.last_error).where(failing)
            .order_by(outbox.c.next_attempt_at.desc()).limit(1))).scalar()
    check = (await conn.execute(
        select(func.min(requests.c.next_check_at))
        .where(requests.c.next_check_at <= now, requests.c.status.not_in(DONE)))).scalar()
    return Figures(at=now, inbox=inbox, lag_seconds=lag, outbox=out,
                   outbox_failing_error=error, scheduler_late_seconds=_age(now, check),
                   queues=await _queues(conn, queues, now),
                   mailboxes=await _mailboxes(conn, mailbox_names))


async def _mailboxes(conn: AsyncConnection, names: Sequence[str]) -> dict[str, MailboxFigures]:
    if not names:
        return {}
    rows = (await conn.execute(
        select(*(mailbox_rows.c[column] for column in (
            "name", "holder", "lease_until", "connected", "last_fetch_at", "updated_at",
            "last_error", "failing_since", "behind", "fetched")))
        .where(mailbox_rows.c.name.in_(list(names))))).all()
    # SQLite hands timestamps back naive (written in UTC): as_utc, to compare with now.
    return {r.name: MailboxFigures(
        name=r.name, holder=r.holder, lease_until=as_utc(r.lease_until),
        connected=bool(r.connected), last_fetch_at=as_utc(r.last_fetch_at),
        reported_at=as_utc(r.updated_at), last_error=r.last_error,
        failing_since=as_utc(r.failing_since), behind=int(r.behind or 0),
        fetched=int(r.fetched or 0)) for r in rows}


async def _queues(conn: AsyncConnection, names: Sequence[str],
                  now: datetime) -> tuple[QueueFigures, ...]:
    free = or_(requests.c.claimed_by.is_(None), requests.c.claim_until < now)
    expired = and_(requests.c.claimed_by.is_not(None), requests.c.claim_until < now)
    query = (
        select(requests.c.queue, func.count().label("open"),
               func.count().filter(free).label("unclaimed"),
               func.min(requests.c.created_at).filter(free).label("oldest"),
               func.count().filter(requests.c.due_at < now).label("past_due"),
               func.count().filter(expired).label("expired"))
        .where(requests.c.status.in_(WORKABLE), requests.c.queue.in_(list(names)))
        .group_by(requests.c.queue))
    found = {row.queue: row for row in (await conn.execute(query)).all()}
    result = []
    for name in names:
        row = found.get(name)
        result.append(QueueFigures(
            name=name, open=row.open if row else 0, unclaimed=row.unclaimed if row else 0,
            oldest_waiting_seconds=_age(now, row.oldest) if row else 0.0,
            past_due=row.past_due if row else 0, expired_claims=row.expired if row else 0))
    return tuple(result)


async def figures(engine: AsyncEngine, queues: Sequence[str], *,
                  mailboxes: Sequence[str] = (), now: datetime | None = None) -> Figures:
    """Every figure, read now (the health check's; /metrics goes through `Lead`);
    `mailboxes`: the configured mailboxes' names."""
    async with connection(engine) as conn:
        return await _read(conn, queues, now or utcnow(), mailboxes)


async def mailbox_figures(engine: AsyncEngine, names: Sequence[str]) -> dict[str, MailboxFigures]:
    """The named mailboxes' rows alone (`intake mailboxes`)."""
    async with connection(engine) as conn:
        return await _mailboxes(conn, names)


class Lead:
    """The one process per database that reads the figures for /metrics.

    On PostgreSQL it is the holder of a session advisory lock, on a connection of
    its own kept for it (the figures are read on it too); the lock goes with the
    connection, so when the holder dies another process takes it at its next try.
    SQLite serves one process, which always leads.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None

    @property
    def holding(self) -> bool:
        return is_sqlite(self._engine) or self._conn is not None

    async def figures(self, queues: Sequence[str],
                      mailboxes: Sequence[str] = ()) -> Figures | None:
        """The figures if this process leads (taking the lead if it is free),
        else None. A storage fault drops the lead and raises StorageUnavailable."""
        if is_sqlite(self._engine):
            return await figures(self._engine, queues, mailboxes=mailboxes)
        try:
            if self._conn is None and not await self._take():
                return None
            assert self._conn is not None
            try:
                return await _read(self._conn, queues, utcnow(), mailboxes)
            finally:
                await self._conn.rollback()  # no snapshot kept open between scrapes
        except Exception as exc:
            await self.close()
            if is_storage_fault(exc):
                raise unavailable(exc) from exc
            raise

    async def _take(self) -> bool:
        conn = await self._engine.connect()
        try:
            got = (await conn.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                      {"key": LEAD_KEY})).scalar()
            await conn.rollback()
        except BaseException:
            await conn.close()
            raise
        if got:
            self._conn = conn
        else:
            await conn.close()
        return bool(got)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LEAD_KEY})
            await conn.rollback()
        except Exception:  # noqa: BLE001, S110 - a broken connection held no lock anyway
            await conn.invalidate()
        finally:
            await conn.close()
