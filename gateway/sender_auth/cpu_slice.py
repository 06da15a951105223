"""Verification's share of an event-loop turn.

Each message's checks are short CPU steps (an RSA signature, an SPF record
evaluated, a header section parsed: about a millisecond each) between DNS
waits. Many messages of a batch become ready in the same turn of the loop (a
cache hit, answers arriving together), and asyncio runs every callback ready
in a turn before it looks at the sockets again: 32 of them back to back hold
every SMTP and HTTP connection of the process for tens of milliseconds.

`CpuSlice.turn()`, awaited before each step, lets the verifier use at most
`seconds` of a turn: past that, the step waits for the next turn, after the
loop has polled its sockets. Throughput is the same; only the order changes.
"""

from __future__ import annotations

import asyncio
import time

SLICE_SECONDS = 0.004


class CpuSlice:
    def __init__(self, seconds: float = SLICE_SECONDS) -> None:
        self._seconds = seconds
        self._began = time.perf_counter()  # this turn's slice began
        self._renewing = False

    async def turn(self) -> None:
        """Return when this turn's slice has room for one more step."""
        while time.perf_counter() - self._began > self._seconds:
            if not self._renewing:
                # Scheduled before our own wake-up: the next turn's first callback.
                self._renewing = True
                asyncio.get_running_loop().call_soon(self._renew)
            await asyncio.sleep(0)

    def _renew(self) -> None:
        self._renewing = False
        self._began = time.perf_counter()
