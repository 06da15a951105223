"""A report's rows as CSV, JSON or a table for a terminal.

CSV and JSON carry every field exactly (seconds to the millisecond); the table
shows the main figures with durations in hours, for reading.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from storage.reports import FIELDS

COLUMNS = ("group", *FIELDS)
# The table's columns: (heading, field, shown as hours).
_TABLE = (
    ("group", "group", False), ("created", "created", False),
    ("resolved", "resolved", False), ("reopened", "reopened", False),
    ("backlog", "backlog", False),
    ("1st resp med", "first_response_median_seconds", True),
    ("p90", "first_response_p90_seconds", True),
    ("bus. med", "first_response_business_median_seconds", True),
    ("resol. med", "resolution_median_seconds", True),
    ("p90", "resolution_p90_seconds", True),
    ("bus. med", "resolution_business_median_seconds", True),
    ("1st resp SLA%", "first_response_sla_percent", False),
    ("resol. SLA%", "resolution_sla_percent", False),
    ("breaches", "breaches", False), ("escalations", "escalations", False),
)


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def as_csv(rows: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    writer.writerow(COLUMNS)
    for row in rows:
        # A group is a stored value (a component, a token): never a formula.
        group = _cell(row["group"])
        if group[:1] in ("=", "+", "-", "@", "\t", "\r"):
            group = "'" + group
        writer.writerow([group, *(_cell(row[f]) for f in FIELDS)])
    return out.getvalue()


def as_document(rows: Sequence[dict[str, Any]], *, start: datetime, end: datetime,
                grouping: str) -> dict[str, Any]:
    """The JSON answer: the period (end exclusive), the grouping, one item per group."""
    return {"from": start.isoformat(), "to": end.isoformat(), "group": grouping,
            "items": list(rows)}


def _shown(value: Any, hours: bool) -> str:
    if value is None:
        return "-"
    if hours:
        return f"{value / 3600:.1f}h"
    return str(value)


def as_table(rows: Sequence[dict[str, Any]]) -> str:
    cells = [[heading for heading, _, _ in _TABLE]]
    cells += [[_shown(row[field], hours) for _, field, hours in _TABLE] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(_TABLE))]
    return "\n".join("  ".join(cell.rjust(width) if i else cell.ljust(width)
                               for i, (cell, width) in enumerate(zip(line, widths, strict=True)))
                     .rstrip() for line in cells) + "\n"
