"""RFC 3339 date-times with an offset, as query parameters give them."""

from __future__ import annotations

import re
from datetime import UTC, datetime

# ASCII digits only (`\d` would take any script's); up to nanoseconds.
RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})", re.ASCII)


def is_rfc3339(text: str) -> bool:
    return RFC3339.fullmatch(text) is not None


def parse_rfc3339(text: str) -> datetime:
    """`text` (checked with `is_rfc3339`) in UTC; ValueError for a date or time
    that does not exist, or one that leaves the calendar in UTC (0001-01-01 at
    +01:00). Digits past microseconds are cut (Python keeps no finer)."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.upper().replace("Z", "+00:00"))
    try:
        return datetime.fromisoformat(text.replace(" ", "T")).astimezone(UTC)
    except OverflowError:
        raise ValueError(f"out of range in UTC: {text}") from None
