"""The pipeline: committed inbox items become requests, messages and events.

Workers claim items with a lease, build the request (parse, thread, then route
to the default queue until routing rules exist) and store it in one transaction. A
failing item is retried with backoff (tenacity); after the last attempt it is
dead-lettered with its error, visible and replayable with `intake reprocess`.

A bad item never holds up the others: its failure is found at once (a build
that raises is the item's own; a batch the database refuses is split in halves
down to the item at fault, the others stored at once) and the item is handed
back with a time for its next attempt, never retried with a sleep in the
worker's path. A storage fault defers the items it met, without counting as
one of their attempts; a deferral the database refused too is owed, and made
before the worker claims again.

A claim is bounded by bytes as well as by count, its lease is renewed while
the worker is on it, and every change of an item's state is made under the
worker's own claim (storage/processing.py): a worker whose lease ran out
changes nothing. Large mail is parsed off the event loop
(gateway/pipeline/parsing.py), and the loop is let run between items.

Mail from a listener whose `sender_auth` is verify is checked (SPF, DKIM, ARC,
DMARC: DNS look-ups) before its batch is built: the batch's messages at once,
at most `[sender_auth] concurrency` of them, under the batch's lease. One
verifier per pipeline, made when the first such item comes, closed at stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import RetryCallState, wait_exponential_jitter

from domain.errors import GatewayError
from gateway import logs, metrics
from gateway.config import Config
from gateway.delivery.subscribers import announced
from gateway.pipeline.allocator import return_large_buffers
from gateway.pipeline.builder import Builder
from gateway.pipeline.building import (
    api_request,
    email_request,
    form_request,
    sender_auth_mode,
)
from gateway.pipeline.parsing import MailParser
from gateway.pipeline.placement import place
from gateway.pipeline.stages import Started, Turns, build_all_yielding, finish
from gateway.rules_in_force import RulesHolder
from gateway.sender_auth import Verifier
from parsers.auth_results import Verdicts
from parsers.records import ParsedEmail
from routing.api import RuleSet
from routing.sla import SlaConfig
from storage.engine import utcnow
from storage.errors import described, refuses_value
from storage.processing import (
    ClaimedItem,
    claim_items,
    defer_items,
    fail_item,
    new_claim,
    release_lost_claims,
    renew_claims,
)
from storage.records import NewRequest, Placed
from storage.store import Stored, complete_items

log = logging.getLogger("intake.pipeline")

# A claim counts as an attempt (a deferral for a storage fault gives it back);
# past this many claims per allowed attempt, an item that never finishes (it
# kills its process) is dead-lettered.
CLAIMS_PER_ATTEMPT = 4

Work = list[tuple[ClaimedItem, NewRequest]]


# By channel, the builder of an item's request, stage by stage (gateway/pipeline/stages.py).
BUILDERS: dict[str, Callable[..., Started]] = {
    "smtp": email_request, "lmtp": email_request, "imap": email_request, "api": api_request,
    "form": form_request}
EMAIL_CHANNELS = frozenset({"smtp", "lmtp", "imap"})
# Parsing and building in place give the event loop a turn after this long, so
# the process's connections are served during a batch (a stage of one item
# takes 0.05 to 0.2 ms; of a large mail, more).
BUILD_SLICE_SECONDS = 0.002
# Leases are renewed this many times per lease: one lost renewal still leaves time.
RENEWALS_PER_LEASE = 3
LOST_CLAIMS_KEPT = 256
# One message's verification may take this many DNS timeouts (SPF's ten
# look-ups, each signature's key, DMARC, ARC) before it is given up as temperror.
VERIFY_TIMEOUTS = 30


def build_steps(item: ClaimedItem, config: Config, rules: RuleSet,
                sla: SlaConfig | None = None, parsed: ParsedEmail | None = None,
                verified: Verdicts | None = None) -> Started:
    """What the item becomes, stage by stage; an email's `parsed` mail when it
    was parsed already, and its `verified` verdicts when its listener verifies
    senders."""
    builder = BUILDERS[item.channel]
    if verified is not None:
        return builder(item, config, rules, sla, parsed, verified)
    if parsed is not None:
        return builder(item, config, rules, sla, parsed)
    return builder(item, config, rules, sla)


def build_request(item: ClaimedItem, config: Config, rules: RuleSet,
                  sla: SlaConfig | None = None, parsed: ParsedEmail | None = None,
                  verified: Verdicts | None = None) -> NewRequest:
    """What the item becomes, built whole (`build_steps` at once)."""
    return finish(build_steps(item, config, rules, sla, parsed, verified))


def _peer_ip(peer: object) -> str | None:
    """The client's IP address from an item's `peer` ([host, port] or text)."""
    host = peer[0] if isinstance(peer, list | tuple) and peer else peer
    if not isinstance(host, str):
        return None
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _unverified(reason: str) -> Verdicts:
    """What a verification that did not finish says: nothing could be checked."""
    log.warning("sender authentication did not finish: %s", reason)
    return Verdicts(source="verified", spf="temperror", dkim="temperror", dmarc="temperror")


class Pipeline:
    def __init__(self, *, engine: AsyncEngine, config: Config,
                 rules: RulesHolder | None = None,
                 on_new_work: Callable[[str], None] | None = None,
                 on_stored: Callable[[], None] | None = None,
                 verifier: Verifier | None = None, build_process: bool = False) -> None:
        """`on_new_work` is told the queue of each request now waiting for an agent
        (a new one, or one a customer's reply reopened);
        `on_stored` is told after a store that queued outbox rows (acknowledgements,
        subscribers' events);
        `verifier`: the one to check senders with (tests; its caller closes it),
        else one is made when a listener's mail needs it, and closed at stop.
        `build_process`: build batches in a child process (gateway/pipeline/builder.py)."""
        self._engine = engine
        self._config = config
        self.rules = rules or RulesHolder.load(config)
        self._on_new_work = on_new_work
        self._on_stored = on_stored
        self._wake = asyncio.Event()
        self._stopping = False
        self._running = 0
        self.processed = 0
        # Items a storage fault met whose deferral failed too: deferred first
        # once the database answers again, not left to their leases.
        self._owed: dict[int, ClaimedItem] = {}
        # Claims whose answer was lost (a commit can go through unseen): what
        # they took is handed back the same way, not left to its lease. The
        # newest LOST_CLAIMS_KEPT (a long outage fails a claim at every poll,
        # each taking nothing); older ones are left to their leases.
        self._lost_claims: dict[str, None] = {}
        settings = config.pipeline
        # Large mail passes through this process (intake and pipeline alike):
        # its buffers go back to the system when freed (gateway/pipeline/allocator.py).
        return_large_buffers()
        self._parser = MailParser(processes=settings.parse_processes,
                                  offload_bytes=settings.parse_offload_bytes,
                                  timeout=settings.parse_timeout_seconds)
        self._wait = wait_exponential_jitter(multiplier=settings.backoff_initial_seconds,
                                             max=settings.backoff_max_seconds,
                                             jitter=settings.backoff_initial_seconds)
        self._builder = (Builder(timeout=settings.parse_timeout_seconds) if build_process
                         else None)
        self._given_verifier = verifier
        self._verifier: Verifier | None = None  # made here, closed here

    def wake(self) -> None:
        """Called after new items are committed, so idle workers start at once."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _claim(self) -> list[ClaimedItem]:
        settings = self._config.pipeline
        claim = new_claim()
        try:
            return await claim_items(self._engine, limit=settings.batch_size,
                                     lease_seconds=settings.lease_seconds,
                                     max_bytes=settings.batch_bytes, claim=claim)
        except Exception:
            self._lost_claims[claim] = None  # it may have taken items all the same
            while len(self._lost_claims) > LOST_CLAIMS_KEPT:
                del self._lost_claims[next(iter(self._lost_claims))]
            raise

    async def run_worker(self) -> None:
        """Claim and process batches until stopped; on stop, drain what is pending."""
        self._running += 1
        try:
            await self._work()
        finally:
            self._running -= 1
            if self._running == 0 and self._stopping:
                await asyncio.shield(self._close())

    async def _work(self) -> None:
        settings = self._config.pipeline
        if self._builder is not None:
            self._builder.prepare(self.rules.config)
        while True:
            self._wake.clear()  # before claiming, so a commit during the claim still wakes us
            try:
                await self._settle_owed()
                items = await self._claim()
            except Exception as exc:  # noqa: BLE001 - database down: wait and try again
                log.warning("claiming inbox items failed: %s", exc)
                items = []
                if self._stopping:
                    return
            if items:
                await self.process_batch(items)
            if self._stopping:
                if not items:
                    return  # drained (the caller bounds how long this may take)
                continue
            if len(items) < settings.batch_size:
                if not items:
                    try:
                        await asyncio.wait_for(self._wake.wait(), settings.poll_seconds)
                    except TimeoutError:
                        pass
                if not self._stopping:
                    # Let a few more items arrive: a batch costs about the same
                    # whether it holds one item or thirty.
                    await asyncio.sleep(settings.linger_seconds)

    async def drain(self) -> int:
        """Process what is waiting now, inline, until nothing is left to claim.

        For a caller that wants the requests at once instead of from a worker (a
        test of the HTTP app alone). Items that fail are handed back for a later
        attempt, deferred or dead-lettered as by a worker (one that falls due while
        this runs is taken again, up to its last attempt). Returns how many were
        stored.
        """
        before = self.processed
        try:
            await self._settle_owed()
            while items := await self._claim():
                await self.process_batch(items)
        finally:
            await self._close()
        return self.processed - before

    async def _close(self) -> None:
        """Give back the parser's processes and the verifier's sockets (a later
        batch makes them again)."""
        verifier, self._verifier = self._verifier, None
        try:
            if verifier is not None:
                await verifier.close()
        finally:
            await self._parser.close()
            if self._builder is not None:
                await self._builder.close()

    async def process_batch(self, items: list[ClaimedItem]) -> None:
        """Store a claimed batch in one transaction (two when some senders'
        verification outlasts one DNS timeout); isolate what fails at once.

        One transaction per batch is the cheap path under load. An item that
        cannot be built fails alone; a batch that cannot be stored is split
        (`_store`). Neither waits: the failed item's next attempt is scheduled.
        The batch's lease is renewed until it is stored.
        """
        started = time.perf_counter()
        # One rule set for the whole batch, even mid-reload (the config in force
        # carries the reloaded escalations that set a new request's first check).
        config = self.rules.config
        async with self._renewing(items):
            checks = self._start_verifying(items, config)
            try:
                # Senders whose DNS answers slowly must not hold up the others:
                # what is checked within one DNS timeout is stored at once, the
                # slow ones once they are done (or their deadline says temperror).
                if checks:
                    await asyncio.wait(checks.values(),
                                       timeout=config.sender_auth.timeout_seconds)
                slow = {item_id for item_id, check in checks.items() if not check.done()}
                await self._build_and_store([i for i in items if i.id not in slow], config,
                                            {item_id: check.result() for item_id, check
                                             in checks.items() if item_id not in slow})
                if slow:
                    await asyncio.wait([checks[item_id] for item_id in slow])
                    await self._build_and_store([i for i in items if i.id in slow], config,
                                                {item_id: checks[item_id].result()
                                                 for item_id in slow})
            finally:
                for check in checks.values():
                    check.cancel()
        metrics.PIPELINE.batch(len(items), started)

    async def _build_and_store(self, items: Sequence[ClaimedItem], config: Config,
                               verified: dict[int, Verdicts]) -> None:
        """Build each item (its own failure recorded alone), then store them together."""
        settings = self._config.pipeline
        rules, sla = config.rules, config.sla
        ready: list[ClaimedItem] = []
        for item in items:
            if item.attempts > settings.max_attempts * CLAIMS_PER_ATTEMPT:
                # Claimed this often without finishing: it probably kills the process.
                await self._dead(item, f"claimed {item.attempts} times without completing")
            else:
                ready.append(item)
        built = await self._built_elsewhere(ready, config, verified)
        # Mail is parsed first (a large one off the loop: gateway/pipeline/parsing.py),
        # then the rest is built here a stage at a time (gateway/pipeline/stages.py).
        here: list[tuple[ClaimedItem, ParsedEmail | None]] = []
        failed: dict[int, Exception] = {}
        turns = Turns(BUILD_SLICE_SECONDS)
        for item in ready:
            if item.id in built:
                continue
            if item.channel not in EMAIL_CHANNELS:
                here.append((item, None))
                continue
            try:
                here.append((item, await self._parser.parse(item.raw)))
            except Exception as exc:  # noqa: BLE001 - the item's own failure, recorded
                failed[item.id] = exc
            await turns.take()
        outcomes = await build_all_yielding(
            [functools.partial(build_steps, item, config, rules, sla, parsed,
                               verified.get(item.id)) for item, parsed in here], turns)
        for (item, _), outcome in zip(here, outcomes, strict=True):
            if isinstance(outcome, Exception):
                failed[item.id] = outcome
            else:
                built[item.id] = outcome
        work: Work = []
        for item in ready:
            if item.id in failed:
                await self._failed(item, failed[item.id])
            elif item.id in built:
                work.append((item, built[item.id]))
        await self._store(work)

    async def _built_elsewhere(self, items: Sequence[ClaimedItem], config: Config,
                               verified: dict[int, Verdicts]) -> dict[int, NewRequest]:
        """What the build process built, by item id (large mail stays with the
        parser's own processes); what is missing is built here."""
        if self._builder is None:
            return {}
        offload = self._config.pipeline.parse_offload_bytes
        chosen = [item for item in items
                  if item.channel not in EMAIL_CHANNELS or len(item.raw) < offload]
        built = await self._builder.build(chosen, config, verified)
        return {item.id: new for item, new in zip(chosen, built, strict=True)
                if new is not None}

    def _start_verifying(self, items: Sequence[ClaimedItem], config: Config
                         ) -> dict[int, asyncio.Task[Verdicts]]:
        """The verification of each item whose listener verifies senders, by item
        id, started: at most `concurrency` at a time. A verification that fails
        or overruns says temperror: the mail goes on, unauthenticated."""
        most = self._config.pipeline.max_attempts * CLAIMS_PER_ATTEMPT
        wanted = [item for item in items  # not one about to be dead-lettered unbuilt
                  if item.attempts <= most and sender_auth_mode(item, config) == "verify"]
        if not wanted:
            return {}
        settings = self._config.sender_auth
        verifier = self._given_verifier or self._verifier
        if verifier is None:
            verifier = self._verifier = Verifier(settings)
        limit = asyncio.Semaphore(settings.concurrency)
        deadline = settings.timeout_seconds * VERIFY_TIMEOUTS

        async def one(item: ClaimedItem) -> Verdicts:
            meta = item.meta
            async with limit:
                try:
                    return await asyncio.wait_for(verifier.verify(
                        item.raw, ip=_peer_ip(meta.get("peer")),
                        mail_from=_text(meta.get("mail_from")), helo=_text(meta.get("helo"))),
                        deadline)
                except TimeoutError:
                    return _unverified(f"inbox item {item.id}: over {deadline:g} s")
                except Exception as exc:  # noqa: BLE001 - it never raises; if it does, noted
                    # The type only: its text may quote the message's domains.
                    return _unverified(f"inbox item {item.id}: {type(exc).__name__}")

        return {item.id: asyncio.create_task(one(item)) for item in wanted}

    @contextlib.asynccontextmanager
    async def _renewing(self, items: Sequence[ClaimedItem]) -> AsyncIterator[None]:
        """Keep the items' lease while the block runs: a long batch (large mail, a
        split down to its bad item, a slow database) is not taken over."""
        renewal = asyncio.create_task(self._renew(items))
        try:
            yield
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal

    async def _renew(self, items: Sequence[ClaimedItem]) -> None:
        lease = self._config.pipeline.lease_seconds
        while True:
            await asyncio.sleep(lease / RENEWALS_PER_LEASE)
            try:
                await renew_claims(self._engine, items, lease_seconds=lease)
            except Exception as exc:  # noqa: BLE001 - tried again at the next interval
                log.warning("renewing the lease of %d inbox item(s) failed: %s", len(items),
                            described(exc))

    async def process(self, item: ClaimedItem) -> None:
        """One claimed item (as a batch of one)."""
        await self.process_batch([item])

    async def _store(self, work: Work) -> bool:
        """Store `work`; if that fails for the items (not the database), store it
        in halves, in order, down to the item at fault. False once storage fails:
        what was not stored is deferred, and the caller defers the rest."""
        if not work:
            return True
        try:
            stored = await complete_items(
                self._engine, work, place,
                ack_limits=self._config.outbound.acknowledgement_limits,
                # The queues in force (they reload): each one's reopen window.
                reopen_days={q.name: q.reopen_days for q in self.rules.config.queue},
                announce=announced(self.rules.config))
        except Exception as exc:  # noqa: BLE001 - every failure is isolated or deferred
            if isinstance(exc, GatewayError) and exc.temporary:
                # The database, not the items, is at fault: hand them back for later.
                await self._defer([item for item, _ in work], exc)
                return False
            if len(work) == 1:
                await self._failed(work[0][0], exc)
                return True
            # The error as logs may show it (storage.errors.described): a driver's
            # text can quote the statement's values, addresses and subjects.
            log.info("batch of %d failed (%s); splitting it", len(work), described(exc))
            middle = len(work) // 2
            halves = (work[:middle], work[middle:])
            for index, half in enumerate(halves):
                if not await self._store(half):
                    for later in halves[index + 1:]:
                        await self._defer([item for item, _ in later], exc)
                    return False
            return True
        self.processed += sum(1 for result in stored if result.kind is not None)
        for (item, new), result in zip(work, stored, strict=True):
            if result.kind is not None:
                verdicts = new.message.flags.get("authentication")
                if verdicts is not None and result.kind in (Placed.NEW, Placed.THREAD):
                    metrics.PIPELINE.authenticated(verdicts)  # once per message kept
                # outcome: new (with its status), thread, duplicate, stored before
                outcome = (f"new {new.status}" if result.kind == Placed.NEW
                           else str(result.kind))
                logs.item("routed", reference=result.reference, channel=item.channel,
                          queue=new.queue if result.kind == Placed.NEW else None,
                          outcome=outcome)
        self._announce(stored)
        return True

    async def _failed(self, item: ClaimedItem, exc: Exception) -> None:
        """An attempt failed for the item itself: retried later, with backoff, until
        its last attempt; dead-lettered then, or at once when retrying cannot help."""
        error = f"{type(exc).__name__}: {exc}"
        attempts = self._config.pipeline.max_attempts
        permanent = isinstance(exc, GatewayError) and not exc.temporary or refuses_value(exc)
        if permanent or item.attempts >= attempts:
            log.warning("inbox item %s dead-lettered (attempt %d of %d): %s", item.id,
                        item.attempts, attempts, described(exc))
            await self._dead(item, error)
            return
        delay = self._delay(item.attempts)
        log.info("inbox item %s failed (attempt %d of %d), next in %.1f s: %s", item.id,
                 item.attempts, attempts, delay, described(exc))
        metrics.PIPELINE.retried()
        try:
            if not await fail_item(self._engine, item.id, error, dead=False,
                                   retry_at=utcnow() + timedelta(seconds=delay),
                                   claim=item.claim):
                log.info("inbox item %s was taken over by another claim; left to it", item.id)
        except Exception as failure:  # noqa: BLE001 - lease expiry will bring it back
            log.error("could not reschedule inbox item %s: %s", item.id, described(failure))

    def _delay(self, attempt: int) -> float:
        """tenacity's exponential backoff with jitter, as the outbox uses it."""
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = attempt
        return float(self._wait(state))

    def _announce(self, stored: list[Stored]) -> None:
        # The outbox is woken only for rows it has to send: a wake is a claim.
        if self._on_stored is not None and any(result.queued for result in stored):
            self._on_stored()
        for result in stored:
            if result.new_work is not None and self._on_new_work is not None:
                self._on_new_work(result.new_work)

    async def _defer(self, items: list[ClaimedItem], exc: Exception) -> None:
        """Hand items back after a storage fault (not their attempt), in one
        statement; if the database refuses that too, it is owed (`_settle_owed`)."""
        error = f"{type(exc).__name__}: {exc}"
        log.warning("%d inbox item(s) deferred, storage fault: %s", len(items),
                    described(exc))
        try:
            await defer_items(self._engine, items, error, retry_at=self._deferred_until())
        except Exception as failure:  # noqa: BLE001 - owed, made before the next claim
            log.error("could not defer %d inbox item(s) yet: %s", len(items),
                      described(failure))
            self._owed |= {item.id: item for item in items}

    async def _settle_owed(self) -> None:
        """Make the deferrals the database refused earlier (raises while it still
        does). Only items still under this worker's claims change: an item another
        worker took over since, or one whose store did commit after all, stays.
        Claims that failed are handed back too (most took nothing)."""
        if self._lost_claims:
            # Due at once: the database answers again (this statement did).
            if released := await release_lost_claims(self._engine, list(self._lost_claims),
                                                     retry_at=utcnow()):
                log.info("%d inbox item(s) of a claim whose answer was lost handed back",
                         released)
            self._lost_claims = {}
        if self._owed:
            await defer_items(self._engine, list(self._owed.values()),
                              "deferred after a storage fault", retry_at=self._deferred_until())
            log.info("%d inbox item(s) deferred after the storage fault passed",
                     len(self._owed))
            self._owed = {}

    def _deferred_until(self) -> datetime:
        return utcnow() + timedelta(seconds=self._config.pipeline.backoff_max_seconds)

    async def _dead(self, item: ClaimedItem, error: str) -> None:
        metrics.PIPELINE.dead_lettered()
        try:
            if not await fail_item(self._engine, item.id, error, dead=True, claim=item.claim):
                log.info("inbox item %s was taken over by another claim; left to it", item.id)
        except Exception as exc:  # noqa: BLE001 - lease expiry will bring it back
            log.error("could not dead-letter inbox item %s: %s", item.id, described(exc))
