"""Sending one outbound mail through the configured relay (aiosmtplib).

The answer says whether a failure is worth retrying: a 5xx from the relay is
permanent (the address or the message is refused); connection problems,
timeouts and 4xx are temporary.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any

import aiosmtplib

from gateway.config import Config
from gateway.delivery.outbound import one_line
from storage.engine import utcnow


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    permanent: bool = False
    error: str | None = None
    # The row was replaced by others (an event fanned out): it is done already.
    fanned_out: bool = False


def build_message(payload: dict[str, Any]) -> EmailMessage:
    """The MIME message for a stored outbound mail. Header values are one line each."""
    msg = EmailMessage()
    msg["From"] = formataddr((one_line(payload.get("from_name") or "", 100),
                              payload["from_address"]))
    msg["To"] = ", ".join(formataddr((one_line(t.get("name") or "", 100), t["address"]))
                          for t in payload["to"])
    if payload.get("cc"):
        msg["Cc"] = ", ".join(formataddr((one_line(t.get("name") or "", 100), t["address"]))
                              for t in payload["cc"])
    msg["Subject"] = one_line(payload["subject"])
    msg["Message-ID"] = f"<{payload['message_id']}>"
    msg["Date"] = format_datetime(utcnow())
    if payload.get("in_reply_to"):
        msg["In-Reply-To"] = f"<{payload['in_reply_to']}>"
    if payload.get("references"):
        msg["References"] = " ".join(f"<{r}>" for r in payload["references"])
    if payload.get("auto_submitted"):
        msg["Auto-Submitted"] = payload["auto_submitted"]  # RFC 3834
        msg["X-Auto-Response-Suppress"] = "All"  # and Exchange's equivalent
    msg.set_content(payload["text"])
    return msg


async def send(config: Config, row: dict[str, Any]) -> SendResult:
    payload = row["message"]
    relay = config.relay_address
    if relay is None:
        return SendResult(False, False, "no outbound relay is configured")
    out = config.outbound
    password = os.environ.get(out.password_env) if out.password_env else None
    try:
        message = build_message(payload)
    except (KeyError, ValueError, TypeError) as exc:
        return SendResult(False, True, f"cannot build the message: {exc}")
    try:
        await aiosmtplib.send(message, hostname=relay[0], port=relay[1],
                              start_tls=out.starttls, username=out.username, password=password,
                              timeout=out.timeout_seconds)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [r.code for r in exc.recipients]
        return SendResult(False, all(500 <= c < 600 for c in codes), f"refused: {exc}")
    except aiosmtplib.SMTPResponseException as exc:
        return SendResult(False, 500 <= exc.code < 600, f"{exc.code} {exc.message}")
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        return SendResult(False, False, f"{type(exc).__name__}: {exc}")
    return SendResult(True)
