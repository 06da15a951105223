"""`intake audit`: the audit trail on the command line, with the filters and
paging of GET /v1/admin/audit (gateway/audit_query.py). Read only.

Events hold what clients sent (targets, names): the table shows every control
or unprintable character escaped, so a stored value cannot drive the terminal;
JSON lines are escaped by JSON itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gateway.audit_query import BadParameter, parse_query
from storage.audit import list_events
from storage.engine import create_engine

FILTERS = ("actor", "action", "target", "since", "until", "limit", "cursor")


def add_parser(sub: Any) -> None:
    audit = sub.add_parser("audit", help="the audit trail of agents' and admins' actions, "
                           "newest first (read only)")
    audit.add_argument("--actor", help="token:<id>, agent:<id>, cli or system")
    audit.add_argument("--action", help="e.g. token.create, dead_letter.retry")
    audit.add_argument("--target", help="e.g. token:3, a request's reference")
    audit.add_argument("--since", metavar="TIME", help="from this RFC 3339 time (inclusive)")
    audit.add_argument("--until", metavar="TIME", help="before this RFC 3339 time")
    audit.add_argument("--limit", metavar="N", help="events per page (1 to 500, default 100)")
    audit.add_argument("--cursor", help="the page after the one that printed this cursor")
    audit.add_argument("--json", action="store_true", help="one JSON object a line")


def _shown(value: object) -> str:
    """Text safe for a terminal: control and unprintable characters escaped."""
    text = "-" if value is None else str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def _line(event: dict[str, Any]) -> str:
    data = json.dumps(event["data"], sort_keys=True, separators=(",", ":"))
    return "\t".join(_shown(v) for v in (
        event["at"].isoformat(timespec="seconds"), event["actor"], event["action"],
        event["target"], event["client"], data))


async def run(config: Any, args: argparse.Namespace) -> int:
    values = {name: getattr(args, name) for name in FILTERS if getattr(args, name) is not None}
    try:
        query = parse_query(values)
    except BadParameter as exc:
        print(f"intake audit: --{exc.parameter}: {exc.detail}", file=sys.stderr)
        return 2
    engine = create_engine(config.database.url, pool_size=1,
                           timeout=config.database.timeout_seconds)
    try:
        events, cursor = await list_events(engine, query.filters, limit=query.limit,
                                           after=query.after)
    finally:
        await engine.dispose()
    for event in events:
        if args.json:
            print(json.dumps(event | {"at": event["at"].isoformat()}))
        else:
            print(_line(event))
    if cursor is not None:
        # On standard error: JSON lines on standard output stay all events.
        print(f"more: intake audit --cursor {cursor} (with the same filters)",
              file=sys.stderr)
    elif not args.json:
        print(f"{len(events)} event(s)", file=sys.stderr)
    return 0
