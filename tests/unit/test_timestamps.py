"""RFC 3339 parameters (parsers/timestamps.py) and the audit cursor: a moment
that leaves the calendar in UTC is a bad value, not an OverflowError (a 500)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from parsers.timestamps import is_rfc3339, parse_rfc3339
from storage.audit import decode_cursor


def test_parse_rfc3339__offsets_nanoseconds_and_the_calendar_edges() -> None:
    assert parse_rfc3339("2026-01-31T09:00:00.123456789+01:00") == datetime(
        2026, 1, 31, 8, 0, 0, 123456, tzinfo=UTC)
    assert is_rfc3339("2026-01-31 09:00:00z") and not is_rfc3339("2026-01-31T09:00:00")
    assert not is_rfc3339("２０２６-01-31T09:00:00Z")  # other scripts' digits
    for edge in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00",
                 "2026-02-30T00:00:00Z"):
        with pytest.raises(ValueError):
            parse_rfc3339(edge)


def test_decode_cursor__a_moment_outside_the_calendar_is_not_a_cursor() -> None:
    cursor = base64.urlsafe_b64encode(b"0001-01-01T00:00:00+01:00|5").decode().rstrip("=")
    with pytest.raises(ValueError, match="not a cursor"):
        decode_cursor(cursor)
