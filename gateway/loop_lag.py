"""How late the event loop runs: a timer that should fire every `interval`
seconds, and how much later than that it did (the `intake_event_loop_lag_seconds`
histogram). Anything holding the loop (a large parse, a blocking call, a long
verification) shows up here before it shows up as slow SMTP answers."""

from __future__ import annotations

import asyncio

from gateway import metrics
from gateway.supervisor import Heartbeat

INTERVAL = 0.1  # seconds: short enough to see a 10 ms stall, cheap enough to leave on


async def watch(beat: Heartbeat, interval: float = INTERVAL) -> None:
    """Run until cancelled, observing each wake-up's lateness."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + interval
        await asyncio.sleep(interval)
        metrics.LOOP_LAG.observe(max(0.0, loop.time() - due))
        beat.beat()
