"""Reading `[[calendar]]` and `[[sla]]`, durations, and choosing a policy."""

from __future__ import annotations

import tomllib
from datetime import date, timedelta
from typing import Any

import pytest

from routing.sla import (
    DEFAULT_CALENDAR,
    OpenRange,
    Policy,
    SlaConfigError,
    load_sla_config,
    parse_duration,
    parse_hours,
    select_policy,
)

H = timedelta(hours=1)
M = timedelta(minutes=1)

EXAMPLE = """
[intake]                      # owned by the gateway: not read here
addresses = ["support@example.com"]

[[calendar]]
name = "office"
timezone = "Europe/London"
holidays = { country = "GB", subdivision = "ENG" }
closed = ["2026-12-24", 2026-12-31]
[calendar.hours]
mon = "09:00-17:30"
tue = "09:00-17:30"
wed = "09:00-17:30"
thu = "09:00-17:30"
fri = "09:00-17:00"

[[calendar]]
name = "short-days"
timezone = "Europe/Paris"
hours = { mon = "08:00-12:00,13:00-16:30" }
business_day = "7.5h"

[[sla]]
name = "standard"
queue = "general"
first_response = "8h"
resolution = "5d"
calendar = "office"
warn_at = 0.8

[[sla]]
name = "default"
first_response = "1d"
resolution = "5d"

[[sla]]
name = "paris"
type = ["incident", "access"]
resolution = "2d"
calendar = "short-days"
"""


def errors(data: dict[str, Any]) -> list[str]:
    with pytest.raises(SlaConfigError) as info:
        load_sla_config(data)
    assert str(info.value) == "\n".join(str(i) for i in info.value.issues)
    return [str(i) for i in info.value.issues]


def test_load_sla_config__example() -> None:
    config = load_sla_config(tomllib.loads(EXAMPLE))
    office = config.calendar("office")
    assert office.timezone == "Europe/London"
    assert office.week[0] == (OpenRange(9 * 60, 17 * 60 + 30),)
    assert office.week[4] == (OpenRange(9 * 60, 17 * 60),)
    assert office.week[5] == office.week[6] == ()  # missing day: closed
    assert office.closed == {date(2026, 12, 24), date(2026, 12, 31)}  # string or TOML date
    assert (office.holiday_country, office.holiday_subdivision) == ("GB", "ENG")
    assert config.calendar("24x7") is DEFAULT_CALENDAR
    standard = config.select(queue="general")
    assert standard is not None and standard.name == "standard"
    assert (standard.first_response, standard.resolution) == (8 * H, 40 * H)  # d = 8h
    assert standard.calendar is office and standard.warn_at == 0.8


def test_load_sla_config__d_is_the_calendar_business_day() -> None:
    config = load_sla_config(tomllib.loads(EXAMPLE))
    paris = config.select(type="access")
    assert paris is not None and paris.resolution == 15 * H  # 2 x 7.5h
    default = config.select(queue="other")
    assert default is not None and default.calendar is DEFAULT_CALENDAR
    assert default.first_response == 24 * H  # 24x7: one day is 24 hours


def test_load_sla_config__empty_is_fine() -> None:
    config = load_sla_config({})
    assert config.policies == () and config.select() is None
    assert config.calendars == (DEFAULT_CALENDAR,)


def test_load_sla_config__a_calendar_named_24x7_replaces_the_builtin() -> None:
    config = load_sla_config({"calendar": [{"name": "24x7", "timezone": "Europe/London"}]})
    assert config.calendar("24x7").timezone == "Europe/London"
    assert len(config.calendars) == 1


def test_load_sla_config__calendar_errors_name_their_keys() -> None:
    got = errors(
        {
            "calendar": [
                {
                    "name": "bad",
                    "timezone": "Mars/Olympus",
                    "hours": {"mon": "9-5", "tue": "17:00-09:00", "xyz": "09:00-10:00"},
                    "holidays": {"country": "GB", "subdivision": "XX"},
                    "closed": ["2026-13-01", 5],
                    "business_day": "1d",
                    "colour": "blue",
                },
                {"timezone": "UTC"},
                {"name": "bad", "holidays": {"country": "ZZ"}, "hours": "always"},
            ]
        }
    )
    assert got == [
        "calendar[0].colour: unknown key (known: business_day, closed, holidays, hours, "
        "name, timezone)",
        "calendar[0].timezone: unknown time zone 'Mars/Olympus' (an IANA name)",
        "calendar[0].hours.mon: '9-5' is not HH:MM-HH:MM",
        "calendar[0].hours.tue: '17:00-09:00' must start before it ends (split a night at 24:00)",
        "calendar[0].hours.xyz: unknown day (use mon, tue, wed, thu, fri, sat, sun)",
        "calendar[0].holidays.subdivision: unknown 'XX' for GB (known: ENG, NIR, SCT, WLS)",
        "calendar[0].closed[0]: '2026-13-01' is not a date (YYYY-MM-DD)",
        "calendar[0].closed[1]: 5 is not a date (YYYY-MM-DD)",
        "calendar[0].business_day: '1d' is not a duration like \"7.5h\"",
        "calendar[1].name: required, a non-empty string",
        "calendar[2].name: duplicate name 'bad'",
        'calendar[2].hours: must be a table like { mon = "09:00-17:30" }',
        "calendar[2].holidays.country: 'ZZ' is not a country the holidays package knows",
    ]


def test_load_sla_config__policy_on_a_broken_calendar_reports_the_calendar_only() -> None:
    got = errors(
        {
            "calendar": [{"name": "office", "timezone": "Nowhere/Land"}],
            "sla": [
                {"name": "a", "calendar": "office", "resolution": "1d"},
                {"name": "b", "calendar": ["office"], "resolution": "1d"},
            ],
        }
    )
    assert got == [
        "calendar[0].timezone: unknown time zone 'Nowhere/Land' (an IANA name)",
        "sla[1].calendar: unknown calendar ['office'] (known: 24x7)",
    ]


def test_load_sla_config__calendar_never_open_is_an_error() -> None:
    got = errors({"calendar": [{"name": "shut", "hours": {"mon": "", "sat": ""}}]})
    assert got == ["calendar[0].hours: no open hours on any day: the desk would never be open"]


def test_load_sla_config__sla_errors_name_their_keys() -> None:
    got = errors(
        {
            "calendar": {"name": "not an array"},
            "sla": [
                {
                    "name": "a",
                    "calendar": "nope",
                    "first_response": "8x",
                    "resolution": "0h",
                    "warn_at": 2,
                    "queue": ["ok", ""],
                    "bogus": 1,
                },
                {"name": "a"},
                {"name": "b", "first_response": "3000h", "warn_at": True},
                {"name": "c", "resolution": "1d", "priority": "P1"},
                {"name": "d", "resolution": "2d", "priority": ["P1"]},
            ],
        }
    )
    assert got == [
        "calendar: must be an array of tables [[calendar]]",
        "sla[0].bogus: unknown key (known: calendar, first_response, name, priority, queue, "
        "resolution, type, warn_at)",
        "sla[0].queue: must be a non-empty string or a list of them",
        "sla[0].calendar: unknown calendar 'nope' (known: 24x7)",
        'sla[0].first_response: \'8x\' is not a duration like "30m", "8h", "1h30m" or "5d"',
        "sla[0].resolution: '0h' must be more than 0 and at most 2000h",
        "sla[0].warn_at: 2 must be a fraction of the target, 0 < x <= 1",
        "sla[1].name: duplicate name 'a'",
        "sla[1]: needs a target: first_response, resolution or both",
        "sla[2].first_response: '3000h' must be more than 0 and at most 2000h",
        "sla[2].warn_at: True must be a fraction of the target, 0 < x <= 1",
        "sla[4]: matches the same requests as sla[3] 'c': it is never chosen",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", 30 * M),
        ("8h", 8 * H),
        ("1h30m", 90 * M),
        ("7.5h", 7.5 * H),
        ("5d", 40 * H),
        ("1d 4h", 12 * H),
        ("0.5d", 4 * H),
    ],
)
def test_parse_duration__forms(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "8", "h", "8 hours", "30m8h", "1h1h", "-1h", "1e3h", "1w"])
def test_parse_duration__rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_parse_duration__no_days_without_a_business_day() -> None:
    assert parse_duration("7h30m", None) == 7.5 * H
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("1d", None)


def test_parse_hours__ranges() -> None:
    assert parse_hours("08:00-12:00, 13:00-17:00") == (OpenRange(480, 720), OpenRange(780, 1020))
    assert parse_hours("00:00-24:00") == (OpenRange(0, 1440),)
    assert parse_hours("") == ()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("13:00-17:00,08:00-12:00", "overlaps or comes before"),
        ("08:00-12:00,11:00-13:00", "overlaps"),
        ("08:00-24:30", "not a time of day"),
        ("08:60-09:00", "not a time of day"),
        ("22:00-06:00", "must start before it ends"),
        ("8:00-12:00", "not HH:MM-HH:MM"),
    ],
)
def test_parse_hours__rejects(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_hours(text)


def policy(name: str, **match: tuple[str, ...]) -> Policy:
    return Policy(name=name, resolution=H, **match)


POLICIES = (
    policy("default"),
    policy("general", queue=("general",)),
    policy("p1", priority=("P1",)),
    policy("general-p1", queue=("general",), priority=("P1", "P2")),
    policy("incident-p1-ops", queue=("ops",), priority=("P1",), type=("incident",)),
    policy("complaints", type=("complaint",)),
)


@pytest.mark.parametrize(
    ("queue", "priority", "type", "expected"),
    [
        (None, None, None, "default"),
        ("billing", "P3", "information", "default"),
        ("general", None, None, "general"),
        ("general", "P3", None, "general"),
        ("billing", "P1", None, "p1"),
        ("general", "P1", None, "general-p1"),
        ("general", "P2", "incident", "general-p1"),
        ("ops", "P1", "incident", "incident-p1-ops"),
        ("ops", "P1", "access", "p1"),
        ("general", "p1", None, "general"),  # values compare exactly
    ],
)
def test_select_policy__most_specific_wins(
    queue: str | None, priority: str | None, type: str | None, expected: str
) -> None:
    chosen = select_policy(POLICIES, queue, priority, type)
    assert chosen is not None and chosen.name == expected


def test_select_policy__tie_goes_to_the_first_listed() -> None:
    chosen = select_policy(POLICIES, queue="general", type="complaint")
    assert chosen is not None and chosen.name == "general"
    flipped = select_policy(reversed(POLICIES), queue="general", type="complaint")
    assert flipped is not None and flipped.name == "complaints"


def test_select_policy__no_default_and_no_match_is_none() -> None:
    assert select_policy(POLICIES[1:], queue="billing") is None
    assert select_policy((), queue="general") is None
