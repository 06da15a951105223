"""The audit listing's query, checked: the same for GET /v1/admin/audit and
`intake audit`. Every value is hostile: an unknown actor form, action or a
malformed time is an error naming the parameter, never an empty page."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from parsers.timestamps import is_rfc3339, parse_rfc3339
from storage.audit import ACTIONS, ACTOR, MAX_PAGE, AuditFilters, decode_cursor
from storage.models import audit_events
from storage.storable import is_storable

DEFAULT_PAGE = 100
PARAMETERS = ("actor", "action", "target", "since", "until", "limit", "cursor")
_TARGET_SIZE: int = audit_events.c.target.type.length  # type: ignore[attr-defined]


class BadParameter(ValueError):
    def __init__(self, parameter: str, detail: str) -> None:
        super().__init__(f"{parameter}: {detail}")
        self.parameter = parameter
        self.detail = detail


@dataclass(frozen=True, slots=True)
class AuditQuery:
    filters: AuditFilters
    limit: int
    after: tuple[datetime, int] | None


def _time(parameter: str, raw: str) -> datetime:
    if not is_rfc3339(raw):
        raise BadParameter(parameter, "must be an RFC 3339 date-time with an offset, "
                                      "e.g. 2026-01-31T09:00:00Z")
    try:
        return parse_rfc3339(raw)
    except ValueError:
        raise BadParameter(parameter, "is not a real date and time") from None


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE
    if not raw.isascii() or not raw.isdigit() or len(raw) > 4 or not 1 <= int(raw) <= MAX_PAGE:
        raise BadParameter("limit", f"must be 1 to {MAX_PAGE}")
    return int(raw)


def parse_query(values: Mapping[str, str]) -> AuditQuery:
    """The query `values` (each parameter once, all known) ask for."""
    actor, action, target = values.get("actor"), values.get("action"), values.get("target")
    if actor is not None and not ACTOR.fullmatch(actor):
        raise BadParameter("actor", "must be token:<id>, agent:<id>, cli or system")
    if action is not None and action not in ACTIONS:
        raise BadParameter("action", "must be one of " + ", ".join(ACTIONS))
    if target is not None and not (0 < len(target) <= _TARGET_SIZE and is_storable(target)):
        raise BadParameter("target", f"must be 1 to {_TARGET_SIZE} characters of text")
    since = _time("since", values["since"]) if "since" in values else None
    until = _time("until", values["until"]) if "until" in values else None
    if since is not None and until is not None and until <= since:
        raise BadParameter("until", "must be after since")
    after = None
    if "cursor" in values:
        try:
            after = decode_cursor(values["cursor"])
        except ValueError:
            raise BadParameter("cursor", "is not a cursor this listing gave out") from None
    return AuditQuery(AuditFilters(actor=actor, action=action, target=target,
                                   since=since, until=until),
                      _limit(values.get("limit")), after)
