"""The pipeline: committed inbox items become requests, messages and events.

Workers claim items with a lease, build the request (parse, thread, then route
to the default queue until routing rules exist) and store it in one transaction. A
failing item is retried with backoff (tenacity); after the last attempt it is
dead-lettered with its error, visible and replayable with `intake reprocess`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import AsyncRetrying, stop_after_attempt, wait_exponential_jitter

from domain.errors import GatewayError
from gateway.config import Config
from gateway.pipeline.building import api_request, email_request, form_request
from gateway.pipeline.placement import place
from gateway.rules_in_force import RulesHolder
from routing.api import RuleSet
from routing.sla import SlaConfig
from storage.engine import utcnow
from storage.processing import ClaimedItem, claim_items, fail_item
from storage.records import NewRequest
from storage.store import Stored, complete_items

log = logging.getLogger("intake.pipeline")

# A claim counts as an attempt; a storage outage can cost a few claims per attempt.
CLAIMS_PER_ATTEMPT = 4


BUILDERS = {"smtp": email_request, "lmtp": email_request, "api": api_request,
            "form": form_request}


def build_request(item: ClaimedItem, config: Config, rules: RuleSet,
                  sla: SlaConfig | None = None) -> NewRequest:
    return BUILDERS[item.channel](item, config, rules, sla)


class Pipeline:
    def __init__(self, *, engine: AsyncEngine, config: Config,
                 rules: RulesHolder | None = None,
                 on_new_work: Callable[[str], None] | None = None,
                 on_stored: Callable[[], None] | None = None) -> None:
        """`on_new_work` is told the queue of each new request waiting for an agent;
        `on_stored` is told after each store (acknowledgements may wait in the outbox)."""
        self._engine = engine
        self._config = config
        self.rules = rules or RulesHolder.load(config)
        self._on_new_work = on_new_work
        self._on_stored = on_stored
        self._wake = asyncio.Event()
        self._stopping = False
        self.processed = 0

    def wake(self) -> None:
        """Called after new items are committed, so idle workers start at once."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run_worker(self) -> None:
        """Claim and process batches until stopped; on stop, drain what is pending."""
        settings = self._config.pipeline
        while True:
            self._wake.clear()  # before claiming, so a commit during the claim still wakes us
            try:
                items = await claim_items(self._engine, limit=settings.batch_size,
                                          lease_seconds=settings.lease_seconds)
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
        test of the HTTP app alone). Items that fail are dead-lettered or deferred
        as by a worker, so they are not claimed again here. Returns how many were
        stored.
        """
        settings = self._config.pipeline
        before = self.processed
        while items := await claim_items(self._engine, limit=settings.batch_size,
                                         lease_seconds=settings.lease_seconds):
            await self.process_batch(items)
        return self.processed - before

    async def process_batch(self, items: list[ClaimedItem]) -> None:
        """Store a claimed batch in one transaction; on any failure, item by item.

        One transaction per batch is the cheap path under load; the per-item
        path (with retries and dead-lettering) isolates a bad item.
        """
        limit = self._config.pipeline.max_attempts * CLAIMS_PER_ATTEMPT
        # One rule set for the whole batch, even mid-reload.
        rules, sla = self.rules.rules, self.rules.sla
        try:
            work = [(item, build_request(item, self._config, rules, sla)) for item in items
                    if item.attempts <= limit]
            if len(work) == len(items):
                stored = await complete_items(
                    self._engine, work, place,
                    acks_per_hour=self._config.outbound.acknowledgements_per_hour)
                self.processed += len(work)
                self._announce(stored)
                return
        except Exception as exc:  # noqa: BLE001 - retried item by item below
            log.info("batch of %d failed (%s); processing one by one", len(items), exc)
        for item in items:
            await self.process(item)

    async def process(self, item: ClaimedItem) -> None:
        settings = self._config.pipeline
        if item.attempts > settings.max_attempts * CLAIMS_PER_ATTEMPT:
            # Claimed this often without finishing: it probably kills the process.
            await self._dead(item, f"claimed {item.attempts} times without completing")
            return
        retrying = AsyncRetrying(
            stop=stop_after_attempt(settings.max_attempts),
            wait=wait_exponential_jitter(multiplier=settings.backoff_initial_seconds,
                                         max=settings.backoff_max_seconds,
                                         jitter=settings.backoff_initial_seconds),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    new = build_request(item, self._config, self.rules.rules, self.rules.sla)
                    stored = (await complete_items(
                        self._engine, [(item, new)], place,
                        acks_per_hour=self._config.outbound.acknowledgements_per_hour))[0]
        except GatewayError as exc:
            if not exc.temporary:
                log.warning("inbox item %s failed: %s", item.id, exc)
                await self._dead(item, f"{type(exc).__name__}: {exc}")
                return
            # The database, not the item, is at fault: hand it back for later.
            log.warning("inbox item %s deferred, storage fault: %s", item.id, exc)
            await self._defer(item, f"{type(exc).__name__}: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - any failure is recorded, never dropped
            log.warning("inbox item %s failed: %s", item.id, exc)
            await self._dead(item, f"{type(exc).__name__}: {exc}")
            return
        self.processed += 1
        self._announce([stored])

    def _announce(self, stored: list[Stored]) -> None:
        if self._on_stored is not None:
            self._on_stored()
        for result in stored:
            if result.new_work is not None and self._on_new_work is not None:
                self._on_new_work(result.new_work)

    async def _defer(self, item: ClaimedItem, error: str) -> None:
        delay = timedelta(seconds=self._config.pipeline.backoff_max_seconds)
        try:
            await fail_item(self._engine, item.id, error, dead=False, retry_at=utcnow() + delay)
        except Exception as exc:  # noqa: BLE001 - lease expiry will bring it back
            log.error("could not defer inbox item %s: %s", item.id, exc)

    async def _dead(self, item: ClaimedItem, error: str) -> None:
        try:
            await fail_item(self._engine, item.id, error, dead=True)
        except Exception as exc:  # noqa: BLE001 - lease expiry will bring it back
            log.error("could not dead-letter inbox item %s: %s", item.id, exc)
