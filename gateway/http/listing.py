"""The query of a request listing (a queue's page, a search across queues),
checked: every parameter known, given once, with a value it can take. Anything
else is a 400 problem document naming the parameter, never a silently ignored
filter (a whole list where a few were asked for) or an empty page for a
misspelt value.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import datetime

from multidict import MultiMapping

from domain.lifecycle import Status
from gateway.http.problems import ParameterProblem, Problem
from gateway.http.shared import small_int
from parsers.timestamps import is_rfc3339, parse_rfc3339
from routing.fields import PRIORITIES
from storage.claims import ListFilters

MAX_PAGE = 200
DEFAULT_PAGE = 50
MAX_TEXT = 200
MAX_VALUE = 320  # the longest column a filter compares with (an address)
# Statuses a stored request can have (`received` is an inbox item, not listed).
LISTED = tuple(s.value for s in Status if s != Status.RECEIVED)
# `agent:<id>` or `token:<id>` (how claims are recorded), `me`, or `none` (unclaimed).
_CLAIMANT = re.compile(r"(?:agent|token):\d{1,18}|me|none")
# RFC 3339 date-time: a date, a time and an offset (Z or +hh:mm), nothing looser.
PAGING = ("limit", "cursor")
FILTERS = ("status", "priority", "type", "component", "tag", "requester", "text", "breached",
           "due_before", "created_after", "created_before", "claimed_by")


def _bad(parameter: str, detail: str) -> Problem:
    return Problem(400, f"{parameter}: {detail}", errors=[ParameterProblem(parameter, detail)])


def _timestamp(parameter: str, raw: str) -> datetime:
    if not is_rfc3339(raw):
        raise _bad(parameter, "must be an RFC 3339 date-time with an offset, "
                              "e.g. 2026-01-31T09:00:00Z")
    try:
        # In UTC, as stored: SQLite compares timestamps as text.
        return parse_rfc3339(raw)
    except ValueError:
        raise _bad(parameter, "is not a real date and time") from None


def check_query(query: MultiMapping[str], allowed: Collection[str]) -> dict[str, str]:
    """Each parameter once and known; all unknown ones are listed together."""
    unknown = sorted({k for k in query if k not in allowed})
    if unknown:
        raise Problem(400, "unknown query parameter" + ("s " if len(unknown) > 1 else " ")
                      + ", ".join(unknown),
                      errors=[ParameterProblem(k, "is not a parameter of this listing")
                              for k in unknown])
    for key in query:
        if len(query.getall(key)) > 1:
            raise _bad(key, "must be given at most once")
    return {k: str(v) for k, v in query.items()}


def page_size(raw: str | None) -> int:
    limit = small_int(raw if raw is not None else str(DEFAULT_PAGE))
    if limit is None or not 1 <= limit <= MAX_PAGE:
        raise Problem(400, f"limit must be 1 to {MAX_PAGE}",
                      errors=[ParameterProblem("limit", f"must be 1 to {MAX_PAGE}")])
    return limit


def filters(values: dict[str, str], *, me: str) -> ListFilters:
    """The filters a checked query asks for; `me` is the caller as a claimant."""
    for key in FILTERS:
        raw = values.get(key)
        if raw is not None and (raw == "" or len(raw) > MAX_VALUE):
            raise _bad(key, f"must be 1 to {MAX_VALUE} characters")
    status = values.get("status")
    if status is not None and status not in LISTED:
        raise _bad("status", "must be one of " + ", ".join(LISTED))
    priority = values.get("priority")
    if priority is not None and priority not in PRIORITIES:
        raise _bad("priority", "must be one of " + ", ".join(PRIORITIES))
    breached = values.get("breached")
    if breached is not None and breached not in ("true", "false"):
        raise _bad("breached", "must be true or false")
    text = values.get("text")
    if text is not None and len(text) > MAX_TEXT:
        raise _bad("text", f"must be at most {MAX_TEXT} characters")
    claimed = values.get("claimed_by")
    if claimed is not None and not _CLAIMANT.fullmatch(claimed):
        raise _bad("claimed_by", "must be agent:<id>, token:<id>, me or none")
    times = {key: _timestamp(key, values[key])
             for key in ("due_before", "created_after", "created_before") if key in values}
    return ListFilters(
        status=status, priority=priority, type=values.get("type"),
        component=values.get("component"), tag=values.get("tag"),
        requester=values.get("requester"), text=text,
        breached=None if breached is None else breached == "true",
        due_before=times.get("due_before"), created_after=times.get("created_after"),
        created_before=times.get("created_before"),
        claimed_by=me if claimed == "me" else claimed)
