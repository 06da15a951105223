"""Business hours: is an instant inside the desk's working week?

The instant comes from the input (`received_at`), never from a clock.
"""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from routing.rules import WEEKDAYS, BusinessHours


def parse_clock(text: str) -> time | None:
    """`HH:MM` as a time, or None when malformed. `24:00` is the end of the day."""
    hours, colon, minutes = text.partition(":")
    if not colon or not hours.isdigit() or not minutes.isdigit() or len(minutes) != 2:
        return None
    h, m = int(hours), int(minutes)
    if (h, m) == (24, 0):
        return time.max
    if not (0 <= h < 24 and 0 <= m < 60):
        return None
    return time(h, m)


def hours_errors(hours: BusinessHours) -> list[str]:
    errors: list[str] = []
    try:
        ZoneInfo(hours.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        errors.append(f"unknown time zone {hours.timezone!r}")
    for day in hours.days:
        if day not in WEEKDAYS:
            errors.append(f"unknown day {day!r}: use {', '.join(WEEKDAYS)}")
    start, end = parse_clock(hours.start), parse_clock(hours.end)
    if start is None:
        errors.append(f"start {hours.start!r} is not HH:MM")
    if end is None:
        errors.append(f"end {hours.end!r} is not HH:MM")
    if start is not None and end is not None and start >= end:
        errors.append(f"start {hours.start} must be before end {hours.end}")
    for day_text in hours.holidays:
        try:
            date.fromisoformat(day_text)
        except ValueError:
            errors.append(f"holiday {day_text!r} is not an ISO date (YYYY-MM-DD)")
    return errors


def within(hours: BusinessHours, instant: datetime) -> bool:
    """True when `instant` falls inside the business hours (checked config)."""
    if hours.calendar is not None:
        return hours.calendar.is_open(instant)
    local = instant.astimezone(ZoneInfo(hours.timezone))
    if WEEKDAYS[local.weekday()] not in hours.days:
        return False
    if local.date().isoformat() in hours.holidays:
        return False
    start, end = parse_clock(hours.start), parse_clock(hours.end)
    assert start is not None and end is not None  # validated when loaded
    return start <= local.time() < end
