"""Properties of business-time arithmetic, over a year that has both DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from routing.sla import (
    DEFAULT_CALENDAR,
    Calendar,
    add_business_time,
    business_time_between,
    due_at,
    elapsed_business_time,
    load_sla_config,
)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
CONFIG = load_sla_config(
    {
        "calendar": [
            {
                "name": "office",
                "timezone": "Europe/London",
                "hours": {d: "09:00-17:30" for d in WEEKDAYS},
                "holidays": {"country": "GB", "subdivision": "ENG"},
                "closed": ["2026-12-24"],
            },
            {
                "name": "lunch",
                "timezone": "America/New_York",
                "hours": {d: "08:00-12:00,13:00-17:00" for d in WEEKDAYS},
            },
            {
                "name": "nights",
                "timezone": "Europe/London",
                "hours": {
                    "sat": "22:00-24:00",
                    "sun": "00:00-01:30,02:30-06:00",
                    "wed": "01:30-02:30",
                },
            },
        ]
    }
)
CALENDARS = st.sampled_from(
    [CONFIG.calendar(n) for n in ("office", "lunch", "nights")] + [DEFAULT_CALENDAR]
)
YEAR_START = datetime(2026, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
# Minute-aligned instants through 2026, so the DST changes and holidays are in range.
INSTANTS = st.integers(0, 365 * 24 * 60).map(lambda m: YEAR_START + m * MINUTE)
DURATIONS = st.integers(0, 120 * 60).map(lambda m: m * MINUTE)
SETTINGS = settings(max_examples=150, deadline=None)


@SETTINGS
@given(CALENDARS, INSTANTS, DURATIONS)
def test_add_business_time__between_gives_the_duration_back(
    calendar: Calendar, start: datetime, duration: timedelta
) -> None:
    due = add_business_time(start, duration, calendar)
    assert business_time_between(start, due, calendar) == duration


@SETTINGS
@given(CALENDARS, INSTANTS, DURATIONS, DURATIONS)
def test_add_business_time__monotonic_in_duration(
    calendar: Calendar, start: datetime, a: timedelta, b: timedelta
) -> None:
    shorter, longer = sorted((a, b))
    early, late = (add_business_time(start, d, calendar) for d in (shorter, longer))
    assert early <= late
    assert (early < late) == (shorter < longer)


@SETTINGS
@given(CALENDARS, INSTANTS, DURATIONS)
def test_add_business_time__due_is_open_or_at_a_closing(
    calendar: Calendar, start: datetime, duration: timedelta
) -> None:
    due = add_business_time(start, duration, calendar)
    if duration:
        # The last minute before the due time was open time.
        assert calendar.is_open(due - timedelta(microseconds=1))


@SETTINGS
@given(CALENDARS, INSTANTS, st.integers(0, 30 * 24 * 60), st.integers(0, 30 * 24 * 60))
def test_business_time_between__additive(
    calendar: Calendar, start: datetime, first: int, second: int
) -> None:
    middle = start + first * MINUTE
    end = middle + second * MINUTE
    whole = business_time_between(start, end, calendar)
    assert whole == business_time_between(start, middle, calendar) + business_time_between(
        middle, end, calendar
    )
    assert whole <= end - start


@SETTINGS
@given(
    CALENDARS,
    INSTANTS,
    st.integers(1, 60 * 60).map(lambda m: m * MINUTE),
    st.lists(st.integers(0, 20 * 24 * 60), max_size=6),
)
def test_due_at__elapsed_at_the_due_time_is_the_target(
    calendar: Calendar, created: datetime, target: timedelta, offsets: list[int]
) -> None:
    # Alternate pause and resume at sorted offsets; an odd count leaves the
    # last pause open until `now`, a day after the last event.
    marks = sorted(set(offsets))
    events = [
        (created + m * MINUTE, "pause" if i % 2 == 0 else "resume") for i, m in enumerate(marks)
    ]
    now = created + (marks[-1] + 24 * 60 if marks else 0) * MINUTE
    due = due_at(created, target, calendar, events, now=now)
    assert due >= add_business_time(created, target, calendar)
    if due <= now:
        assert elapsed_business_time(created, due, calendar, events) == target
    else:  # the clock has not run the whole target by now
        assert elapsed_business_time(created, now, calendar, events) < target
