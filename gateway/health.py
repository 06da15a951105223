"""What /healthz and /readyz answer, and why they differ.

- **Liveness** (`/healthz`): the process is up and every background task is
  running and making progress. A task that died and waits for its restart,
  or that has made no progress for `stall_seconds` with work waiting, makes
  it 503, naming the task: restarting the process is the remedy an
  orchestrator has, and it may help. A database that is down does not: every
  process would fail alike, and restarting them all helps nothing, so a task
  held up only by storage is `waiting`, shown but not failing.
- **Readiness** (`/readyz`): this process can take work now. The inbox can
  take a write (a short, bounded check that the database would let an insert
  into `inbox_items` through now, not `SELECT 1`) and the inbox writer task
  runs. A load balancer sends work elsewhere while it is 503. The answer is
  kept for `READY_CACHE_SECONDS`, and concurrent probes share one check, so
  probes cannot load the database.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.supervisor import Supervisor, TaskHealth, TaskState
from storage.queries import NotWritable, writable

# How long one answer of the readiness check is reused.
READY_CACHE_SECONDS = 1.0
# The whole readiness check, whatever hangs (a pool that is exhausted, a cut
# connection): past this the database does not take writes *now*.
READY_TIMEOUT_SECONDS = 2.0
# The task that commits what intake accepts; without it nothing is accepted.
INTAKE_TASK = "inbox-writer"


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    ok: bool
    detail: str
    body: dict[str, Any]


class Health:
    """The health answers of one process (its supervisor, if it runs tasks)."""

    def __init__(self, *, supervisor: Supervisor | None = None,
                 clock: Any = time.monotonic) -> None:
        self.supervisor = supervisor
        self._clock = clock
        self._ready: tuple[float, Answer] | None = None
        self._checking: asyncio.Task[Answer] | None = None

    def live(self) -> Answer:
        tasks = self.supervisor.report() if self.supervisor is not None else ()
        bad = [t for t in tasks if not t.healthy]
        body = {"tasks": {t.name: t.to_dict() for t in tasks}}
        if not bad:
            return Answer(ok=True, detail="ok", body=body)
        return Answer(ok=False, body=body | {"unhealthy": [t.name for t in bad]},
                      detail="; ".join(_describe(t) for t in bad))

    async def ready(self, engine: AsyncEngine) -> Answer:
        cached = self._ready
        if cached is not None and self._clock() - cached[0] < READY_CACHE_SECONDS:
            return cached[1]
        if self._checking is None or self._checking.done():
            self._checking = asyncio.create_task(self._check(engine))
        # Shielded: a probe that gives up must not cancel the check others share.
        return await asyncio.shield(self._checking)

    async def _check(self, engine: AsyncEngine) -> Answer:
        checks: dict[str, str] = {}
        problems: list[str] = []
        state = (self.supervisor.state_of(INTAKE_TASK) if self.supervisor is not None
                 else None)
        if state is not None:
            checks[INTAKE_TASK] = state
            if state not in (TaskState.RUNNING, TaskState.WAITING):
                problems.append(f"the inbox writer is {state}")
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                await writable(engine)
            checks["database"] = "writable"
        except NotWritable as exc:
            checks["database"] = str(exc)
            problems.append(f"the database does not take writes now: {exc}")
        except TimeoutError:
            checks["database"] = f"no answer within {READY_TIMEOUT_SECONDS:g} s"
            problems.append(f"the database did not answer within {READY_TIMEOUT_SECONDS:g} s")
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            checks["database"] = f"unreachable ({type(exc).__name__})"
            problems.append(f"database unreachable: {type(exc).__name__}")
        answer = Answer(ok=not problems, detail="; ".join(problems) or "ready",
                        body={"checks": checks}
                        | ({"failing": [name for name, value in checks.items()
                                        if value not in ("writable", "running", "waiting")]}
                           if problems else {}))
        self._ready = (self._clock(), answer)
        return answer


# The app's health answers (the HTTP app alone has one without tasks).
HEALTH_KEY = web.AppKey("health", Health)


def _describe(task: TaskHealth) -> str:
    if task.state == TaskState.RESTARTING:
        return f"background task {task.name} died ({task.last_error}) and is restarting"
    return (f"background task {task.name} is {task.state}: no progress for "
            f"{task.progress_seconds_ago:.0f} s")
