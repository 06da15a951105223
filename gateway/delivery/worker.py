"""Delivering the outbox: claim due rows, send them, retry with backoff.

Backoff is tenacity's exponential wait with jitter; a row is dead-lettered
after `max_attempts` or once older than `max_age_hours`, and at once when the
failure is permanent. Dead rows are listed, retried and discarded with
`intake dead-letters` and the admin API.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import RetryCallState, wait_exponential_jitter

from gateway.config import Config
from gateway.delivery.broker import Publisher
from gateway.delivery.mailer import SendResult, send
from gateway.delivery.webhooks import deliver, make_session
from storage.engine import utcnow
from storage.outbox import OutboxItem, claim_due, fan_out, mark_done, mark_failed

log = logging.getLogger("intake.outbox")

Deliver = Callable[[OutboxItem], Awaitable[SendResult]]


class OutboxWorker:
    """Delivers mail (when a relay is set), webhooks and broker messages."""

    def __init__(self, *, engine: AsyncEngine, config: Config) -> None:
        self._engine = engine
        self._config = config
        self._webhooks = {sub.name: sub for sub in config.webhooks}
        broker_url = config.broker_url
        self._publisher = Publisher(broker_url, config.broker.exchange) if broker_url else None
        self._session: aiohttp.ClientSession | None = None
        self._deliverers: dict[str, Deliver] = {}
        if config.relay_address is not None:
            self._deliverers["email"] = self._email
        # Events are always fanned out, to no target at all when none is configured,
        # so they never pile up.
        self._deliverers["event"] = self._fan_out
        if self._webhooks:
            self._deliverers["webhook"] = self._webhook
        if self._publisher is not None:
            self._deliverers["broker"] = self._broker
        self._wake = asyncio.Event()
        self._stopping = False
        out = config.outbound
        self._wait = wait_exponential_jitter(multiplier=out.backoff_initial_seconds,
                                             max=out.backoff_max_seconds,
                                             jitter=out.backoff_initial_seconds)

    @property
    def has_work(self) -> bool:
        """Whether anything is configured to deliver (else the rows just wait)."""
        return bool(self._deliverers)

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._publisher is not None:
            await self._publisher.close()

    async def _email(self, item: OutboxItem) -> SendResult:
        return await send(self._config, item.payload)

    async def _fan_out(self, item: OutboxItem) -> SendResult:
        """One event row becomes a row per interested webhook, and one for the broker."""
        event = item.payload["event"]
        body = {"event": event, "reference": item.payload["reference"],
                "at": item.payload["at"], "data": item.payload["data"],
                "delivery": str(item.id)}
        targets: list[tuple[str, dict[str, Any]]] = [
            ("webhook", {"target": sub.name, "event": event, "body": body,
                         "delivery_id": f"{item.id}-{sub.name}"})
            for sub in self._webhooks.values() if sub.wants(event)]
        broker = self._config.broker
        if self._publisher is not None and ("*" in broker.events or event in broker.events):
            targets.append(("broker", {"target": broker.exchange, "event": event,
                                       "body": body, "delivery_id": str(item.id)}))
        await fan_out(self._engine, item.id, targets)
        self._wake.set()
        return SendResult(True, fanned_out=True)

    async def _webhook(self, item: OutboxItem) -> SendResult:
        sub = self._webhooks.get(item.payload["target"])
        if sub is None:
            return SendResult(False, True, f"no webhook named {item.payload['target']!r} now")
        if self._session is None:
            self._session = make_session()
        result = await deliver(self._session, sub, item.payload["event"],
                               item.payload["delivery_id"], item.payload["body"],
                               int(time.time()))
        return SendResult(result.ok, result.permanent, result.error or (
            f"HTTP {result.status}" if not result.ok else None))

    async def _broker(self, item: OutboxItem) -> SendResult:
        assert self._publisher is not None
        return await self._publisher.publish(item.id, item.payload)

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
            result = await self._deliverers[item.kind](item)
        except Exception as exc:  # noqa: BLE001 - a bug must not lose the row
            log.exception("delivering outbox row %s failed", item.id)
            result = SendResult(False, False, f"{type(exc).__name__}: {exc}")
        if result.ok:
            if not result.fanned_out:
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
