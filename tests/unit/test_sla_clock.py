"""SLA timers: pauses, due times, warning, met and breached."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from routing.sla import (
    ClockEvent,
    Pause,
    Policy,
    due_at,
    elapsed_business_time,
    load_sla_config,
    pauses_from_events,
    sla_state,
    target_state,
)

# London is on GMT in November/December, so UTC reads as office wall time.
SLA = load_sla_config(
    {
        "calendar": [
            {
                "name": "office",
                "timezone": "Europe/London",
                "hours": {d: "09:00-17:00" for d in ("mon", "tue", "wed", "thu", "fri")},
                "holidays": {"country": "GB", "subdivision": "ENG"},
            }
        ],
        "sla": [
            {
                "name": "standard",
                "first_response": "4h",
                "resolution": "2d",
                "calendar": "office",
                "warn_at": 0.75,
            },
            {"name": "only-resolution", "queue": "bulk", "resolution": "1d"},
        ],
    }
)
OFFICE = SLA.calendar("office")
STANDARD = SLA.select()
H = timedelta(hours=1)
M = timedelta(minutes=1)


def at(d: int, h: int, mi: int = 0) -> datetime:
    """An instant in the week of Monday 30 Nov 2026 (d=0 is Monday)."""
    return datetime(2026, 11, 30, h, mi, tzinfo=UTC) + timedelta(days=d)


CREATED = at(0, 9)


def test_elapsed_business_time__no_pauses() -> None:
    assert elapsed_business_time(CREATED, at(1, 12), OFFICE) == 11 * H


def test_elapsed_business_time__single_pause() -> None:
    events = [(at(0, 10), "pause"), (at(0, 13), "resume")]
    assert elapsed_business_time(CREATED, at(0, 17), OFFICE, events) == 5 * H


def test_elapsed_business_time__several_pauses_in_any_order() -> None:
    events = [
        ClockEvent(at(1, 11), "resume"),
        ClockEvent(at(0, 10), "pause"),
        ClockEvent(at(0, 11), "resume"),
        ClockEvent(at(0, 16), "pause"),  # over the night: 1h of business time
    ]
    assert elapsed_business_time(CREATED, at(1, 17), OFFICE, events) == 16 * H - H - 3 * H


def test_elapsed_business_time__open_ended_pause_counts_to_now() -> None:
    events = [(at(0, 11), "pause")]
    assert elapsed_business_time(CREATED, at(0, 15), OFFICE, events) == 2 * H


def test_elapsed_business_time__pause_outside_hours_changes_nothing() -> None:
    events = [(at(0, 18), "pause"), (at(1, 8), "resume")]
    assert elapsed_business_time(CREATED, at(1, 10), OFFICE, events) == 9 * H


def test_pauses_from_events__repeats_are_ignored() -> None:
    events = [
        (at(0, 10), "pause"),
        (at(0, 11), "pause"),
        (at(0, 12), "resume"),
        (at(0, 13), "resume"),
        (at(0, 14), "pause"),
    ]
    assert pauses_from_events(events) == (Pause(at(0, 10), at(0, 12)), Pause(at(0, 14), None))


def test_pauses_from_events__rejects_unknown_kind_and_naive() -> None:
    with pytest.raises(ValueError, match="'stop'"):
        pauses_from_events([(at(0, 10), "stop")])
    with pytest.raises(ValueError, match="aware"):
        pauses_from_events([(datetime(2026, 11, 30, 10), "pause")])


def test_due_at__no_pauses() -> None:
    assert due_at(CREATED, 4 * H, OFFICE) == at(0, 13)


def test_due_at__pushed_out_by_paused_business_time() -> None:
    events = [(at(0, 10), "pause"), (at(0, 12), "resume")]
    assert due_at(CREATED, 4 * H, OFFICE, events, now=at(0, 12)) == at(0, 15)


def test_due_at__pause_over_a_night_only_pushes_business_time() -> None:
    # Paused Monday 16:00 to Tuesday 10:00: 2h of open time.
    events = [(at(0, 16), "pause"), (at(1, 10), "resume")]
    assert due_at(CREATED, 8 * H, OFFICE, events) == at(1, 11)


def test_due_at__open_ended_pause_projects_a_resume_at_now() -> None:
    events = [(at(0, 10), "pause")]
    assert due_at(CREATED, 4 * H, OFFICE, events, now=at(0, 14)) == at(0, 17)
    with pytest.raises(ValueError, match="needs `now`"):
        due_at(CREATED, 4 * H, OFFICE, events)


def test_due_at__rejects_negative_target_and_naive_created() -> None:
    with pytest.raises(ValueError, match="negative"):
        due_at(CREATED, -H, OFFICE)
    with pytest.raises(ValueError, match="created_at must be an aware"):
        due_at(datetime(2026, 11, 30, 9), H, OFFICE)


def test_due_at__events_after_now_are_ignored() -> None:
    events = [(at(0, 10), "pause"), (at(0, 11), "resume")]
    assert due_at(CREATED, 4 * H, OFFICE, events, now=at(0, 9, 30)) == at(0, 13)


def test_target_state__ok_then_warning_then_breached() -> None:
    def status(now: datetime) -> str:
        return target_state(4 * H, CREATED, now, calendar=OFFICE, warn_at=0.75).status

    assert status(at(0, 11, 59)) == "ok"
    assert status(at(0, 12)) == "warning"  # 3h of 4h
    assert status(at(0, 12, 59)) == "warning"
    assert status(at(0, 13)) == "breached"


def test_target_state__fields() -> None:
    state = target_state(4 * H, CREATED, at(0, 12, 30), calendar=OFFICE, warn_at=0.75)
    assert (state.due_at, state.warn_at) == (at(0, 13), at(0, 12))
    assert (state.elapsed, state.remaining) == (3.5 * H, 0.5 * H)
    assert state.met_at is None and not state.paused


def test_target_state__met_in_time_and_at_the_due_time() -> None:
    met = target_state(4 * H, CREATED, at(2, 9), calendar=OFFICE, met_at=at(0, 11))
    assert (met.status, met.elapsed, met.met_at) == ("met", 2 * H, at(0, 11))
    exact = target_state(4 * H, CREATED, at(2, 9), calendar=OFFICE, met_at=at(0, 13))
    assert exact.status == "met"


def test_target_state__met_late_is_breached() -> None:
    late = target_state(4 * H, CREATED, at(2, 9), calendar=OFFICE, met_at=at(0, 13, 1))
    assert late.status == "breached"
    assert late.met_at == at(0, 13, 1)
    assert late.remaining == -M


def test_target_state__pause_keeps_it_from_breaching() -> None:
    events = [(at(0, 11), "pause")]
    state = target_state(4 * H, CREATED, at(1, 16), calendar=OFFICE, events=events)
    assert state.paused
    assert state.status == "ok"  # 2h of 4h, warning at 3h
    assert state.due_at == at(2, 10)  # as if resumed at 16:00: 1h Tuesday, 1h Wednesday


def test_target_state__paused_after_the_warning_stays_warning() -> None:
    events = [(at(0, 12, 30), "pause")]
    state = target_state(4 * H, CREATED, at(3, 9), calendar=OFFICE, warn_at=0.75, events=events)
    assert (state.status, state.paused, state.elapsed) == ("warning", True, 3.5 * H)


def test_target_state__pause_after_breach_changes_nothing() -> None:
    events = [(at(0, 14), "pause")]
    state = target_state(4 * H, CREATED, at(0, 16), calendar=OFFICE, events=events)
    assert (state.status, state.due_at) == ("breached", at(0, 13))


def test_target_state__met_while_paused_uses_pauses_up_to_met() -> None:
    events = [(at(0, 10), "pause"), (at(0, 14), "resume"), (at(0, 15), "pause")]
    state = target_state(4 * H, CREATED, at(1, 9), calendar=OFFICE, events=events, met_at=at(0, 16))
    assert (state.status, state.elapsed, state.due_at) == ("met", 2 * H, at(1, 10))
    assert not state.paused


def test_target_state__rejects_met_after_now_and_bad_warn() -> None:
    with pytest.raises(ValueError, match="after now"):
        target_state(4 * H, CREATED, at(0, 10), calendar=OFFICE, met_at=at(0, 11))
    with pytest.raises(ValueError, match="warn_at"):
        target_state(4 * H, CREATED, at(0, 10), calendar=OFFICE, warn_at=1.5)


def test_target_state__met_before_created_counts_as_met_at_once() -> None:
    state = target_state(4 * H, CREATED, at(0, 10), calendar=OFFICE, met_at=at(0, 8))
    assert (state.status, state.met_at, state.elapsed) == ("met", CREATED, 0 * H)


def test_sla_state__both_targets() -> None:
    assert isinstance(STANDARD, Policy)
    state = sla_state(
        STANDARD,
        CREATED,
        at(1, 16),
        events=iter([(at(1, 9), "pause"), (at(1, 10), "resume")]),
        first_response_at=at(0, 10),
    )
    assert state.policy == "standard"
    assert state.first_response is not None and state.resolution is not None
    assert state.first_response.status == "met"
    # 2d = 16 business hours; 8h Monday, 6h Tuesday (1h paused): 14h, warning at 12h.
    assert state.resolution.status == "warning"
    assert state.resolution.elapsed == 14 * H
    assert state.resolution.due_at == at(2, 10)  # 2h left: Tuesday 16-17, Wednesday 9-10


def test_sla_state__missing_target_is_none() -> None:
    bulk = SLA.select(queue="bulk")
    assert bulk is not None and bulk.name == "only-resolution"
    state = sla_state(bulk, CREATED, at(0, 12))
    assert state.first_response is None
    assert state.resolution is not None and state.resolution.target == 24 * H  # 24x7: d = 24h


def test_sla_state__rejects_naive_now() -> None:
    assert STANDARD is not None
    with pytest.raises(ValueError, match="now must be an aware"):
        sla_state(STANDARD, CREATED, datetime(2026, 11, 30, 12))
