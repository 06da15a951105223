"""Fetching one IMAP mailbox, exactly once, for as long as the process runs.

A pass over each folder: SELECT it, compare UIDVALIDITY with what the database
holds, do the after-fetch actions still owed from before a crash, then fetch
every UID from the folder's `next_uid` on (UIDs, never \\Seen: mail kept on
the server and read by a person is not missed), in batches committed with
their position (storage/mailboxes.py), and only after each commit move, flag
or delete those messages on the server (in runs of UIDs, not a command per
batch). A pass capped at `max_per_run` hands its batches still committing to
the next pass, which fetches on meanwhile. Between passes it waits in IDLE on
the first folder when the server has it (new mail is fetched at once), or
polls. Failures are reported to the database at once (the health check and
`intake mailboxes` read them) and retried with backoff (tenacity).

One process fetches a mailbox at a time (a lease in the database, renewed
while it works and inside every batch's transaction); another takes over when
the holder dies and its lease runs out.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import random
import re
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential_jitter,
)

from gateway import metrics
from gateway.config import Config
from gateway.config.sections import MailboxSection
from gateway.mailbox.client import AuthFailed, ImapError, Session, Sized
from gateway.mailbox.oauth import TokenError, Tokens
from storage import mailboxes as store
from storage.engine import is_sqlite
from storage.errors import StorageUnavailable, described
from storage.mailboxes import Fetched, LeaseLost, OutOfOrder

log = logging.getLogger("intake.mailbox")

# A batch: this many messages or bytes at most per FETCH and per commit (each
# batch costs a FETCH and a transaction of several statements, whatever its size).
BATCH_MESSAGES = 250
BATCH_BYTES = 8 * 1024 * 1024
# Batches being committed at once (each on its own connection; on SQLite they
# take turns): the next is downloaded meanwhile.
STORES_IN_FLIGHT = 3
# Stored messages acted on (moved, flagged, deleted) in one command once this
# many wait, else at the end of the pass: each command is a round trip the
# downloads would wait behind.
ACT_AT_ONCE = 500
# Of a message over the size limit, this much of its header section is kept.
HEADER_LIMIT = 64 * 1024
# IDLE is ended and started again at least this often (RFC 2177: before 29 minutes).
IDLE_MAX_SECONDS = 25 * 60
# A connection that worked this long and then failed is made again at once.
RECONNECT_AFTER = 30.0
# Failures worth retrying: the server, the network, the token endpoint, the database.
RETRIED = (ImapError, TokenError, OSError, TimeoutError, StorageUnavailable, OutOfOrder)

# Printable ASCII only: a NUL or a control character is no Message-ID (and no
# database column takes a NUL).
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[!-=?-~]{1,990}>)", re.IGNORECASE | re.MULTILINE)


def holder_name() -> str:
    """Who holds a lease: host, process and a random part (a pid can be reused)."""
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{random.getrandbits(32):08x}"


def message_id(raw: bytes) -> str | None:
    """The Message-ID of the header section, if it has one (for de-duplication only)."""
    # Searched in place up to the header section's end (no copy of the body).
    end = raw.find(b"\r\n\r\n")
    end = len(raw) if end < 0 else end
    bare_end = raw.find(b"\n\n", 0, end)
    match = _MESSAGE_ID.search(raw, 0, end if bare_end < 0 else bare_end)
    return match.group(1).decode("ascii", "replace") if match else None


def batches(sized: Sequence[Sized], limit: int) -> Iterator[list[Sized]]:
    """Consecutive runs of messages within BATCH_MESSAGES and BATCH_BYTES (a
    too-large one counts only its header part)."""
    batch: list[Sized] = []
    size = 0
    for message in sized:
        cost = min(message.size, HEADER_LIMIT) if message.size > limit else message.size
        if batch and (len(batch) >= BATCH_MESSAGES or size + cost > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(message)
        size += cost
    if batch:
        yield batch


@dataclass(frozen=True, slots=True)
class _Storing:
    """A batch being committed: its task, last UID and the digests of its bytes."""

    task: asyncio.Task[list[int]]
    last: int
    digests: set[str]


@dataclass(slots=True)
class _Carried:
    """A capped pass's batches still committing, handed to the next pass of
    their folder: it fetches the `rest` of the UIDs its search found (those
    after the last one handed to a commit) meanwhile, on the same selection."""

    folder: str
    uidvalidity: int
    storing: deque[_Storing]
    committed: list[int]  # stored, not acted on yet
    rest: list[int]


async def _drain(storing: deque[_Storing]) -> list[int]:
    """Wait for every commit in flight, in order; the UIDs now owed an action.
    Each is taken off only once done: cancelled meanwhile, it is still there
    for `_settled`."""
    owed: list[int] = []
    while storing:
        owed += await asyncio.shield(storing[0].task)
        storing.popleft()
    return owed


async def _settled(storing: deque[_Storing] | None, *tasks: asyncio.Task[Any] | None) -> None:
    """Wait for commits in flight whatever their outcome (their callers see it)."""
    for task in [*(pending.task for pending in storing or ()), *tasks]:
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(task)


class _Reconnect(Exception):
    """A working session ended: connect again at once (the backoff starts over)."""


class MailboxFetcher:
    """Fetches `section`'s folders into the inbox while this process holds it."""

    def __init__(self, *, engine: AsyncEngine, config: Config, section: MailboxSection,
                 on_commit: Callable[[], None] | None = None,
                 env: Mapping[str, str] | None = None, holder: str | None = None) -> None:
        self._engine = engine
        # When this connection last looked for a folder's owed actions (by folder
        # and UIDVALIDITY). Between looks a pass acts on all it stores, or fails
        # and connects again; a look at least once a lease still finds what
        # another process left if it held the mailbox meanwhile (it can only
        # after our lease ran out).
        self._owed_checked: dict[tuple[str, int], float] = {}
        # A capped pass's batches still committing, for the next pass.
        self._carried: _Carried | None = None
        self._section = section
        self._limit = config.intake.max_message_bytes
        self._on_commit = on_commit
        self._env = os.environ if env is None else env
        self._fixed_holder = holder
        self.holder = holder or holder_name()
        # SQLite has one writer: commits in flight would only queue ahead of the
        # intake's own; on PostgreSQL they overlap the download.
        self._in_flight = 1 if is_sqlite(engine) else STORES_IN_FLIGHT
        self._tokens = Tokens(engine, section, env=self._env) if section.oauth2 else None
        meta: dict[str, Any] = {"mailbox": section.name,
                                "rcpt_tos": list(section.addresses) or (
                                    [section.user.lower()] if "@" in section.user else [])}
        if section.mode == "archive":
            meta["archive"] = True
        self._meta = meta
        self._beat: Callable[[], None] = lambda: None
        self.stored = 0  # inbox items this fetcher committed
        self.passes = 0

    @property
    def name(self) -> str:
        return self._section.name

    async def run(self, beat: Any = None) -> None:
        """Forever: hold the mailbox, fetch it, report; a supervised task."""
        if beat is not None:
            self._beat = beat.beat
        # A new name for each run: commits of a run cancelled by the supervisor
        # cannot pass the lease fence of the run that replaced it.
        self.holder = self._fixed_holder or holder_name()
        section = self._section
        try:
            while True:
                self._beat()
                try:
                    held = await store.hold(self._engine, self.name, self.holder,
                                            section.lease_seconds)
                except StorageUnavailable as exc:
                    log.warning("mailbox %s: cannot reach the database: %s", self.name, exc)
                    held = False
                if not held:  # another process fetches it (or the database is away)
                    await asyncio.sleep(section.lease_seconds / 3 * (0.8 + 0.4 * random.random()))
                    continue
                try:
                    await self._while_held(self._fetch_with_retries())
                except LeaseLost:
                    log.warning("mailbox %s: the lease was lost; another process fetches it",
                                self.name)
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await store.release(self._engine, self.name, self.holder)

    async def _while_held(self, work: Any) -> None:
        """Run `work` while renewing the lease; LeaseLost once another has it."""
        main = asyncio.current_task()
        assert main is not None
        lost = False

        async def renew() -> None:
            nonlocal lost
            while True:
                await asyncio.sleep(self._section.lease_seconds / 3)
                try:
                    still = await store.hold(self._engine, self.name, self.holder,
                                             self._section.lease_seconds)
                except StorageUnavailable:
                    continue  # each commit checks the lease itself
                if not still:
                    lost = True
                    main.cancel()
                    return

        renewing = asyncio.create_task(renew(), name=f"mailbox {self.name} lease")
        try:
            await work
        except asyncio.CancelledError:
            if lost:
                main.uncancel()
                raise LeaseLost(self.name) from None
            raise
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing

    async def _fetch_with_retries(self) -> None:
        section = self._section
        while True:
            retrying = AsyncRetrying(
                wait=wait_exponential_jitter(multiplier=section.backoff_initial_seconds,
                                             max=section.backoff_max_seconds,
                                             jitter=section.backoff_initial_seconds),
                retry=retry_if_exception_type(RETRIED), before_sleep=self._failed,
                reraise=True)
            with contextlib.suppress(_Reconnect):
                async for attempt in retrying:
                    with attempt:
                        await self._connected()

    async def _failed(self, state: RetryCallState) -> None:
        """Reported at once: the health check names the mailbox and the error."""
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, StorageUnavailable | OSError | TimeoutError):
            error = f"{type(exc).__name__}: {described(exc)}"
        else:
            error = str(exc) or type(exc).__name__
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning("mailbox %s: %s; trying again in %.1f s", self.name, error, wait)
        self._beat()
        with contextlib.suppress(Exception):
            await store.report(self._engine, self.name, connected=False, error=error)

    async def _login(self) -> Session:
        section = self._section
        if self._tokens is None:
            name = section.password_env
            password = self._env.get(name) if name else None
            if not password:
                raise AuthFailed(f"the environment variable {name} (password_env) is not set")
            return await Session.open(section, password=password)
        token = await self._tokens.access_token()
        try:
            return await Session.open(section, token=token)
        except AuthFailed:
            self._tokens.forget()  # it may have been revoked early: one fresh token
            return await Session.open(section, token=await self._tokens.access_token())

    async def _connected(self) -> None:
        """One connection: passes, and IDLE or polling between them. Ends (by
        `_Reconnect`: connect again at once) only when a connection that worked
        for a while fails; any other failure waits its backoff."""
        section = self._section
        session = await self._login()
        started = time.monotonic()
        self._owed_checked = {}  # a new connection looks for owed actions again
        reporting: asyncio.Task[None] | None = None
        try:
            if section.after == "move" and section.move_to:
                await session.create(section.move_to)
            worked = False
            while True:
                try:
                    behind, acted = await self._pass(session)
                    if reporting is not None:
                        await reporting  # the report before lands first
                        reporting = None
                except RETRIED as exc:
                    await _settled(None, reporting)  # a failure is reported after it
                    await self._lasted(worked, started, exc)
                    raise
                worked = True
                self.passes += 1
                report = store.report(self._engine, self.name, connected=True, behind=behind,
                                      settled=acted)
                if self._carried is not None:
                    # The batches still committing hold the mailbox's row until
                    # their commits: the next pass goes on meanwhile.
                    reporting = asyncio.create_task(report)
                else:
                    await report
                self._beat()
                if behind:
                    continue  # a capped first fetch: the next batch at once
                try:
                    await self._wait(session)
                except RETRIED as exc:
                    await self._lasted(worked, started, exc)
                    raise
        finally:
            # Not acted on: left owed, the next connection does it.
            carried, self._carried = self._carried, None
            await _settled(carried.storing if carried else None, reporting)
            await session.close()

    async def _lasted(self, worked: bool, started: float, exc: BaseException) -> None:
        """A connection that worked for RECONNECT_AFTER seconds and then failed
        is connected again at once (the failure reported first); one that fails
        sooner waits its backoff, so a server that fails every session is not
        hammered with logins."""
        if worked and time.monotonic() - started >= RECONNECT_AFTER:
            log.info("mailbox %s: the connection ended (%s); connecting again", self.name,
                     exc)
            with contextlib.suppress(Exception):
                await store.report(self._engine, self.name, connected=False,
                                   error=str(exc) or type(exc).__name__)
            raise _Reconnect() from exc

    async def _wait(self, session: Session) -> None:
        section = self._section
        if section.idle and "IDLE" in session.capabilities:
            first = section.folders[0]
            await session.select(first)
            # Mail that came after the pass looked and before this SELECT is
            # not news to the server any more: look once, then wait.
            state = await store.folder(self._engine, self.name, first)
            if state is not None and await session.uids_from(state.next_uid, section.since):
                return
            await session.idle(min(section.poll_seconds, IDLE_MAX_SECONDS))
        else:
            await asyncio.sleep(section.poll_seconds)

    async def _pass(self, session: Session) -> tuple[int, list[tuple[str, int, list[int]]]]:
        """Fetch what is new in every folder, up to `max_per_run` messages; how
        many were left for the next pass, and the UIDs acted on since their
        batches' commits, by folder (recorded with the pass's report)."""
        room = self._section.max_per_run
        behind = 0
        acted: list[tuple[str, int, list[int]]] = []
        for folder in self._section.folders:
            carried = self._carried
            if carried is not None and (carried.folder != folder
                                        or self._owed_due(folder, carried.uidvalidity)):
                acted.append(await self._finish(session))
            left, room, done = await self._folder(session, folder, room)
            behind += left
            if done[2]:
                acted.append(done)
        if not behind and self._carried is not None:
            acted.append(await self._finish(session))  # nothing left: done before waiting
        return behind, [done for done in acted if done[2]]

    def _owed_due(self, folder: str, uidvalidity: int) -> bool:
        looked = self._owed_checked.get((folder, uidvalidity))
        return looked is None or time.monotonic() - looked >= self._section.lease_seconds

    async def _finish(self, session: Session) -> tuple[str, int, list[int]]:
        """The carried batches committed and acted on (their folder is still
        the one selected: this comes before any other is)."""
        carried, self._carried = self._carried, None
        assert carried is not None
        try:
            committed = carried.committed + await _drain(carried.storing)
        finally:
            await _settled(carried.storing)
        return carried.folder, carried.uidvalidity, await self._act(session, committed)

    async def _folder(self, session: Session, folder: str, room: int
                      ) -> tuple[int, int, tuple[str, int, list[int]]]:
        section = self._section
        # Batches of this folder from the pass before, still committing.
        carried, self._carried = self._carried, None
        # Batches are downloaded while the ones before are committed (up to
        # STORES_IN_FLIGHT: the database's time hides behind the server's).
        # Committed batches are acted on together, ACT_AT_ONCE UIDs or the
        # pass's last at a time (one command for a run of UIDs, not one between
        # every two downloads), and that is recorded with a later commit or
        # the pass's report (done again after a crash between the two: moving,
        # flagging or deleting twice changes nothing; only a server without
        # MOVE, moved by COPY and delete, may then keep a second copy).
        storing: deque[_Storing] = carried.storing if carried else deque()
        committed: list[int] = carried.committed if carried else []  # stored, not acted on
        acted: list[int] = []
        try:
            selected = await session.select(folder)
            uidvalidity = selected.uidvalidity
            if carried is not None:
                if carried.uidvalidity != uidvalidity:  # cannot change under one selection
                    raise ImapError(f"folder {folder!r} changed its UIDVALIDITY while selected")
                # The rest of the last search: mail newer than it is found
                # by the search after it.
                uids = carried.rest
            else:
                first = await self._position(session, folder, uidvalidity)
                uids = await session.uids_from(first, section.since)
            taken = uids[:room]
            sizes = await session.sizes(taken, dates=section.mode == "archive")
            if missing := sorted(set(taken) - {s.uid for s in sizes}):
                # Expunged since the search: gone, and skipped. Still there: the
                # server will not say; stop before it (never skip over a message).
                if kept := await self._still_there(session, folder, missing):
                    sizes = [s for s in sizes if s.uid < kept]
                    if not sizes:
                        raise ImapError(f"the server lists UID {kept} of {folder!r} but "
                                        "gives no size for it")
            whole = True
            for batch in batches(sizes, self._limit):
                fetched, whole = await self._download(session, folder, batch)
                digests = {m.sha256 for m in fetched}
                # The same bytes in a batch still committing: this one waits
                # for it (the unique index would hold each behind the other).
                while len(storing) >= self._in_flight or (
                        storing and any(digests & s.digests for s in storing)):
                    # Taken off only once done: cancelled meanwhile, it is still
                    # waited for below.
                    committed += await asyncio.shield(storing[0].task)
                    storing.popleft()
                if len(committed) >= ACT_AT_ONCE:
                    acted += await self._act(session, committed)
                    committed = []
                if fetched:
                    before = (storing[-1].task, storing[-1].last) if storing else None
                    task = asyncio.create_task(
                        self._store(folder, uidvalidity, fetched, acted, before))
                    storing.append(_Storing(task, fetched[-1].uid, digests))
                    acted = []
                self._beat()
                if not whole:
                    break
            if whole and storing and len(uids) > len(taken):
                # Capped, more to come: the next pass goes on from here while
                # these commit, rather than after them.
                next_uid = storing[-1].last + 1
                self._carried = _Carried(folder, uidvalidity, storing, committed,
                                         uids[bisect.bisect_left(uids, next_uid):])
                storing = deque()
            else:
                acted += await self._act(session, committed + await _drain(storing))
        finally:
            await _settled(storing)  # a step failed: let the commits end first
        return len(uids) - len(taken), room - len(taken), (folder, uidvalidity, acted)

    async def _position(self, session: Session, folder: str, uidvalidity: int) -> int:
        """Where the folder's fetch goes on from (the database's position,
        started again under a new UIDVALIDITY), owed actions done first."""
        section = self._section
        engine = self._engine
        state = await store.folder(engine, self.name, folder)
        if state is None or state.uidvalidity != uidvalidity:
            if state is not None:
                forgotten = await store.forget_owed(engine, self.name, folder, uidvalidity)
                log.warning("mailbox %s: folder %r has a new UIDVALIDITY (%d, was %d): "
                            "reading it again (%d actions owed dropped)", self.name, folder,
                            uidvalidity, state.uidvalidity, forgotten)
            state = await store.start_folder(engine, self.name, self.holder,
                                             section.lease_seconds, folder, uidvalidity)
        if self._owed_due(folder, uidvalidity):
            # Stored before, not acted on yet (a crash or failure between the two).
            owed = await store.owed(engine, self.name, folder, uidvalidity)
            if owed:
                await self._act(session, owed)
                await store.settle(engine, self.name, folder, uidvalidity, owed)
            self._owed_checked[(folder, uidvalidity)] = time.monotonic()
        return state.next_uid

    async def _still_there(self, session: Session, folder: str, missing: list[int]
                           ) -> int | None:
        """Of UIDs the server left out of a reply, the first it still lists
        (None: all were expunged meanwhile). When the very next one to fetch
        is there and will not come, that is an error: reported, and retried
        with backoff, rather than a message skipped or a loop without pause."""
        listed = set(await session.uids_from(missing[0]))
        kept = next((uid for uid in missing if uid in listed), None)
        if kept is not None:
            log.warning("mailbox %s: the server lists UID %d of %r but will not give it",
                        self.name, kept, folder)
        return kept

    async def _download(self, session: Session, folder: str,
                        batch: list[Sized]) -> tuple[list[Fetched], bool]:
        """The batch's messages (the headers of those too large), in UID order,
        up to the first that did not come back and is still there; and
        whether the whole batch came."""
        big = {s.uid for s in batch if s.size > self._limit}
        # A server's sizes are estimates on some (Exchange): a margin, then a cut.
        largest = self._limit + self._limit // 10 + HEADER_LIMIT
        small = [s for s in batch if s.uid not in big]
        bodies = {b.uid: b.raw for b in await session.bodies(
            [s.uid for s in small], largest=largest, expected=sum(s.size for s in small))}
        if big:
            bodies |= {b.uid: b.raw for b in await session.bodies(
                sorted(big), header_limit=HEADER_LIMIT, expected=len(big) * HEADER_LIMIT)}
        kept = None
        if missing := [s.uid for s in batch if s.uid not in bodies]:
            kept = await self._still_there(session, folder, missing)
        fetched = [Fetched(uid=s.uid, raw=bodies[s.uid], size=s.size,
                           message_id=message_id(bodies[s.uid]),
                           internal_date=s.internal_date, too_large=s.uid in big)
                   for s in batch if s.uid in bodies and (kept is None or s.uid < kept)]
        if kept is not None and not fetched:
            raise ImapError(f"the server lists UID {kept} of {folder!r} but will not give it")
        return fetched, kept is None

    async def _store(self, folder: str, uidvalidity: int, fetched: list[Fetched],
                     acted: list[int], before: tuple[asyncio.Task[list[int]], int] | None
                     ) -> list[int]:
        """Commit a batch (and that `acted` were acted on), after the batch
        `before` (its task and last UID) if that one is still committing; the
        UIDs whose after-fetch action is now owed."""
        stored = await store.store_fetched(
            self._engine, name=self.name, holder=self.holder,
            lease=self._section.lease_seconds, folder_name=folder, uidvalidity=uidvalidity,
            messages=fetched, meta=self._meta, settled=acted,
            after=before[1] if before else None,
            previous=asyncio.shield(before[0]) if before else None)
        self.stored += len(stored.items)
        if stored.items:
            counts = metrics.intake("imap")
            for message in fetched:
                if message.uid in stored.items:
                    counts.accepted(len(message.raw))
            if self._on_commit is not None:
                self._on_commit()
        for message in fetched:
            if message.too_large and message.uid in stored.too_large:
                log.warning("mailbox %s: UID %d of %r is over the size limit (%d bytes): "
                            "its headers were stored, the message is left in the folder",
                            self.name, message.uid, folder, message.size)
        return stored.owed

    async def _act(self, session: Session, uids: list[int]) -> list[int]:
        """The after-fetch action on stored messages; the UIDs it was done to."""
        if not uids:
            return []
        after = self._section.after
        if after == "move":
            assert self._section.move_to is not None
            await session.move(uids, self._section.move_to)
        elif after == "delete":
            await session.delete(uids)
        else:
            await session.mark_seen(uids)
        return uids
