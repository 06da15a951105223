"""Supervision of a process's background tasks: none dies silently, none stalls unseen.

Every background task (pipeline and outbox workers, the inbox writer, the
scheduler, the rules watcher, LISTEN) runs under the `Supervisor`. An
exception, a return nobody asked for or a cancellation from outside is logged
at once, with its traceback, and the task is started again after a backoff
(tenacity's exponential wait with jitter, capped), so a bug or an uncaught
fault costs a restart, never the task.

Each task reports progress on its `Heartbeat`: `beat()` when it has done a
pass or a piece of work, `failed(exc)` for a failure it handled itself. A
task that cannot report (its loop belongs to another module) is watched from
outside instead (`Watch`): a counter that moves when it works, and a check
that says whether work is waiting for it. A task that is running but has made
no progress for `stall_seconds` is `stalled`, unless its last failure was
temporary (the database, which readiness reports): then it is `waiting`.
The monitor logs each change of state when it happens, not at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tenacity import RetryCallState, wait_exponential_jitter

from domain.errors import GatewayError

log = logging.getLogger("intake.tasks")

# No progress for this long, with work waiting, is a stall. Above the longest
# single step a task takes when all is well (an outbound SMTP or webhook call
# is bounded by outbound.timeout_seconds, 30 s by default).
STALL_SECONDS = 60.0
# Restart backoff: 0.5 s, 1 s, 2 s ... capped, with jitter so that tasks that
# failed together do not restart together.
BACKOFF_INITIAL_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
# A task that ran this long before failing starts its backoff from the beginning.
HEALTHY_RUN_SECONDS = 60.0


class TaskState(StrEnum):
    RUNNING = "running"
    WAITING = "waiting"        # no progress, and the last failure was temporary (storage)
    STALLED = "stalled"        # no progress for stall_seconds with work waiting
    RESTARTING = "restarting"  # failed; started again after its backoff
    FINISHED = "finished"      # returned when told to stop


HEALTHY = frozenset({TaskState.RUNNING, TaskState.WAITING, TaskState.FINISHED})


class Heartbeat:
    """What a running task says about itself; the supervisor reads it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.progress_at = clock()
        # The last failure the task handled itself, cleared by progress.
        self.fault: BaseException | None = None
        self.fault_at: float | None = None

    def beat(self) -> None:
        """Progress now: a pass done (even one that found nothing), a piece of work."""
        self.progress_at = self._clock()
        self.fault = None

    def failed(self, exc: BaseException) -> None:
        """A failure the task caught and lives on after (it logs it itself)."""
        self.fault = exc
        self.fault_at = self._clock()


@dataclass(frozen=True, slots=True, kw_only=True)
class Watch:
    """Progress seen from outside, for a task whose loop cannot report it."""

    # Moves whenever the task has done work (e.g. items stored so far).
    progress: Callable[[], int]
    # Whether work has waited longer than the stall time (None: cannot tell, so
    # the task is never called stalled, only restarted when it fails). May raise:
    # a temporary error says "waiting for the database".
    backlog: Callable[[float], Awaitable[bool]] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskHealth:
    """One task as /healthz shows it."""

    name: str
    state: TaskState
    restarts: int
    progress_seconds_ago: float
    # The type of the last failure (its text, which may quote input, is in the log).
    last_error: str | None
    last_error_seconds_ago: float | None

    @property
    def healthy(self) -> bool:
        return self.state in HEALTHY

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "restarts": self.restarts,
                "progress_seconds_ago": round(self.progress_seconds_ago, 1),
                "last_error": self.last_error,
                "last_error_seconds_ago": (None if self.last_error_seconds_ago is None
                                           else round(self.last_error_seconds_ago, 1))}


Run = Callable[[Heartbeat], Coroutine[Any, Any, None]]


class Counter:
    """A count that only grows: a task's progress seen from outside (`Watch`)."""

    def __init__(self) -> None:
        self._value = 0

    def add(self) -> None:
        self._value += 1

    def value(self) -> int:
        return self._value


def without_heartbeat(run: Callable[[], Coroutine[Any, Any, None]]) -> Run:
    """A loop that cannot report progress itself, to be watched from outside."""
    return lambda _beat: run()


@dataclass(kw_only=True, eq=False)
class _Entry:
    name: str
    run: Run
    watch: Watch | None
    stall_seconds: float
    drain: bool
    heartbeat: Heartbeat
    keeper: asyncio.Task[None] | None = None
    current: asyncio.Task[None] | None = None
    crashed: bool = False
    finished: bool = False
    restarts: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    seen_progress: int | None = None
    work_waiting: bool = False  # a watched task's backlog, as last seen
    reported: TaskState = TaskState.RUNNING
    backlog_checked_at: float = 0.0


class Supervisor:
    """Starts, restarts and watches the background tasks of one process."""

    def __init__(self, *, stall_seconds: float = STALL_SECONDS,
                 backoff_initial: float = BACKOFF_INITIAL_SECONDS,
                 backoff_max: float = BACKOFF_MAX_SECONDS,
                 healthy_run_seconds: float = HEALTHY_RUN_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_seconds = stall_seconds
        self.healthy_run_seconds = healthy_run_seconds
        self._wait = wait_exponential_jitter(multiplier=backoff_initial, max=backoff_max,
                                             jitter=backoff_initial)
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._monitor: asyncio.Task[None] | None = None
        self.stopping = False

    # -- starting and stopping ------------------------------------------------

    def start(self, name: str, run: Run, *, watch: Watch | None = None,
              stall_seconds: float | None = None, drain: bool = False) -> None:
        """Run `run(heartbeat)` as a supervised task named `name`.

        `drain`: at stop, the task is let finish by itself (it was told to stop)
        before being cancelled. `stall_seconds`: for a loop whose own period is
        long (a scheduler every few minutes), more than the default.
        """
        if name in self._entries:
            raise ValueError(f"a task named {name!r} is supervised already")
        entry = _Entry(name=name, run=run, watch=watch, drain=drain,
                       stall_seconds=max(stall_seconds or 0.0, self.stall_seconds),
                       heartbeat=Heartbeat(self._clock))
        if watch is not None:
            entry.seen_progress = watch.progress()
        self._entries[name] = entry
        entry.keeper = asyncio.create_task(self._keep(entry), name=f"supervise {name}")
        if self._monitor is None:
            self._monitor = asyncio.create_task(self._watch(), name="supervise monitor")

    async def stop(self, *, grace: float) -> None:
        """Let the draining tasks finish (up to `grace` seconds), then cancel the rest."""
        self.stopping = True
        draining = [e.keeper for e in self._entries.values() if e.drain and e.keeper]
        if draining:
            _, pending = await asyncio.wait(draining, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        rest = [e.keeper for e in self._entries.values() if e.keeper and not e.keeper.done()]
        rest += [self._monitor] if self._monitor is not None else []
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    def running_task(self, name: str) -> asyncio.Task[None] | None:
        """The task doing `name`'s work now (None between restarts): for tests that
        kill it, and for operators' debugging."""
        entry = self._entries.get(name)
        return entry.current if entry is not None else None

    async def _keep(self, entry: _Entry) -> None:
        """Run the entry's work until stopped, restarting it after each failure."""
        try:
            await self._run_and_restart(entry)
        finally:
            if self.stopping:
                entry.finished = True

    async def _run_and_restart(self, entry: _Entry) -> None:
        consecutive = 0
        while True:
            entry.heartbeat = Heartbeat(self._clock)
            entry.crashed = False
            entry.work_waiting = False
            started = self._clock()
            try:
                entry.current = asyncio.create_task(entry.run(entry.heartbeat),
                                                    name=entry.name)
                await entry.current
            except asyncio.CancelledError:
                if self.stopping or _cancelling():
                    raise  # ours: stop() cancelled the keeper, and with it the work
                self._failed(entry, "cancelled from outside", None)
            except Exception as exc:  # noqa: BLE001 - the point: log it, start again
                self._failed(entry, f"{type(exc).__name__}: {exc}".splitlines()[0][:300], exc)
            else:
                if self.stopping:
                    return
                self._failed(entry, "returned although not told to stop", None)
            finally:
                entry.current = None
            if self.stopping:
                return
            consecutive = 1 if self._clock() - started > self.healthy_run_seconds else (
                consecutive + 1)
            delay = self._delay(consecutive)
            log.error("background task %s restarts in %.1f s (restart %d)", entry.name, delay,
                      entry.restarts + 1)
            await asyncio.sleep(delay)
            if self.stopping:
                return
            entry.restarts += 1
            log.warning("background task %s restarted", entry.name)

    def _failed(self, entry: _Entry, why: str, exc: BaseException | None) -> None:
        entry.crashed = True
        entry.last_error = type(exc).__name__ if exc is not None else why
        entry.last_error_at = self._clock()
        entry.reported = TaskState.RESTARTING
        log.error("background task %s died: %s", entry.name, why, exc_info=exc)

    def _delay(self, attempt: int) -> float:
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = attempt
        return float(self._wait(state))

    # -- watching -----------------------------------------------------------

    async def _watch(self) -> None:
        """Sample watched progress, ask about backlogs, log changes of state."""
        while not self.stopping:
            await asyncio.sleep(min(1.0, self.stall_seconds / 4))
            for entry in list(self._entries.values()):
                try:
                    await self._observe(entry)
                except Exception:  # noqa: BLE001 - the monitor must outlive a bad probe
                    log.exception("watching background task %s failed", entry.name)

    async def _observe(self, entry: _Entry) -> None:
        watch, beat = entry.watch, entry.heartbeat
        if watch is not None and not entry.crashed:
            progress = watch.progress()
            if progress != entry.seen_progress:
                entry.seen_progress = progress
                entry.work_waiting = False
                beat.beat()
            elif (watch.backlog is not None
                  and self._clock() - beat.progress_at > entry.stall_seconds
                  and self._clock() - entry.backlog_checked_at >= entry.stall_seconds / 4):
                # No progress for a while: idle, or stuck with work waiting?
                entry.backlog_checked_at = self._clock()
                try:
                    entry.work_waiting = await watch.backlog(entry.stall_seconds)
                except Exception as exc:  # noqa: BLE001 - reported as the task's fault
                    beat.failed(exc)
                    # The database cannot say: shown as waiting for it, if that is why.
                    entry.work_waiting = isinstance(exc, GatewayError) and exc.temporary
        state = self._state(entry)
        if state != entry.reported:
            self._log_change(entry, state)
            entry.reported = state

    def _log_change(self, entry: _Entry, state: TaskState) -> None:
        idle = self._clock() - entry.heartbeat.progress_at
        if state == TaskState.STALLED:
            fault = entry.heartbeat.fault
            log.error("background task %s is stalled: no progress for %.0f s%s", entry.name,
                      idle, f" (last failure: {type(fault).__name__}: {fault})" if fault else "")
        elif state == TaskState.WAITING:
            log.warning("background task %s is waiting for storage: no progress for %.0f s "
                        "(%s)", entry.name, idle, entry.heartbeat.fault)
        elif state == TaskState.RUNNING and entry.reported != TaskState.RESTARTING:
            log.info("background task %s makes progress again", entry.name)

    def _state(self, entry: _Entry) -> TaskState:
        if entry.finished:
            return TaskState.FINISHED
        if entry.crashed or entry.current is None:
            return TaskState.RESTARTING
        beat = entry.heartbeat
        if entry.watch is not None and not entry.work_waiting:
            return TaskState.RUNNING  # watched from outside: idle until work is seen waiting
        if self._clock() - beat.progress_at <= entry.stall_seconds:
            return TaskState.RUNNING
        if isinstance(beat.fault, GatewayError) and beat.fault.temporary:
            return TaskState.WAITING
        return TaskState.STALLED

    def report(self) -> tuple[TaskHealth, ...]:
        now = self._clock()
        out = []
        for entry in self._entries.values():
            fault = entry.heartbeat.fault
            error, error_at = entry.last_error, entry.last_error_at
            if fault is not None and (error_at is None or (entry.heartbeat.fault_at or 0)
                                      > error_at):
                error, error_at = type(fault).__name__, entry.heartbeat.fault_at
            out.append(TaskHealth(
                name=entry.name, state=self._state(entry), restarts=entry.restarts,
                progress_seconds_ago=max(0.0, now - entry.heartbeat.progress_at),
                last_error=error,
                last_error_seconds_ago=None if error_at is None else max(0.0, now - error_at)))
        return tuple(out)

    def state_of(self, name: str) -> TaskState | None:
        entry = self._entries.get(name)
        return None if entry is None else self._state(entry)


def _cancelling() -> bool:
    """Whether this task itself has been asked to stop (3.11: Task.cancelling)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0

