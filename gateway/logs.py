"""Logging: the `[log]` section's level and format, and one structured line per item.

Every process logs to standard error, as text (`time LEVEL logger message`) or
as JSON lines (`[log] format = "json"`: one object per record, the fields of
an item line as keys of their own). An item line (`item`) says what happened
to one piece of work: `accepted`, `refused`, `routed` or `acknowledged`, with
its reference, channel, queue and outcome, never its content, subject or
addresses (those are logged at DEBUG at most).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

LEVELS = ("debug", "info", "warning", "error", "critical")
# The attributes every LogRecord has: anything else on a record came in `extra`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime", "taskName"}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

items = logging.getLogger("intake.items")
# Anything shaped like an address (a relay's "550 <bob@example.com>: unknown").
_ADDRESS = re.compile(r"[^\s<>\"'(),;:]+@[^\s<>\"'(),;:]+")


def parse_level(text: str) -> int:
    """A level name (any case) as logging's number; ValueError names the choices."""
    name = text.strip().lower()
    if name not in LEVELS:
        raise ValueError(f"unknown log level {text!r} (choose from {', '.join(LEVELS)})")
    return int(logging.getLevelName(name.upper()))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, then the record's
    extra fields (an item line's reference, channel, queue, outcome)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name,
            "message": record.getMessage()}
        out |= {key: value for key, value in record.__dict__.items()
                if key not in _STANDARD and not key.startswith("_")}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure(level: str, format: str = "text", stream: TextIO | None = None) -> None:
    """Send every record at `level` and above to `stream` (stderr), as text or JSON."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if format == "json"
                         else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(parse_level(level))
    # What no line of ours shows (the calling function and line, the thread, the
    # process) is not gathered for each record: a fifth of an item line's cost,
    # 16 against 13 µs (the logging HOWTO's "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # aiosmtpd logs every SMTP command at INFO, Alembic every plugin: too chatty.
    # aioimaplib logs whole messages at DEBUG, and the base64 SASL strings that
    # carry OAuth tokens (its scrubbing matches the raw token only): never.
    for noisy in ("mail.log", "alembic", "aioimaplib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def item(event: str, *, reference: str | None, channel: str | None,
         queue: str | None = None, outcome: str, level: int = logging.INFO) -> None:
    """The one line for an item: `event` is accepted, refused, routed or
    acknowledged; `outcome` a word such as new, reply, 250, 422, sent."""
    fields = {"event": event, "reference": reference, "channel": channel, "queue": queue,
              "outcome": outcome}
    items.log(level, "%s reference=%s channel=%s queue=%s outcome=%s", event,
              reference or "-", channel or "-", queue or "-", outcome, extra=fields)


def without_addresses(text: str) -> str:
    """`text` with every address in it replaced: for a relay's or a peer's answer,
    which often quotes the recipient, in a log line above DEBUG."""
    return _ADDRESS.sub("[address]", text)
