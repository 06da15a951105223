"""Dates and times as each language writes them (Babel's CLDR data), in the
desk's time zone."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from babel import Locale, UnknownLocaleError
from babel import dates as babel_dates

from gateway.i18n.codes import DEFAULT, normalise, primary


@lru_cache(maxsize=64)
def locale_of(language: str | None) -> Locale:
    """Babel's locale for `language`, else for the language without its region,
    else English (a desk may add a language Babel does not know)."""
    code = normalise(language) or DEFAULT
    for candidate in dict.fromkeys((code, primary(code), DEFAULT)):
        try:
            return Locale.parse(candidate, sep="-")
        except (UnknownLocaleError, ValueError):
            continue
    return Locale.parse(DEFAULT)


# Files of the zone database that are no zone a desk is in.
NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones()) - NOT_ZONES


def check_timezone(name: str) -> str:
    """`name` if it is an IANA time zone name (`Europe/Berlin`, `UTC`); else ValueError."""
    if name not in _zone_names():
        raise ValueError(f"not an IANA time zone name: {name!r} (such as Europe/Berlin)")
    return name


@lru_cache(maxsize=64)
def zone(name: str | None) -> ZoneInfo:
    """The time zone called `name`; UTC for None (names are checked with the config)."""
    if not name:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _local(moment: datetime, timezone: str | None) -> datetime:
    # Stored times without a zone are UTC (storage keeps UTC).
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(zone(timezone))


def format_datetime(moment: datetime, language: str | None,
                    timezone: str | None = None) -> str:
    """`moment` as `language` writes a date and time, in `timezone` (the desk's),
    with the zone shown: `5 January 2026, 09:00 UTC`, `5. Januar 2026, 10:00 MEZ`."""
    # To the minute (CLDR's short time has no seconds): every acknowledgement
    # of a minute shares one formatting, which Babel otherwise redoes per mail.
    local = _local(moment, timezone).replace(second=0, microsecond=0)
    return _minute(local, language, timezone)


@lru_cache(maxsize=256)
def _minute(local: datetime, language: str | None, timezone: str | None) -> str:
    # `timezone` is part of the key: aware datetimes of one instant are equal
    # (and hash alike) whatever their zone, and the text shows the zone.
    locale = locale_of(language)
    day = babel_dates.format_date(local, "long", locale=locale)
    time = babel_dates.format_time(local, "short", tzinfo=local.tzinfo, locale=locale)
    named = babel_dates.format_time(local, "z", tzinfo=local.tzinfo, locale=locale)
    pattern = _unquoted(str(babel_dates.get_datetime_format("long", locale=locale)))
    return pattern.replace("{1}", day).replace("{0}", f"{time} {named}")


def _unquoted(pattern: str) -> str:
    # CLDR quotes literal words in patterns ("{1} 'um' {0}"); '' is an apostrophe.
    return re.sub(r"'([^']*)'", lambda m: m.group(1) or "'", pattern)


def format_date(moment: datetime, language: str | None, timezone: str | None = None) -> str:
    """The day of `moment` in `timezone`, as `language` writes a date."""
    return babel_dates.format_date(_local(moment, timezone), "long",
                                   locale=locale_of(language))
