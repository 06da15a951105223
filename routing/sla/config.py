"""Reading `[[calendar]]` and `[[sla]]` from already-parsed TOML data.

Every problem is reported at once, each as `key: what is wrong`, with keys
such as `calendar[0].hours.mon` (tables counted from 0 in file order).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from domain.errors import ConfigError
from routing.sla.calendar import DEFAULT_CALENDAR, ZERO, Calendar
from routing.sla.config_calendar import read_calendar
from routing.sla.grammar import (
    BUSINESS_DAY,
    Issues,
    SlaIssue,
    parse_duration,
    read_name,
    tables,
    unknown,
)
from routing.sla.policy import MATCH_KEYS, Policy, select_policy

MAX_TARGET = timedelta(hours=2000)  # of business time: a year of 8-hour days
SLA_KEYS = {"name", *MATCH_KEYS, "first_response", "resolution", "calendar", "warn_at"}


class SlaConfigError(ConfigError):
    """The SLA config has errors; `issues` lists all of them."""

    def __init__(self, issues: list[SlaIssue]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(str(i) for i in issues))


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaConfig:
    calendars: tuple[Calendar, ...] = (DEFAULT_CALENDAR,)
    policies: tuple[Policy, ...] = ()

    def calendar(self, name: str) -> Calendar:
        for cal in self.calendars:
            if cal.name == name:
                return cal
        raise KeyError(name)

    def select(
        self, queue: str | None = None, priority: str | None = None, type: str | None = None
    ) -> Policy | None:
        return select_policy(self.policies, queue, priority, type)


def load_sla_config(data: Mapping[str, Any]) -> SlaConfig:
    """The calendars and policies of parsed TOML data; raises `SlaConfigError`.

    Only `calendar` and `sla` are read. The built-in calendar "24x7" (open
    always, UTC) is there unless a `[[calendar]]` of that name replaces it.
    """
    issues = Issues()
    calendars: dict[str, Calendar] = {DEFAULT_CALENDAR.name: DEFAULT_CALENDAR}
    seen: set[str] = set()
    for i, table in enumerate(tables(data, "calendar", issues)):
        cal = read_calendar(table, f"calendar[{i}]", seen, issues)
        if cal is not None:
            calendars[cal.name] = cal
    broken = seen - calendars.keys()  # their errors are reported already
    policies: list[Policy] = []
    seen = set()
    matches: dict[tuple[tuple[str, ...], ...], str] = {}
    for i, table in enumerate(tables(data, "sla", issues)):
        where = f"sla[{i}]"
        policy = _read_policy(table, where, seen, calendars, broken, issues)
        if policy is None:
            continue
        match = tuple(tuple(sorted(set(getattr(policy, k)))) for k in MATCH_KEYS)
        if match in matches:
            issues.add(where, f"matches the same requests as {matches[match]}: it is never chosen")
        matches.setdefault(match, f"{where} {policy.name!r}")
        policies.append(policy)
    if issues.items:
        raise SlaConfigError(issues.items)
    return SlaConfig(calendars=tuple(calendars.values()), policies=tuple(policies))


def _read_policy(
    table: Mapping[str, Any],
    where: str,
    seen: set[str],
    calendars: Mapping[str, Calendar],
    broken: set[str],
    issues: Issues,
) -> Policy | None:
    before = len(issues.items)
    unknown(table, SLA_KEYS, where, issues)
    name = read_name(table, where, seen, issues)
    match: dict[str, tuple[str, ...]] = {}
    for key in MATCH_KEYS:
        value = table.get(key, ())
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list | tuple) or not all(
            isinstance(v, str) and v for v in values
        ):
            issues.add(f"{where}.{key}", "must be a non-empty string or a list of them")
        else:
            match[key] = tuple(values)
    cal_name = table.get("calendar", DEFAULT_CALENDAR.name)
    calendar = calendars.get(cal_name) if isinstance(cal_name, str) else None
    if calendar is None and not (isinstance(cal_name, str) and cal_name in broken):
        issues.add(
            f"{where}.calendar", f"unknown calendar {cal_name!r} (known: {', '.join(calendars)})"
        )
    day = calendar.business_day if calendar is not None else BUSINESS_DAY
    targets: dict[str, timedelta | None] = {}
    for key in ("first_response", "resolution"):
        text = table.get(key)
        targets[key] = None
        if text is None:
            continue
        try:
            target = parse_duration(text if isinstance(text, str) else "?", day)
            if not ZERO < target <= MAX_TARGET:
                hours = MAX_TARGET // timedelta(hours=1)
                raise ValueError(f"{text!r} must be more than 0 and at most {hours}h")
            targets[key] = target
        except ValueError as exc:
            issues.add(f"{where}.{key}", str(exc))
    if "first_response" not in table and "resolution" not in table:
        issues.add(where, "needs a target: first_response, resolution or both")
    warn = table.get("warn_at", 0.8)
    if isinstance(warn, bool) or not isinstance(warn, int | float) or not 0 < warn <= 1:
        issues.add(f"{where}.warn_at", f"{warn!r} must be a fraction of the target, 0 < x <= 1")
    if name is None or calendar is None or len(issues.items) > before:
        return None
    return Policy(
        name=name,
        first_response=targets["first_response"],
        resolution=targets["resolution"],
        calendar=calendar,
        warn_at=float(warn),
        queue=match["queue"],
        priority=match["priority"],
        type=match["type"],
    )
