"""Retention passes, a few batches at a time, for the scheduler.

A pass starts `interval` after the last one ended (the first at the first
tick) and runs its stages (storage/retention.py) for at most `tick_seconds`
of each scheduler tick (one batch at least), so a large backlog is worked off
over many ticks: retention takes a bounded share of the process and of the
database (measured by benchmarks/retention.py), and the scheduler's own
service-level checks keep their pace. Each process runs passes; their
batches lock the rows they take, so no row is done twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from domain.retention import Policy
from storage.retention import Stage, plan, run_batch

log = logging.getLogger("intake.retention")
# The share of each scheduler tick that retention may work (one batch at least).
SHARE_OF_TICK = 0.2


class Retention:
    def __init__(self, *, engine: AsyncEngine, policies: Sequence[Policy],
                 interval: timedelta, batch_size: int, tick_seconds: float = 1.0,
                 batches_per_tick: int | None = None) -> None:
        """`interval`: between the end of a pass and the next; `tick_seconds`: the
        time a tick may spend; `batches_per_tick`: a bound in batches too (tests)."""
        self._engine = engine
        self._policies = tuple(policies)
        self._interval = interval
        self._batch = batch_size
        self._tick_seconds = tick_seconds
        self._per_tick = batches_per_tick
        self._stages: list[Stage] = []
        self._next_pass: datetime | None = None  # None: at the first tick
        self.passes = 0

    async def step(self, now: datetime) -> int:
        """Batches of the pass due at `now` for up to `tick_seconds`; the rows done."""
        if not self._policies:
            return 0
        if not self._stages:
            if self._next_pass is not None and now < self._next_pass:
                return 0
            self._stages = plan(self._policies, now)
        done, batches = 0, 0
        deadline = time.monotonic() + self._tick_seconds
        while self._per_tick is None or batches < self._per_tick:
            stage = next((s for s in self._stages if not s.finished), None)
            if stage is None:
                break
            done += await run_batch(self._engine, stage, batch=self._batch)
            batches += 1
            if time.monotonic() >= deadline:
                break
        if all(stage.finished for stage in self._stages):
            self._finish(now)
        return done

    def _finish(self, now: datetime) -> None:
        for stage in self._stages:
            if stage.done:
                log.info("retention %s: %d %s", stage.policy.name, stage.done, stage.what.value,
                         extra={"event": "retention", "policy": stage.policy.name,
                                "what": stage.what.name.lower(), "count": stage.done})
        self._stages = []
        self._next_pass = now + self._interval
        self.passes += 1
