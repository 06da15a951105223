"""Fetching one IMAP mailbox, exactly once, for as long as the process runs.

A pass over each folder: SELECT it, compare UIDVALIDITY with what the database
holds, do the after-fetch actions still owed from before a crash, then fetch
every UID from the folder's `next_uid` on (UIDs, never \\Seen: mail kept on
the server and read by a person is not missed), in batches committed with
their position (storage/mailboxes.py), and only after each commit move, flag
or delete those messages on the server. Between passes it waits in IDLE on
the first folder when the server has it (new mail is fetched at once), or
polls. Failures are reported to the database at once (the health check and
`intake mailboxes` read them) and retried with backoff (tenacity).

One process fetches a mailbox at a time (a lease in the database, renewed
while it works and inside every batch's transaction); another takes over when
the holder dies and its lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import socket
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
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
from storage.errors import StorageUnavailable, described
from storage.mailboxes import Fetched, LeaseLost, OutOfOrder

log = logging.getLogger("intake.mailbox")

# A batch: this many messages or bytes at most per FETCH and per commit.
BATCH_MESSAGES = 100
BATCH_BYTES = 8 * 1024 * 1024
# Batches being committed at once (each on its own connection; on SQLite they
# take turns): the next is downloaded meanwhile.
STORES_IN_FLIGHT = 3
# Of a message over the size limit, this much of its header section is kept.
HEADER_LIMIT = 64 * 1024
# IDLE is ended and started again at least this often (RFC 2177: before 29 minutes).
IDLE_MAX_SECONDS = 25 * 60
# Failures worth retrying: the server, the network, the token endpoint, the database.
RETRIED = (ImapError, TokenError, OSError, TimeoutError, StorageUnavailable, OutOfOrder)

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]{1,990}>)", re.IGNORECASE | re.MULTILINE)


def holder_name() -> str:
    """Who holds a lease: host, process and a random part (a pid can be reused)."""
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{random.getrandbits(32):08x}"


def message_id(raw: bytes) -> str | None:
    """The Message-ID of the header section, if it has one (for de-duplication only)."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    match = _MESSAGE_ID.search(head)
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


class _Reconnect(Exception):
    """A working session ended: connect again at once (the backoff starts over)."""


class MailboxFetcher:
    """Fetches `section`'s folders into the inbox while this process holds it."""

    def __init__(self, *, engine: AsyncEngine, config: Config, section: MailboxSection,
                 on_commit: Callable[[], None] | None = None,
                 env: Mapping[str, str] | None = None, holder: str | None = None) -> None:
        self._engine = engine
        self._section = section
        self._limit = config.intake.max_message_bytes
        self._on_commit = on_commit
        self._env = os.environ if env is None else env
        self.holder = holder or holder_name()
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
        """One connection: passes, and IDLE or polling between them. Returns
        (by `_Reconnect`) only after at least one pass worked."""
        section = self._section
        session = await self._login()
        try:
            if section.after == "move" and section.move_to:
                await session.create(section.move_to)
            worked = False
            while True:
                try:
                    behind = await self._pass(session)
                except RETRIED:
                    if worked:
                        raise _Reconnect() from None
                    raise
                worked = True
                self.passes += 1
                await store.report(self._engine, self.name, connected=True, behind=behind)
                self._beat()
                if behind:
                    continue  # a capped first fetch: the next batch at once
                try:
                    await self._wait(session)
                except RETRIED:
                    raise _Reconnect() from None
        finally:
            await session.close()

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

    async def _pass(self, session: Session) -> int:
        """Fetch what is new in every folder, up to `max_per_run` messages; how
        many were left for the next pass."""
        room = self._section.max_per_run
        behind = 0
        for folder in self._section.folders:
            left, room = await self._folder(session, folder, room)
            behind += left
        return behind

    async def _folder(self, session: Session, folder: str, room: int) -> tuple[int, int]:
        section = self._section
        engine = self._engine
        selected = await session.select(folder)
        uidvalidity = selected.uidvalidity
        state = await store.folder(engine, self.name, folder)
        if state is None or state.uidvalidity != uidvalidity:
            if state is not None:
                forgotten = await store.forget_owed(engine, self.name, folder, uidvalidity)
                log.warning("mailbox %s: folder %r has a new UIDVALIDITY (%d, was %d): "
                            "reading it again (%d actions owed dropped)", self.name, folder,
                            uidvalidity, state.uidvalidity, forgotten)
            state = await store.start_folder(engine, self.name, self.holder,
                                             section.lease_seconds, folder, uidvalidity)
        owed = await store.owed(engine, self.name, folder, uidvalidity)
        if owed:
            await self._act(session, owed)
            await store.settle(engine, self.name, folder, uidvalidity, owed)
        uids = await session.uids_from(state.next_uid, section.since)
        taken = uids[:room]
        sizes = await session.sizes(taken)
        # Batches are downloaded while the ones before are committed (up to
        # STORES_IN_FLIGHT: the database's time hides behind the server's);
        # each is acted on once its commit is done, and that is recorded with
        # a later commit (done again after a crash between the two: moving,
        # flagging or deleting twice changes nothing).
        storing: deque[tuple[asyncio.Task[list[int]], int]] = deque()
        acted: list[int] = []
        try:
            for batch in batches(sizes, self._limit):
                fetched, whole = await self._download(session, folder, batch)
                while len(storing) >= STORES_IN_FLIGHT:
                    acted += await self._act(session, await asyncio.shield(storing.popleft()[0]))
                if fetched:
                    before = storing[-1] if storing else None
                    task = asyncio.create_task(
                        self._store(folder, uidvalidity, fetched, acted, before))
                    storing.append((task, fetched[-1].uid))
                    acted = []
                self._beat()
                if not whole:
                    break
            while storing:
                acted += await self._act(session, await asyncio.shield(storing.popleft()[0]))
        finally:
            for task, _ in storing:  # a step failed: let the commits end first
                with contextlib.suppress(Exception):
                    await asyncio.shield(task)
        if acted:
            await store.settle(engine, self.name, folder, uidvalidity, acted)
        return len(uids) - len(taken), room - len(taken)

    async def _download(self, session: Session, folder: str,
                        batch: list[Sized]) -> tuple[list[Fetched], bool]:
        """The batch's messages (the headers of those too large), in UID order,
        up to the first that did not come back; and whether all came."""
        big = {s.uid for s in batch if s.size > self._limit}
        # A server's sizes are estimates on some (Exchange): a margin, then a cut.
        largest = self._limit + self._limit // 10 + HEADER_LIMIT
        bodies = {b.uid: b.raw for b in await session.bodies(
            [s.uid for s in batch if s.uid not in big], largest=largest)}
        if big:
            bodies |= {b.uid: b.raw for b in await session.bodies(
                sorted(big), header_limit=HEADER_LIMIT)}
        fetched: list[Fetched] = []
        for sized in batch:
            raw = bodies.get(sized.uid)
            if raw is None:
                # Gone between the two fetches (expunged by someone), or the
                # server did not say: stop here, the next pass looks again.
                log.info("mailbox %s: UID %d of %r did not come back; looking again later",
                         self.name, sized.uid, folder)
                return fetched, False
            fetched.append(Fetched(uid=sized.uid, raw=raw, size=sized.size,
                                   message_id=message_id(raw),
                                   internal_date=sized.internal_date,
                                   too_large=sized.uid in big))
        return fetched, True

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
