"""Business calendars: when a desk is open, and business-time arithmetic.

Open hours are local wall-clock times in the calendar's time zone; instants
in and out are aware datetimes (returned in UTC). No clock is read here.

Daylight saving: a range is one continuous stretch of real time, from the
first moment the wall clock shows its start to the last moment it shows its
end. On a spring-forward day "00:00-06:00" in Europe/London is 5 h long, on a
fall-back day 7 h. A start or end that the clock skips (01:30 when clocks go
from 01:00 to 02:00) is the moment of the change.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays

from domain.errors import ConfigError

DAY_MINUTES = 24 * 60
# How far `add_business_time` looks ahead before it gives up: a calendar with
# no open time, or a duration that does not fit, is an error, not a hang.
MAX_SEARCH_DAYS = 3 * 366
ZERO = timedelta(0)

Interval = tuple[datetime, datetime]


class SlaCalendarError(ConfigError):
    """Business time cannot be counted: the calendar has no open time ahead."""


def aware_utc(value: datetime, what: str) -> datetime:
    """`value` in UTC; ValueError for a naive datetime."""
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime (with a time zone), got {value}")
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class OpenRange:
    """Open from `start` to `end`, in minutes after local midnight (end 1440 = 24:00)."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end <= DAY_MINUTES:
            raise ValueError(f"open range needs 0 <= start < end <= 1440, got {self}")

    def __str__(self) -> str:
        return f"{_clock(self.start)}-{_clock(self.end)}"


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


ALL_DAY = (OpenRange(0, DAY_MINUTES),)


@dataclass(frozen=True, slots=True, kw_only=True)
class Calendar:
    """When the desk is open. The default is open 24 hours, 7 days, in UTC."""

    name: str
    timezone: str = "UTC"
    # Monday first; each day's ranges sorted and not overlapping; () = closed.
    week: tuple[tuple[OpenRange, ...], ...] = (ALL_DAY,) * 7
    holiday_country: str | None = None  # public holidays from the `holidays` package
    holiday_subdivision: str | None = None
    closed: frozenset[date] = frozenset()  # extra closed days
    business_day: timedelta = timedelta(hours=24)  # what "1d" in a target means

    def __post_init__(self) -> None:
        if len(self.week) != 7:
            raise ValueError(f"calendar {self.name!r}: week needs 7 days, got {len(self.week)}")
        for ranges in self.week:
            for before, after in zip(ranges, ranges[1:], strict=False):
                if after.start < before.end:
                    raise ValueError(f"calendar {self.name!r}: {before} and {after} overlap")
        ZoneInfo(self.timezone)  # unknown zone: ZoneInfoNotFoundError now, not later

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)  # cached by zoneinfo

    def is_closed_day(self, day: date) -> bool:
        """True for an extra closed day or a public holiday (whatever the weekday)."""
        if day in self.closed:
            return True
        if self.holiday_country is None:
            return False
        return day in public_holidays(self.holiday_country, self.holiday_subdivision, day.year)

    def open_ranges(self, day: date) -> tuple[OpenRange, ...]:
        """The local ranges the desk is open on `day`."""
        return () if self.is_closed_day(day) else self.week[day.weekday()]

    def is_open(self, instant: datetime) -> bool:
        at = aware_utc(instant, "instant")
        return any(lo <= at < hi for lo, hi in self.open_intervals(at, at + timedelta(days=2)))

    def open_intervals(self, start: datetime, until: datetime | None = None) -> Iterator[Interval]:
        """Open time from `start` on, as ascending, disjoint UTC intervals.

        Without `until` the search stops with `SlaCalendarError` after
        `MAX_SEARCH_DAYS` days; with it, the last interval ends by `until`.
        """
        start = aware_utc(start, "start")
        end = None if until is None else aware_utc(until, "until")
        zone = self.zone
        # From the day before: its ranges may reach past midnight.
        first = start.astimezone(zone).date() - timedelta(days=1)
        last = first + timedelta(days=MAX_SEARCH_DAYS) if end is None else None
        stop = None if end is None else end.astimezone(zone).date() + timedelta(days=1)
        day, cursor, found = first, start, False
        while True:
            if stop is not None and day > stop:
                return
            if last is not None and day > last:
                problem = "the time does not fit" if found else "no open time"
                raise SlaCalendarError(
                    f"calendar {self.name!r}: {problem} within {MAX_SEARCH_DAYS} days "
                    f"after {start.isoformat()}"
                )
            for rng in self.open_ranges(day):
                lo = max(wall_to_utc(day, rng.start, zone, latest=False), cursor)
                hi = wall_to_utc(day, rng.end, zone, latest=True)
                if end is not None:
                    hi = min(hi, end)
                if lo < hi:
                    found = True
                    cursor = hi  # on a repeated midnight, the next day starts where this ends
                    yield lo, hi
            day += timedelta(days=1)


DEFAULT_CALENDAR = Calendar(name="24x7")


@functools.lru_cache(maxsize=512)
def public_holidays(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    """Public holidays (observed days included) of `year` from the `holidays` package."""
    # Neighbouring years too: a holiday observed across New Year is listed in its own year.
    table = holidays.country_holidays(country, subdiv=subdivision, years=(year - 1, year, year + 1))
    return frozenset(d for d in table if d.year == year)


def wall_to_utc(day: date, minute: int, zone: ZoneInfo, *, latest: bool) -> datetime:
    """The UTC instant the wall clock shows `minute` after midnight of `day`.

    A time shown twice (clocks set back) is its first showing, or its last when
    `latest`; a time never shown (clocks set forward) is the moment of the change.
    """
    naive = datetime.combine(day, time()) + timedelta(minutes=minute)
    early = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    late = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if early == late:
        return early
    if early < late:
        return late if latest else early
    # In a gap fold=0 reads it with the offset before the change, fold=1 after,
    # so the change lies between: find the first second the clock shows >= naive.
    lo, hi = late, early
    while hi - lo > timedelta(seconds=1):
        mid = lo + timedelta(seconds=int((hi - lo).total_seconds()) // 2)
        if mid.astimezone(zone).replace(tzinfo=None) >= naive:
            hi = mid
        else:
            lo = mid
    return hi


def advance(intervals: Iterator[Interval], start: datetime, amount: timedelta) -> datetime:
    """The instant `amount` of the intervals' time has passed (`start` for zero)."""
    if amount <= ZERO:
        return start
    for lo, hi in intervals:
        if amount <= hi - lo:
            return lo + amount
        amount -= hi - lo
    raise SlaCalendarError("the intervals ended before the time was reached")


def add_business_time(
    start: datetime, duration: timedelta, calendar: Calendar = DEFAULT_CALENDAR
) -> datetime:
    """The instant `duration` of open time has passed after `start` (UTC).

    The earliest such instant: a target reached at closing time is due at
    closing time, not at the next opening. A zero duration gives `start`.
    """
    start = aware_utc(start, "start")
    if duration < ZERO:
        raise ValueError(f"duration must not be negative, got {duration}")
    return advance(calendar.open_intervals(start), start, duration)


def business_time_between(
    start: datetime, end: datetime, calendar: Calendar = DEFAULT_CALENDAR
) -> timedelta:
    """Open time between `start` and `end`; ValueError when `end` is before `start`."""
    start, end = aware_utc(start, "start"), aware_utc(end, "end")
    if end < start:
        raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()}")
    return sum((hi - lo for lo, hi in calendar.open_intervals(start, end)), ZERO)
