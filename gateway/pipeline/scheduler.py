"""The service-level scheduler: runs in every `intake serve` process.

Each pass claims the requests whose next check has come (SKIP LOCKED, so
processes share the work), works out their deadlines and the steps due
(warning, breach, unclaimed too long, reopened too often), and takes each step
at most once (`sla_marks`), applying the escalation rules it fires.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from domain.errors import GatewayError
from domain.lifecycle import EventKind
from gateway import erasure, metrics
from gateway.pipeline.retention import Retention
from gateway.pipeline.service_levels import review
from gateway.reports import measure
from gateway.rules_in_force import RulesHolder
from gateway.supervisor import Heartbeat
from storage.engine import utcnow
from storage.errors import described
from storage.sla_store import claim_checks, set_deadlines, take_step

log = logging.getLogger("intake.scheduler")


async def _apart(what: str, work: Awaitable[object]) -> None:
    """One share of a pass after the service levels: a failure of one (a task
    that keeps failing, a fault mid-retention) is logged, and the others and
    the next pass still run."""
    try:
        await work
    except Exception as exc:  # noqa: BLE001 - logged; the pass goes on
        log.warning("scheduler: %s failed: %s", what, described(exc))
MEASURE_PER_PASS = 500


class Scheduler:
    def __init__(self, *, engine: AsyncEngine, rules: RulesHolder,
                 interval: float = 5.0, clock: Callable[[], datetime] = utcnow,
                 retention: Retention | None = None) -> None:
        """`clock` tells the time of each pass (tests move it); `retention`: the
        `[[retention]]` passes, a share of each tick (None: none)."""
        self._engine = engine
        self._rules = rules
        self._retention = retention
        self.interval = interval
        self._clock = clock
        self.steps_taken = 0

    async def tick(self) -> int:
        """One pass; returns how many steps this process took."""
        now = self._clock()
        holder = self._rules
        rows = await claim_checks(self._engine, limit=100, hold_seconds=60, now=now)
        taken = 0
        for row in rows:
            found = review(row, holder.sla, holder.escalations, now,
                           check_seconds=self.interval)
            level, priority = row["escalation_level"], row["priority"]
            for mark, kind, fired, facts in found.steps:
                changes: dict[str, object] = {}
                for rule in fired:
                    step = rule.changes(level, priority)
                    level = int(step.get("escalation_level", level))
                    priority = step.get("priority", priority)
                    changes |= step
                notify = any(rule.notify for rule in fired) or bool(changes)
                data = facts | {"rules": [rule.name for rule in fired]}
                kind = kind if not fired else EventKind.ESCALATED
                if await take_step(self._engine, row["id"], row["reference"], mark,
                                   kind=kind, changes=changes, data=data,
                                   notify_event=notify, now=now):
                    taken += 1
                    metrics.DESK.step(kind, row["queue"])
                    # Breaches and escalations are logged: reference and facts, no content.
                    log.info("%s %s mark=%s queue=%s rules=%s changes=%s", kind.value,
                             row["reference"], mark, row["queue"],
                             ",".join(data["rules"]) or "-",
                             ",".join(f"{k}={v}" for k, v in changes.items()) or "-",
                             extra={"event": kind.value, "reference": row["reference"],
                                    "queue": row["queue"], "mark": mark})
            await set_deadlines(self._engine, row["id"], found.columns)
        self.steps_taken += taken
        # Business-hours times of answered and resolved requests, for reports
        # to aggregate (gateway/reports.py): a bounded batch a pass.
        await _apart("measuring business times",
                     measure(self._engine, holder.sla, limit=MEASURE_PER_PASS))
        # Erasures asked for over HTTP (gateway/erasure.py): a bounded share of the pass.
        await _apart("erasures", erasure.run_pass(self._engine))
        if self._retention is not None:
            await _apart("retention", self._retention.step(now))
        return taken

    async def run(self, heartbeat: Heartbeat | None = None) -> None:
        """A pass every `interval` seconds; a failed pass is logged, the next one comes."""
        beat = heartbeat or Heartbeat()
        while True:
            try:
                await self.tick()
            except Exception as exc:  # noqa: BLE001 - a bad pass must not stop the next
                if isinstance(exc, GatewayError) and exc.temporary:
                    log.warning("service-level pass failed: %s", described(exc))
                else:
                    log.exception("service-level pass failed")
                beat.failed(exc)
            else:
                beat.beat()
            await asyncio.sleep(self.interval)
