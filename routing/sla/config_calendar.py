"""Reading one `[[calendar]]` table."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from routing.sla.calendar import ALL_DAY, ZERO, Calendar, OpenRange
from routing.sla.grammar import (
    BUSINESS_DAY,
    WEEKDAYS,
    Issues,
    parse_duration,
    parse_hours,
    read_name,
    unknown,
)

CALENDAR_KEYS = {"name", "timezone", "hours", "holidays", "closed", "business_day"}


def read_calendar(
    table: Mapping[str, Any], where: str, seen: set[str], issues: Issues
) -> Calendar | None:
    before = len(issues.items)
    unknown(table, CALENDAR_KEYS, where, issues)
    name = read_name(table, where, seen, issues)
    zone = table.get("timezone", "UTC")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        issues.add(f"{where}.timezone", f"unknown time zone {zone!r} (an IANA name)")
    week: tuple[tuple[OpenRange, ...], ...] = (ALL_DAY,) * 7
    hours = table.get("hours")
    if hours is not None:
        week = _read_week(hours, f"{where}.hours", issues)
    country, subdivision = _read_holidays(table.get("holidays"), f"{where}.holidays", issues)
    closed = _read_closed(table.get("closed", []), f"{where}.closed", issues)
    business_day = BUSINESS_DAY if hours is not None else timedelta(hours=24)
    if "business_day" in table:
        text = table["business_day"]
        try:
            business_day = parse_duration(text if isinstance(text, str) else "?", None)
            if not ZERO < business_day <= timedelta(hours=24):
                raise ValueError(f"{text!r} must be more than 0 and at most 24h")
        except ValueError as exc:
            issues.add(f"{where}.business_day", str(exc))
    if name is None or len(issues.items) > before:
        return None
    return Calendar(
        name=name,
        timezone=zone,
        week=week,
        holiday_country=country,
        holiday_subdivision=subdivision,
        closed=closed,
        business_day=business_day,
    )


def _read_week(hours: object, where: str, issues: Issues) -> tuple[tuple[OpenRange, ...], ...]:
    if not isinstance(hours, Mapping):
        issues.add(where, 'must be a table like { mon = "09:00-17:30" }')
        return ((),) * 7
    days: dict[str, tuple[OpenRange, ...]] = {}
    for day, text in hours.items():
        if day not in WEEKDAYS:
            issues.add(f"{where}.{day}", f"unknown day (use {', '.join(WEEKDAYS)})")
        elif not isinstance(text, str):
            issues.add(f"{where}.{day}", 'must be a string like "08:00-12:00,13:00-17:00"')
        else:
            try:
                days[day] = parse_hours(text)
            except ValueError as exc:
                issues.add(f"{where}.{day}", str(exc))
    if not any(days.values()) and len(days) == sum(1 for d in hours if d in WEEKDAYS):
        issues.add(where, "no open hours on any day: the desk would never be open")
    return tuple(days.get(day, ()) for day in WEEKDAYS)


def _read_holidays(raw: object, where: str, issues: Issues) -> tuple[str | None, str | None]:
    if raw is None:
        return None, None
    if not isinstance(raw, Mapping) or not isinstance(raw.get("country"), str):
        issues.add(where, 'must be a table like { country = "GB", subdivision = "ENG" }')
        return None, None
    unknown(raw, {"country", "subdivision"}, where, issues)
    country, subdivision = raw["country"], raw.get("subdivision")
    if subdivision is not None and not isinstance(subdivision, str):
        issues.add(f"{where}.subdivision", "must be a string")
        return None, None
    supported = holidays.list_supported_countries()
    if country not in supported:
        issues.add(f"{where}.country", f"{country!r} is not a country the holidays package knows")
        return None, None
    try:
        holidays.country_holidays(country, subdiv=subdivision, years=2000)
    except (NotImplementedError, KeyError, ValueError):
        known = ", ".join(supported[country]) or "none"
        issues.add(
            f"{where}.subdivision", f"unknown {subdivision!r} for {country} (known: {known})"
        )
        return None, None
    return country, subdivision


def _read_closed(raw: object, where: str, issues: Issues) -> frozenset[date]:
    if not isinstance(raw, list):
        issues.add(where, 'must be a list of dates like ["2026-12-24"]')
        return frozenset()
    days: set[date] = set()
    for i, item in enumerate(raw):
        if isinstance(item, date) and not isinstance(item, datetime):
            days.add(item)
            continue
        try:
            days.add(date.fromisoformat(item if isinstance(item, str) else "?"))
        except ValueError:
            issues.add(f"{where}[{i}]", f"{item!r} is not a date (YYYY-MM-DD)")
    return frozenset(days)
