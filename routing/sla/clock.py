"""SLA timers: pauses, due times and the state of a request's targets.

The clock stops while a request waits on the customer: `pause` and `resume`
events cut those stretches out of the calendar's open time. A pause still open
at `now` is taken to end at `now`, so a due time is the earliest it can be if
the clock restarted now, and a paused timer never breaches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, get_args

from routing.sla.calendar import (
    DEFAULT_CALENDAR,
    ZERO,
    Calendar,
    Interval,
    advance,
    aware_utc,
)
from routing.sla.policy import Policy

EventKind = Literal["pause", "resume"]
Status = Literal["ok", "warning", "breached", "met"]


@dataclass(frozen=True, slots=True)
class ClockEvent:
    """The clock stops (`pause`) or starts again (`resume`) at `at`."""

    at: datetime
    kind: EventKind

    def __post_init__(self) -> None:
        aware_utc(self.at, "event time")
        if self.kind not in get_args(EventKind):
            raise ValueError(f"event kind must be 'pause' or 'resume', got {self.kind!r}")


@dataclass(frozen=True, slots=True)
class Pause:
    start: datetime
    end: datetime | None = None  # None: still paused


Events = Iterable[ClockEvent | tuple[datetime, str]]


def pauses_from_events(events: Events) -> tuple[Pause, ...]:
    """The paused stretches, in order, from events in any order.

    A `pause` while paused and a `resume` while running change nothing (the
    earlier pause start stands). Events at the same instant keep their order.
    """
    normal = [_event(e) for e in events]
    normal.sort(key=lambda e: aware_utc(e.at, "event time"))
    pauses: list[Pause] = []
    started: datetime | None = None
    for event in normal:
        at = aware_utc(event.at, "event time")
        if event.kind == "pause" and started is None:
            started = at
        elif event.kind == "resume" and started is not None:
            if at > started:
                pauses.append(Pause(started, at))
            started = None
    if started is not None:
        pauses.append(Pause(started, None))
    return tuple(pauses)


def _event(event: ClockEvent | tuple[datetime, str]) -> ClockEvent:
    if isinstance(event, ClockEvent):
        return event
    at, kind = event
    if kind == "pause":
        return ClockEvent(at, "pause")
    if kind == "resume":
        return ClockEvent(at, "resume")
    raise ValueError(f"event kind must be 'pause' or 'resume', got {kind!r}")


def _closed_at(pauses: Sequence[Pause], now: datetime | None) -> list[Interval]:
    """Pauses as intervals; what is after `now` is unknown and dropped."""
    out: list[Interval] = []
    for p in pauses:
        if now is not None and p.start >= now:
            break
        end = p.end if p.end is not None and (now is None or p.end <= now) else now
        if end is None:
            raise ValueError("a pause that has not ended needs `now` to be counted")
        out.append((p.start, end))
    return out


def running_intervals(
    calendar: Calendar,
    start: datetime,
    pauses: Sequence[Interval],
    until: datetime | None = None,
) -> Iterator[Interval]:
    """Open time from `start` (to `until`) with the paused stretches cut out."""
    i, n = 0, len(pauses)
    for lo, hi in calendar.open_intervals(start, until):
        while lo < hi:
            while i < n and pauses[i][1] <= lo:
                i += 1
            if i == n or pauses[i][0] >= hi:
                yield lo, hi
                break
            if pauses[i][0] > lo:
                yield lo, pauses[i][0]
            lo = pauses[i][1]


def elapsed_business_time(
    start: datetime, now: datetime, calendar: Calendar = DEFAULT_CALENDAR, events: Events = ()
) -> timedelta:
    """Open, unpaused time from `start` to `now`; zero when `now` is not after `start`."""
    start, now = aware_utc(start, "start"), aware_utc(now, "now")
    if now <= start:
        return ZERO
    paused = _closed_at(pauses_from_events(events), now)
    return sum((hi - lo for lo, hi in running_intervals(calendar, start, paused, now)), ZERO)


def due_at(
    created_at: datetime,
    target: timedelta,
    calendar: Calendar = DEFAULT_CALENDAR,
    events: Events = (),
    now: datetime | None = None,
) -> datetime:
    """When `target` of open, unpaused time has passed since `created_at` (UTC).

    Paused business time pushes it out. With `now`, events after it are
    ignored and a pause still open is counted up to `now`; without `now`, an
    open pause is a ValueError.
    """
    created_at = aware_utc(created_at, "created_at")
    if target < ZERO:
        raise ValueError(f"target must not be negative, got {target}")
    horizon = None if now is None else aware_utc(now, "now")
    paused = _closed_at(pauses_from_events(events), horizon)
    return advance(running_intervals(calendar, created_at, paused), created_at, target)


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetState:
    """One target (first response or resolution) of a request at `now`."""

    target: timedelta
    due_at: datetime
    warn_at: datetime
    elapsed: timedelta  # business time counted, to `met_at` or `now`
    status: Status
    met_at: datetime | None = None  # set with "met", or with "breached" when met late
    paused: bool = False

    @property
    def remaining(self) -> timedelta:
        """Business time left; negative once over the target."""
        return self.target - self.elapsed


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaState:
    policy: str
    first_response: TargetState | None
    resolution: TargetState | None


def target_state(
    target: timedelta,
    created_at: datetime,
    now: datetime,
    *,
    calendar: Calendar = DEFAULT_CALENDAR,
    warn_at: float = 0.8,
    events: Events = (),
    met_at: datetime | None = None,
) -> TargetState:
    """Status at `now`: met (by the due time), breached, warning (past
    `warn_at` of the target) or ok. Met exactly at the due time is met; not
    met at the due time is breached. A `met_at` before `created_at` counts as
    met at once; one after `now` is a ValueError."""
    if target <= ZERO or not 0 < warn_at <= 1:
        raise ValueError(f"need target > 0 and 0 < warn_at <= 1, got {target}, {warn_at}")
    created_at, now = aware_utc(created_at, "created_at"), aware_utc(now, "now")
    met = None if met_at is None else max(aware_utc(met_at, "met_at"), created_at)
    if met is not None and met > now:
        raise ValueError(f"met_at {met.isoformat()} is after now {now.isoformat()}")
    horizon = max(now if met is None else met, created_at)
    pauses = pauses_from_events(events)
    paused = _closed_at(pauses, horizon)
    due = advance(running_intervals(calendar, created_at, paused), created_at, target)
    warn = advance(running_intervals(calendar, created_at, paused), created_at, target * warn_at)
    elapsed = sum(
        (hi - lo for lo, hi in running_intervals(calendar, created_at, paused, horizon)), ZERO
    )
    status: Status
    if met is not None:
        status = "met" if met <= due else "breached"
    else:
        status = "breached" if now >= due else "warning" if now >= warn else "ok"
    still_paused = met is None and any(
        p.start <= horizon and (p.end is None or p.end > horizon) for p in pauses
    )
    return TargetState(
        target=target,
        due_at=due,
        warn_at=warn,
        elapsed=elapsed,
        status=status,
        met_at=met,
        paused=still_paused,
    )


def sla_state(
    policy: Policy,
    created_at: datetime,
    now: datetime,
    *,
    events: Events = (),
    first_response_at: datetime | None = None,
    resolved_at: datetime | None = None,
) -> SlaState:
    """Both targets of `policy` for a request created at `created_at`.

    The same pause events stop both clocks.
    """
    events = tuple(events)  # read once per target

    def state(target: timedelta | None, met_at: datetime | None) -> TargetState | None:
        if target is None:
            return None
        return target_state(
            target,
            created_at,
            now,
            calendar=policy.calendar,
            warn_at=policy.warn_at,
            events=events,
            met_at=met_at,
        )

    return SlaState(
        policy=policy.name,
        first_response=state(policy.first_response, first_response_at),
        resolution=state(policy.resolution, resolved_at),
    )
