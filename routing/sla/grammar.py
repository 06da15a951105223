"""The small grammars of the SLA config: durations, open hours, issue keys."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from routing.sla.calendar import DAY_MINUTES, ZERO, OpenRange

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
BUSINESS_DAY = timedelta(hours=8)  # "1d" on a calendar with hours, unless it says otherwise

_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[dhm])+")
_PART = re.compile(r"(\d+(?:\.\d+)?)([dhm])")
_RANGE = re.compile(r"(\d{2}):(\d{2})-(\d{2}):(\d{2})")


@dataclass(frozen=True, slots=True)
class SlaIssue:
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


def parse_duration(text: str, business_day: timedelta | None = BUSINESS_DAY) -> timedelta:
    """ "30m", "8h", "1h30m", "7.5h", "5d" (d = `business_day`; None: no "d")."""
    units = "dhm" if business_day is not None else "hm"
    compact = text.replace(" ", "")
    parts = _PART.findall(compact) if _DURATION.fullmatch(compact) else []
    order = "".join(unit for _, unit in parts)
    if not parts or order not in {u for u in _subsequences(units)}:
        example = '"30m", "8h", "1h30m" or "5d"' if business_day is not None else '"7.5h"'
        raise ValueError(f"{text!r} is not a duration like {example}")
    size = {"d": business_day or ZERO, "h": timedelta(hours=1), "m": timedelta(minutes=1)}
    return sum((size[unit] * float(number) for number, unit in parts), ZERO)


def _subsequences(units: str) -> list[str]:
    out = [""]
    for u in units:
        out += [s + u for s in out]
    return out


def parse_hours(text: str) -> tuple[OpenRange, ...]:
    """ "09:00-12:00,13:00-17:30" as ranges; "" is closed; "24:00" ends the day."""
    ranges: list[OpenRange] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = _RANGE.fullmatch(part)
        if not m:
            raise ValueError(f"{part!r} is not HH:MM-HH:MM")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if m1 > 59 or m2 > 59 or start >= DAY_MINUTES or end > DAY_MINUTES:
            raise ValueError(f"{part!r} is not a time of day (00:00 to 24:00)")
        if start >= end:
            raise ValueError(f"{part!r} must start before it ends (split a night at 24:00)")
        if ranges and start < ranges[-1].end:
            raise ValueError(f"{part!r} overlaps or comes before {ranges[-1]}")
        ranges.append(OpenRange(start, end))
    return tuple(ranges)


class Issues:
    def __init__(self) -> None:
        self.items: list[SlaIssue] = []

    def add(self, key: str, message: str) -> None:
        self.items.append(SlaIssue(key, message))


def tables(data: Mapping[str, Any], name: str, issues: Issues) -> list[Mapping[str, Any]]:
    raw = data.get(name, [])
    if not isinstance(raw, list) or not all(isinstance(t, Mapping) for t in raw):
        issues.add(name, f"must be an array of tables [[{name}]]")
        return []
    return raw


def unknown(table: Mapping[str, Any], known: set[str], where: str, issues: Issues) -> None:
    for key in table:
        if key not in known:
            issues.add(f"{where}.{key}", f"unknown key (known: {', '.join(sorted(known))})")


def read_name(table: Mapping[str, Any], where: str, seen: set[str], issues: Issues) -> str | None:
    name = table.get("name")
    if not isinstance(name, str) or not name.strip():
        issues.add(f"{where}.name", "required, a non-empty string")
        return None
    if name in seen:
        issues.add(f"{where}.name", f"duplicate name {name!r}")
    seen.add(name)
    return name
