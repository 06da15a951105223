"""Business-time arithmetic on calendars: hours, weekends, holidays, DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from routing.sla import (
    DEFAULT_CALENDAR,
    Calendar,
    OpenRange,
    SlaCalendarError,
    add_business_time,
    business_time_between,
    load_sla_config,
    public_holidays,
)

LONDON = ZoneInfo("Europe/London")
WEEKDAY = "09:00-17:30"
CONFIG = {
    "calendar": [
        {
            "name": "office",
            "timezone": "Europe/London",
            "hours": {
                "mon": WEEKDAY,
                "tue": WEEKDAY,
                "wed": WEEKDAY,
                "thu": WEEKDAY,
                "fri": "09:00-17:00",
            },
            "holidays": {"country": "GB", "subdivision": "ENG"},
            "closed": ["2026-12-24", "2026-12-31"],
        },
        {
            "name": "lunch",
            "timezone": "Europe/London",
            "hours": {d: "08:00-12:00,13:00-17:00" for d in ("mon", "tue", "wed", "thu", "fri")},
        },
        {
            "name": "nights",  # open on the DST Sundays, across the change
            "timezone": "Europe/London",
            "hours": {"sun": "00:00-06:00", "sat": "22:00-24:00"},
        },
    ]
}
SLA = load_sla_config(CONFIG)
OFFICE = SLA.calendar("office")
LUNCH = SLA.calendar("lunch")
NIGHTS = SLA.calendar("nights")
H = timedelta(hours=1)
M = timedelta(minutes=1)


def ldn(y: int, mo: int, d: int, h: int = 0, mi: int = 0, fold: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=LONDON, fold=fold)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


def test_add_business_time__within_a_day() -> None:
    # Monday 30 Nov 2026, London is on GMT (= UTC).
    due = add_business_time(ldn(2026, 11, 30, 10), 3 * H, OFFICE)
    assert due == ldn(2026, 11, 30, 13)
    assert due.tzinfo is UTC


def test_add_business_time__ends_exactly_at_closing() -> None:
    assert add_business_time(ldn(2026, 11, 30, 9), 8.5 * H, OFFICE) == ldn(2026, 11, 30, 17, 30)


def test_add_business_time__overnight() -> None:
    # 16:30 Monday + 2h: 1h on Monday, 1h on Tuesday morning.
    assert add_business_time(ldn(2026, 11, 30, 16, 30), 2 * H, OFFICE) == ldn(2026, 12, 1, 10)


def test_add_business_time__over_a_weekend() -> None:
    # Friday closes at 17:00.
    assert add_business_time(ldn(2026, 12, 4, 16), 3 * H, OFFICE) == ldn(2026, 12, 7, 11)


def test_public_holidays__gb_eng_christmas_2026() -> None:
    days = public_holidays("GB", "ENG", 2026)
    assert date(2026, 12, 25) in days  # Christmas Day, a Friday
    assert date(2026, 12, 26) in days  # Boxing Day, a Saturday
    assert date(2026, 12, 28) in days  # Boxing Day (observed), the Monday
    assert date(2026, 12, 29) not in days


def test_add_business_time__over_public_holidays() -> None:
    # Wed 23 Dec 16:00: 1.5h left that day; 24th closed (extra), 25th holiday,
    # weekend, 28th substitute Boxing Day: resumes Tue 29th.
    assert add_business_time(ldn(2026, 12, 23, 16), 2 * H, OFFICE) == ldn(2026, 12, 29, 9, 30)


def test_add_business_time__extra_closed_days() -> None:
    # Wed 30 Dec 17:00 + 1h: 31 Dec closed (extra), 1 Jan holiday, weekend.
    assert add_business_time(ldn(2026, 12, 30, 17), H, OFFICE) == ldn(2027, 1, 4, 9, 30)


def test_business_time_between__over_the_christmas_closures() -> None:
    # 23rd 09:00 to 29th 12:00: 8.5h on the 23rd and 3h on the 29th.
    got = business_time_between(ldn(2026, 12, 23, 9), ldn(2026, 12, 29, 12), OFFICE)
    assert got == 11.5 * H


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (ldn(2026, 11, 30, 7), ldn(2026, 11, 30, 10)),  # before opening
        (ldn(2026, 11, 30, 18), ldn(2026, 12, 1, 10)),  # after closing
        (ldn(2026, 11, 29, 12), ldn(2026, 11, 30, 10)),  # on a Sunday
        (ldn(2026, 11, 28, 23, 59), ldn(2026, 11, 30, 10)),  # late on a Saturday
    ],
)
def test_add_business_time__start_outside_hours(start: datetime, expected: datetime) -> None:
    assert add_business_time(start, H, OFFICE) == expected


def test_business_time_between__start_and_end_outside_hours() -> None:
    # Sunday noon to Monday 20:00: the whole of Monday.
    got = business_time_between(ldn(2026, 11, 29, 12), ldn(2026, 11, 30, 20), OFFICE)
    assert got == 8.5 * H


def test_business_time_between__within_closed_time_is_zero() -> None:
    assert business_time_between(ldn(2026, 11, 28, 9), ldn(2026, 11, 29, 20), OFFICE) == 0 * H


def test_add_business_time__lunch_break() -> None:
    # 11:00 + 2h: 1h before lunch, 1h after it.
    assert add_business_time(ldn(2026, 11, 30, 11), 2 * H, LUNCH) == ldn(2026, 11, 30, 14)
    # Starting in the break counts from 13:00.
    assert add_business_time(ldn(2026, 11, 30, 12, 15), 30 * M, LUNCH) == ldn(2026, 11, 30, 13, 30)


def test_business_time_between__lunch_break() -> None:
    assert business_time_between(ldn(2026, 11, 30, 8), ldn(2026, 11, 30, 17), LUNCH) == 8 * H


def test_add_business_time__reaching_the_lunch_break_is_due_at_noon() -> None:
    assert add_business_time(ldn(2026, 11, 30, 11), H, LUNCH) == ldn(2026, 11, 30, 12)


def test_business_time_between__spring_forward_day_is_shorter() -> None:
    # 2026-03-29: clocks go from 01:00 GMT to 02:00 BST; "00:00-06:00" is 5h.
    sunday = business_time_between(utc(2026, 3, 28, 12), utc(2026, 3, 30), NIGHTS)
    assert sunday == 2 * H + 5 * H  # Saturday 22:00-24:00 GMT, then the short Sunday


def test_business_time_between__fall_back_day_is_longer() -> None:
    # 2026-10-25: clocks go from 02:00 BST back to 01:00 GMT; "00:00-06:00" is 7h.
    assert business_time_between(utc(2026, 10, 25), utc(2026, 10, 26), NIGHTS) == 7 * H - H
    # (from 00:00 UTC = 01:00 BST the first hour of the range has passed)
    assert business_time_between(ldn(2026, 10, 25), ldn(2026, 10, 26), NIGHTS) == 7 * H


def test_add_business_time__spans_spring_forward() -> None:
    # From Sunday 00:30 GMT, 3h of open time: 00:30-01:00 GMT, then 02:00-04:30 BST.
    due = add_business_time(ldn(2026, 3, 29, 0, 30), 3 * H, NIGHTS)
    assert due == ldn(2026, 3, 29, 4, 30)
    assert due == utc(2026, 3, 29, 3, 30)


def test_add_business_time__spans_fall_back() -> None:
    # From Sunday 00:30 BST (23:30 UTC), 3h: 00:30-02:00 BST, 01:00-02:30 GMT.
    due = add_business_time(ldn(2026, 10, 25, 0, 30), 3 * H, NIGHTS)
    assert due == utc(2026, 10, 25, 2, 30)
    assert due == ldn(2026, 10, 25, 2, 30)


def test_add_business_time__across_a_dst_weekend_in_office_hours() -> None:
    # Friday 27 Mar 16:00 GMT + 2h: 1h on Friday, then Monday 09:00 BST + 1h.
    assert add_business_time(ldn(2026, 3, 27, 16), 2 * H, OFFICE) == utc(2026, 3, 30, 9)
    # Friday 23 Oct 16:00 BST + 2h: Monday 10:00 GMT.
    assert add_business_time(ldn(2026, 10, 23, 16), 2 * H, OFFICE) == utc(2026, 10, 26, 10)


def test_open_intervals__skipped_start_time_opens_at_the_change() -> None:
    # "01:30-05:00" on the spring-forward day: 01:30 never shows, the clock
    # jumps to 02:00 at 01:00 UTC, so the desk opens then.
    cal = Calendar(name="x", timezone="Europe/London", week=((OpenRange(90, 300),),) * 7)
    got = list(cal.open_intervals(utc(2026, 3, 29), utc(2026, 3, 30)))
    assert got == [(utc(2026, 3, 29, 1), utc(2026, 3, 29, 4))]


def test_open_intervals__repeated_start_time_opens_at_its_first_showing() -> None:
    # "01:30-05:00" on the fall-back day: 01:30 shows first at 00:30 UTC (BST).
    cal = Calendar(name="x", timezone="Europe/London", week=((OpenRange(90, 300),),) * 7)
    got = list(cal.open_intervals(utc(2026, 10, 25), utc(2026, 10, 26)))
    assert got == [(utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 5))]


def test_add_business_time__24x7_default() -> None:
    start = utc(2026, 11, 29, 23, 45)
    assert add_business_time(start, 5 * 24 * H) == utc(2026, 12, 4, 23, 45)
    assert business_time_between(start, utc(2026, 12, 1, 23, 45), DEFAULT_CALENDAR) == 48 * H


def test_add_business_time__24x7_in_london_is_real_time_across_dst() -> None:
    cal = load_sla_config({"calendar": [{"name": "ldn", "timezone": "Europe/London"}]}).calendar(
        "ldn"
    )
    assert add_business_time(ldn(2026, 3, 28, 12), 24 * H, cal) == ldn(2026, 3, 29, 13)
    assert business_time_between(ldn(2026, 10, 24, 12), ldn(2026, 10, 25, 12), cal) == 25 * H


def test_add_business_time__zero_is_start() -> None:
    assert add_business_time(ldn(2026, 11, 29, 12), 0 * H, OFFICE) == utc(2026, 11, 29, 12)


def test_add_business_time__accepts_any_aware_zone() -> None:
    new_york = datetime(2026, 11, 30, 5, tzinfo=ZoneInfo("America/New_York"))  # 10:00 UTC
    assert add_business_time(new_york, H, OFFICE) == utc(2026, 11, 30, 11)


def test_add_business_time__rejects_naive() -> None:
    with pytest.raises(ValueError, match="aware"):
        add_business_time(datetime(2026, 11, 30, 9), H, OFFICE)


def test_business_time_between__rejects_naive_end() -> None:
    with pytest.raises(ValueError, match="end must be an aware"):
        business_time_between(utc(2026, 11, 30), datetime(2026, 12, 1), OFFICE)


def test_business_time_between__rejects_end_before_start() -> None:
    with pytest.raises(ValueError, match="before start"):
        business_time_between(utc(2026, 12, 1), utc(2026, 11, 30), OFFICE)


def test_add_business_time__rejects_negative_duration() -> None:
    with pytest.raises(ValueError, match="negative"):
        add_business_time(utc(2026, 11, 30), -H, OFFICE)


def test_add_business_time__calendar_never_open_raises() -> None:
    never = Calendar(name="never", week=((),) * 7)
    with pytest.raises(SlaCalendarError, match="'never': no open time within"):
        add_business_time(utc(2026, 11, 30), H, never)


def test_add_business_time__duration_beyond_the_search_raises() -> None:
    with pytest.raises(SlaCalendarError, match="does not fit"):
        add_business_time(utc(2026, 11, 30), 8000 * H, OFFICE)


def test_is_open__office_hours() -> None:
    assert OFFICE.is_open(ldn(2026, 11, 30, 9))
    assert not OFFICE.is_open(ldn(2026, 11, 30, 17, 30))
    assert not OFFICE.is_open(ldn(2026, 12, 25, 12))
    assert LUNCH.is_open(ldn(2026, 6, 1, 8)) and ldn(2026, 6, 1, 8) == utc(2026, 6, 1, 7)
