"""Delivering the outbox: claim due rows, send them, retry with backoff.

Backoff is tenacity's exponential wait with jitter; a row is dead-lettered
after `max_attempts` or once older than `max_age_hours`, and at once when the
failure is permanent. Dead rows are listed, retried and discarded with
`intake dead-letters` and the admin API.

Event rows are fanned out in batches (one claim and one transaction for up to
`FAN_OUT_BATCH` events), not one transaction each. No database error ends the
worker: a claim that fails is tried again at the next poll, and recording a
row's outcome is retried (`_record`) until the database answers or the row's
lease is near its end, when the row is left for its lease to bring back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    stop_after_delay,
    stop_any,
    wait_exponential_jitter,
)

from domain.errors import GatewayError
from gateway import logs, metrics
from gateway.config import Config
from gateway.delivery import notifications
from gateway.delivery.broker import Publisher
from gateway.delivery.mailer import SendResult, send
from gateway.delivery.outbound import rendered_again
from gateway.delivery.webhooks import deliver, make_session
from gateway.supervisor import Heartbeat
from storage.acknowledgements import store_rendered
from storage.engine import utcnow
from storage.notifications import KIND as NOTIFICATION
from storage.notifications import (
    Recipient,
    claim_digest,
    finish_digest,
    queue_agents,
    request_facts,
)
from storage.outbox import (
    Delivery,
    FanOut,
    OutboxItem,
    claim_due,
    fan_out,
    give_back,
    mark_done,
    mark_failed,
)

log = logging.getLogger("intake.outbox")

Deliver = Callable[[OutboxItem], Awaitable[SendResult]]
Targets = tuple[tuple[str, dict[str, Any]], ...]
# Agents by queue, and the facts of requests whose events may notify them.
Notifying = tuple[Mapping[str, Sequence[Recipient]], Mapping[int, Mapping[str, Any]]]

# Rows claimed for delivery at a time (each is a network call).
DELIVERY_BATCH = 20
# Events claimed and fanned out in one transaction: a few hundred rows cost
# about what one does, and a burst drains at thousands of rows per second.
FAN_OUT_BATCH = 500
# Recording an outcome is retried for at most this share of the lease: past
# it, the row may be claimed again and the record would come too late anyway.
RECORD_SHARE_OF_LEASE = 0.5


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
            self._deliverers[NOTIFICATION] = self._notification
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
        if item.payload.get("render"):
            # An acknowledgement whose template failed, retried: render it with the
            # templates as they are now, and keep the text with the request.
            payload, problem = await asyncio.to_thread(rendered_again, self._config,
                                                       item.payload)
            if problem is not None:
                return SendResult(False, True, f"template: {problem}")
            await store_rendered(self._engine, item.id, payload)
            return await send(self._config, payload)
        return await send(self._config, item.payload)

    @staticmethod
    def _delivery(item: OutboxItem, result: SendResult, outcome: str) -> Delivery | None:
        """The timeline entry of a request's mail: delivered, deferred or failed."""
        if item.kind != "email" or item.request_id is None:
            return None
        message = item.payload.get("message") or {}
        return Delivery(item.request_id, {
            "outcome": outcome, "message_id": message.get("message_id"),
            "purpose": item.payload.get("purpose") or (message.get("flags") or {}).get("kind"),
            "attempt": item.attempts, "code": result.code})

    async def _notifying(self, items: Sequence[OutboxItem]) -> Notifying:
        """Who works which queue, and the requests of `items` that may notify
        (nothing when no queue notifies its agents)."""
        if not notifications.wanted(self._config):
            return {}, {}
        ids = [item.request_id for item in items if item.request_id is not None
               and item.payload.get("event") in notifications.FROM_EVENTS]
        if not ids:
            return {}, {}
        return await queue_agents(self._engine), await request_facts(self._engine, ids)

    async def _notification(self, item: OutboxItem) -> SendResult:
        """The recipient's notices that are pending, in one mail (a digest)."""
        lease = self._config.outbound.lease_seconds
        others = await claim_digest(self._engine, item.payload["to"], lease_seconds=lease)
        carried = [row_id for row_id, _ in others if row_id != item.id]
        try:
            message = notifications.digest(self._config, [
                item.payload, *(p for row_id, p in others if row_id != item.id)])
        except Exception as exc:  # noqa: BLE001 - a template that fails: the row's failure
            await finish_digest(self._engine, carried, sent=False)
            return SendResult(False, True, f"notification template: {type(exc).__name__}: "
                                           f"{exc}"[:500])
        result = await send(self._config, {"message": message})
        retry_at = utcnow() + timedelta(seconds=self._delay(max(item.attempts, 1)))
        await finish_digest(self._engine, carried, sent=result.ok, retry_at=retry_at)
        return result

    def _targets(self, item: OutboxItem, notifying: Notifying = ({}, {})) -> Targets:
        """The rows one event becomes: one per interested webhook, one for the broker,
        one per agent to notify."""
        event = item.payload["event"]
        body = {"event": event, "reference": item.payload["reference"],
                "at": item.payload["at"], "data": item.payload["data"],
                # An event stored before requesters were named: null, as documented.
                "requester": item.payload.get("requester", {"email": None, "name": None}),
                "delivery": str(item.id)}
        targets: list[tuple[str, dict[str, Any]]] = [
            ("webhook", {"target": sub.name, "event": event, "body": body,
                         "delivery_id": f"{item.id}-{sub.name}"})
            for sub in self._webhooks.values() if sub.wants(event)]
        broker = self._config.broker
        if self._publisher is not None and ("*" in broker.events or event in broker.events):
            targets.append(("broker", {"target": broker.exchange, "event": event,
                                       "body": body, "delivery_id": str(item.id)}))
        agents, requests = notifying
        request = requests.get(item.request_id) if item.request_id is not None else None
        if request is not None:
            targets += [(NOTIFICATION, notice.payload) for notice in notifications.from_event(
                self._config, agents, request, item.id, item.payload, utcnow())]
        return tuple(targets)

    async def _fan_out(self, item: OutboxItem) -> SendResult:
        """One event alone (a batch's row that failed with others is tried so)."""
        notifying = await self._notifying([item])
        await fan_out(self._engine, [FanOut(item.id, item.request_id,
                                            self._targets(item, notifying))])
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

    async def run(self, heartbeat: Heartbeat | None = None) -> None:
        """Fan out events and deliver due rows until stopped; no failure ends it."""
        beat = heartbeat or Heartbeat()
        while not self._stopping:
            self._wake.clear()
            fanned = await self.fan_out_events(beat)
            # After a storage fault, wait for the next poll rather than meet it twice.
            delivered = beat.fault is None and await self._delivery_round(beat)
            if not fanned and not delivered and not self._stopping:
                try:
                    await asyncio.wait_for(self._wake.wait(),
                                           self._config.pipeline.poll_seconds)
                except TimeoutError:
                    pass

    async def _claim(self, beat: Heartbeat, kinds: tuple[str, ...],
                     limit: int) -> list[OutboxItem]:
        try:
            items = await claim_due(self._engine, limit=limit, kinds=kinds,
                                    lease_seconds=self._config.outbound.lease_seconds)
        except Exception as exc:  # noqa: BLE001 - database down: try again at the next poll
            log.warning("claiming outbox rows failed: %s", exc)
            beat.failed(exc)
            return []
        beat.beat()
        return items

    async def _delivery_round(self, beat: Heartbeat) -> bool:
        kinds = tuple(kind for kind in self._deliverers if kind != "event")
        items = await self._claim(beat, kinds, DELIVERY_BATCH) if kinds else []
        for item in items:
            await self.deliver(item, beat)
            beat.beat()
        return bool(items)

    async def fan_out_events(self, heartbeat: Heartbeat | None = None) -> int:
        """Claim a batch of due events and fan them all out in one transaction;
        how many events were claimed (0: none was due)."""
        beat = heartbeat or Heartbeat()
        items = await self._claim(beat, ("event",), FAN_OUT_BATCH)
        if not items:
            return 0
        batch: list[FanOut] = []
        alone: list[OutboxItem] = []
        try:
            notifying = await self._notifying(items)
        except Exception as exc:  # noqa: BLE001 - the database: give the batch back
            beat.failed(exc)
            await self._give_back([item.id for item in items], exc)
            return len(items)
        for item in items:
            try:
                batch.append(FanOut(item.id, item.request_id, self._targets(item, notifying)))
            except Exception:  # noqa: BLE001 - a malformed row: the usual failure path
                alone.append(item)
        try:
            await fan_out(self._engine, batch)
        except Exception as exc:  # noqa: BLE001 - isolated below, or given back
            if isinstance(exc, GatewayError) and exc.temporary:
                log.warning("fanning out %d events failed, storage fault: %s", len(batch),
                            exc)
                beat.failed(exc)
                await self._give_back([event.item_id for event in batch], exc)
                return len(items)
            log.warning("fanning out %d events together failed (%s); one by one",
                        len(batch), f"{type(exc).__name__}: {exc}".splitlines()[0][:200])
            alone += [item for item in items if item not in alone]
        else:
            if any(event.targets for event in batch):
                self._wake.set()  # new rows to deliver
        for item in alone:
            await self.deliver(item, beat)
        beat.beat()
        return len(items)

    async def _give_back(self, item_ids: list[int], exc: Exception) -> None:
        retry_at = utcnow() + timedelta(seconds=self._config.pipeline.poll_seconds)
        try:
            await give_back(self._engine, item_ids, f"{type(exc).__name__}: {exc}",
                            retry_at=retry_at)
        except Exception as failure:  # noqa: BLE001 - their lease brings them back
            log.warning("could not give back %d outbox rows (their lease will): %s",
                        len(item_ids), failure)

    async def deliver(self, item: OutboxItem, heartbeat: Heartbeat | None = None) -> None:
        beat = heartbeat or Heartbeat()
        out = self._config.outbound
        try:
            result = await self._deliverers[item.kind](item)
        except Exception as exc:  # noqa: BLE001 - a bug must not lose the row
            log.exception("delivering outbox row %s failed", item.id)
            result = SendResult(False, False, f"{type(exc).__name__}: {exc}")
        if result.ok:
            if not result.fanned_out:
                delivered = self._delivery(item, result, "delivered")
                await self._record(item, "done", beat, lambda: mark_done(
                    self._engine, item.id, delivery=delivered))
                self._log_acknowledged(item, "sent")
            return
        error = result.error or "failed"
        too_old = utcnow() - item.created_at > timedelta(hours=out.max_age_hours)
        if result.permanent or item.attempts >= out.max_attempts or too_old:
            why = ("permanent failure" if result.permanent else
                   "too old" if too_old else f"{item.attempts} attempts")
            log.warning("outbox row %s dead-lettered (%s): %s", item.id, why,
                        logs.without_addresses(error))
            self._log_acknowledged(item, "failed")
            failed = self._delivery(item, result, "failed")
            await self._record(item, "dead", beat, lambda: mark_failed(
                self._engine, item.id, f"{why}: {error}", retry_at=None, delivery=failed))
            return
        retry_at = utcnow() + timedelta(seconds=self._delay(item.attempts))
        log.info("outbox row %s failed (attempt %d), retry at %s: %s", item.id,
                 item.attempts, retry_at.isoformat(), logs.without_addresses(error))
        deferred = self._delivery(item, result, "deferred")
        await self._record(item, "failed", beat, lambda: mark_failed(
            self._engine, item.id, error, retry_at=retry_at, delivery=deferred))

    def _log_acknowledged(self, item: OutboxItem, outcome: str) -> None:
        """The item line of an acknowledgement: sent to the relay, or failed for
        good. Its row carries the request's reference and queue (no query)."""
        if item.payload.get("purpose") != "acknowledgement":
            return
        request = item.payload.get("request") or {}
        logs.item("acknowledged", reference=request.get("reference"), channel="email",
                  queue=request.get("queue"), outcome=outcome)

    async def _record(self, item: OutboxItem, outcome: str, beat: Heartbeat,
                      write: Callable[[], Awaitable[None]]) -> None:
        """Record a row's outcome; a failure is retried with backoff, never fatal.

        A row sent but not marked done is sent again once its lease runs out, so
        the record is worth retrying through a short outage; after
        `RECORD_SHARE_OF_LEASE` of the lease the row is left to its lease.
        """
        metrics.OUTBOX.recorded(item, outcome)
        budget = self._config.outbound.lease_seconds * RECORD_SHARE_OF_LEASE
        # Not past the budget, nor once told to stop (the lease brings the row back).
        stop = stop_any(stop_after_delay(budget), lambda _state: self._stopping)
        retrying = AsyncRetrying(stop=stop, reraise=True,
                                 wait=wait_exponential_jitter(multiplier=0.1, max=2.0, jitter=0.1))
        try:
            async for trial in retrying:
                with trial:
                    try:
                        await write()
                    except Exception as exc:
                        beat.failed(exc)
                        log.warning("recording outbox row %s as %s failed (retrying): %s",
                                    item.id, outcome, exc)
                        raise
        except Exception as exc:  # noqa: BLE001 - the lease brings the row back
            log.error("outbox row %s could not be recorded as %s within %.0f s; its lease "
                      "will bring it back: %s", item.id, outcome, budget, exc)
