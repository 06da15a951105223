"""Publishing request events to RabbitMQ (aio-pika) for downstream systems.

Messages are persistent, carry the outbox row id as message_id (consumers can
drop the duplicate a retry after a lost confirm would make), and are published
with publisher confirms, so "delivered" means the broker has taken it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aio_pika

from gateway.delivery.mailer import SendResult


class Publisher:
    def __init__(self, url: str, exchange: str) -> None:
        self._url = url
        self._exchange_name = exchange
        self._connection: Any = None
        self._exchange: Any = None
        self._lock = asyncio.Lock()

    async def _ready(self) -> Any:
        async with self._lock:
            if self._exchange is None or self._connection is None or self._connection.is_closed:
                self._connection = await aio_pika.connect_robust(self._url, timeout=10)
                channel = await self._connection.channel(publisher_confirms=True)
                self._exchange = await channel.declare_exchange(
                    self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
            return self._exchange

    async def publish(self, row_id: int, payload: dict[str, Any]) -> SendResult:
        try:
            exchange = await self._ready()
            body = json.dumps(payload["body"], separators=(",", ":"), sort_keys=True).encode()
            await exchange.publish(
                aio_pika.Message(body=body, content_type="application/json",
                                 message_id=str(payload.get("delivery_id", row_id)),
                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=payload["event"], timeout=10)
        except (aio_pika.exceptions.AMQPError, OSError, TimeoutError, ConnectionError) as exc:
            self._exchange = None
            return SendResult(False, False, f"{type(exc).__name__}: {exc}")
        return SendResult(True)

    async def close(self) -> None:
        if self._connection is not None and not self._connection.is_closed:
            await self._connection.close()
