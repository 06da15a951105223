"""Erasures worked to the end: by the command line at once, by every `intake
serve` process's scheduler in bounded passes.

A task is claimed under a short lease that each step renews (storage/
erasures.py), so a process that dies mid-task holds it for at most
`LEASE_SECONDS`; the next claim resumes where its last committed step left it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from storage.audit import Audit
from storage.erasing import work_step
from storage.erasures import Task, any_open, claim, release, view

log = logging.getLogger("intake.erasure")

LEASE_SECONDS = 10.0
# While a step waits for an input being processed, the task is looked at again after this.
WAIT_SECONDS = 1.0
# The scheduler's share of a pass: erasures are rare and bounded per step, but a
# large one must not hold up the service-level work of the same pass.
PASS_SECONDS = 2.0


async def _work(engine: AsyncEngine, task: Task, *, audit: Audit, budget: float | None
                ) -> tuple[bool, bool]:
    """Steps of `task` until done, waiting, or out of `budget` seconds:
    (finished, lost its claim)."""
    started = time.monotonic()
    while True:
        try:
            outcome = await work_step(engine, task, lease_seconds=LEASE_SECONDS, audit=audit)
        except BaseException:
            # Given back at once, not held for its lease by a step that failed.
            with contextlib.suppress(Exception):
                await release(engine, task)
            raise
        if outcome is None:
            return False, True
        task = outcome.task
        if outcome.finished:
            log.info("erasure %d finished: %s", task.id,
                     " ".join(f"{k}={v}" for k, v in sorted(task.counts.items())) or "nothing",
                     extra={"event": "erasure.finish", "erasure": task.id})
            return True, False
        if outcome.waiting or (budget is not None and time.monotonic() - started > budget):
            await release(engine, task)
            return False, False


async def run_pass(engine: AsyncEngine, *, budget: float = PASS_SECONDS) -> int:
    """The scheduler's share: work free tasks for about `budget` seconds; how
    many it finished."""
    if not await any_open(engine):
        return 0
    finished = 0
    started = time.monotonic()
    seen: set[int] = set()
    while time.monotonic() - started < budget:
        task = await claim(engine, lease_seconds=LEASE_SECONDS)
        if task is None or task.id in seen:
            if task is not None:
                await release(engine, task)
            break
        seen.add(task.id)
        left = budget - (time.monotonic() - started)
        done, _ = await _work(engine, task, audit=Audit("system"), budget=max(0.0, left))
        finished += done
    return finished


async def run_to_end(engine: AsyncEngine, erasure_id: int, *, audit: Audit) -> dict[str, Any]:
    """Work erasure `erasure_id` until it is done (waiting while another process
    holds it); its public view."""
    while True:
        current = await view(engine, erasure_id)
        if current is None:
            raise LookupError(f"no erasure {erasure_id}")
        if current["state"] == "done":
            return current
        task = await claim(engine, lease_seconds=LEASE_SECONDS, only=erasure_id)
        if task is None:
            await asyncio.sleep(WAIT_SECONDS)  # another process works it now
            continue
        done, _ = await _work(engine, task, audit=audit, budget=None)
        if not done:
            await asyncio.sleep(WAIT_SECONDS)
