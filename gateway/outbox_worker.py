"""Delivering the outbox: claim due rows, send them, retry with backoff.

Backoff is tenacity's exponential wait with jitter; a row is dead-lettered
after `max_attempts` or once older than `max_age_hours`, and at once when the
failure is permanent. Dead rows are listed, retried and discarded with
`intake dead-letters` and the admin API.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import RetryCallState, wait_exponential_jitter

from gateway.config import Config
from gateway.mailer import SendResult, send
from storage.engine import utcnow
from storage.outbox import OutboxItem, claim_due, mark_done, mark_failed

log = logging.getLogger("intake.outbox")

Deliver = Callable[[Config, dict[str, Any]], Awaitable[SendResult]]


class OutboxWorker:
    def __init__(self, engine: AsyncEngine, config: Config,
                 deliverers: dict[str, Deliver] | None = None) -> None:
        self._engine = engine
        self._config = config
        self._deliverers = deliverers or {"email": send}
        self._wake = asyncio.Event()
        self._stopping = False
        out = config.outbound
        self._wait = wait_exponential_jitter(multiplier=out.backoff_initial_seconds,
                                             max=out.backoff_max_seconds,
                                             jitter=out.backoff_initial_seconds)

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def _delay(self, attempt: int) -> float:
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = attempt
        return float(self._wait(state))

    async def run(self) -> None:
        kinds = tuple(self._deliverers)
        while not self._stopping:
            self._wake.clear()
            try:
                items = await claim_due(self._engine, limit=20, kinds=kinds,
                                        lease_seconds=self._config.outbound.lease_seconds)
            except Exception as exc:  # noqa: BLE001 - database down: try again later
                log.warning("claiming outbox rows failed: %s", exc)
                items = []
            for item in items:
                await self.deliver(item)
            if not items and not self._stopping:
                try:
                    await asyncio.wait_for(self._wake.wait(),
                                           self._config.pipeline.poll_seconds)
                except TimeoutError:
                    pass

    async def deliver(self, item: OutboxItem) -> None:
        out = self._config.outbound
        try:
            result = await self._deliverers[item.kind](self._config, item.payload)
        except Exception as exc:  # noqa: BLE001 - a bug must not lose the row
            log.exception("delivering outbox row %s failed", item.id)
            result = SendResult(False, False, f"{type(exc).__name__}: {exc}")
        if result.ok:
            await mark_done(self._engine, item.id)
            return
        error = result.error or "failed"
        too_old = utcnow() - item.created_at > timedelta(hours=out.max_age_hours)
        if result.permanent or item.attempts >= out.max_attempts or too_old:
            why = ("permanent failure" if result.permanent else
                   "too old" if too_old else f"{item.attempts} attempts")
            log.warning("outbox row %s dead-lettered (%s): %s", item.id, why, error)
            await mark_failed(self._engine, item.id, f"{why}: {error}", retry_at=None)
            return
        retry_at = utcnow() + timedelta(seconds=self._delay(item.attempts))
        log.info("outbox row %s failed (attempt %d), retry at %s: %s", item.id,
                 item.attempts, retry_at.isoformat(), error)
        await mark_failed(self._engine, item.id, error, retry_at=retry_at)
