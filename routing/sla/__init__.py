"""Service-level arithmetic: business calendars, SLA targets, pauses and states.

The public face of the modules in this package. Pure: time is always passed in as an aware
datetime and comes back in UTC; nothing here reads a clock or does I/O.

Config (already-parsed TOML, see `load_sla_config`)::

    [[calendar]]
    name = "office"
    timezone = "Europe/London"
    hours = { mon = "09:00-17:30", fri = "08:00-12:00,13:00-17:00" }  # missing day: closed
    holidays = { country = "GB", subdivision = "ENG" }
    closed = ["2026-12-24"]
    business_day = "7.5h"   # what "1d" means; default 8h, or 24h without `hours`

    [[sla]]
    name = "standard"
    queue = "general"       # match keys queue, priority, type: a string or a list
    first_response = "8h"   # durations: d, h, m parts in that order: "1d4h", "90m", "7.5h"
    resolution = "5d"       # d = the calendar's business_day of open time
    calendar = "office"     # default: the built-in "24x7"
    warn_at = 0.8           # default 0.8
"""

from __future__ import annotations

from routing.sla.calendar import (
    DEFAULT_CALENDAR,
    MAX_SEARCH_DAYS,
    Calendar,
    OpenRange,
    SlaCalendarError,
    add_business_time,
    business_time_between,
    public_holidays,
)
from routing.sla.clock import (
    ClockEvent,
    Pause,
    SlaState,
    Status,
    TargetState,
    due_at,
    elapsed_business_time,
    pauses_from_events,
    sla_state,
    target_state,
)
from routing.sla.config import SlaConfig, SlaConfigError, load_sla_config
from routing.sla.grammar import BUSINESS_DAY, SlaIssue, parse_duration, parse_hours
from routing.sla.policy import Policy, select_policy

__all__ = [
    "BUSINESS_DAY",
    "DEFAULT_CALENDAR",
    "MAX_SEARCH_DAYS",
    "Calendar",
    "ClockEvent",
    "OpenRange",
    "Pause",
    "Policy",
    "SlaCalendarError",
    "SlaConfig",
    "SlaConfigError",
    "SlaIssue",
    "SlaState",
    "Status",
    "TargetState",
    "add_business_time",
    "business_time_between",
    "due_at",
    "elapsed_business_time",
    "load_sla_config",
    "parse_duration",
    "parse_hours",
    "pauses_from_events",
    "public_holidays",
    "select_policy",
    "sla_state",
    "target_state",
]
