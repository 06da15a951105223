"""Sending one outbound mail through the configured relay (aiosmtplib).

The envelope is given to the relay explicitly: MAIL FROM our configured
address, RCPT TO each stored recipient parsed again as exactly one addr-spec
(parsers/addresses.py), the same Mailbox the To/Cc headers are made from.
Nothing is taken from a header string that smtplib would split again, so a
stored value such as `a@x, b@y` is refused (permanently), never sent to two.

The answer says whether a failure is worth retrying: a 5xx from the relay is
permanent (the address or the message is refused), and so is a recipient that
is not one address or a relay without SMTPUTF8 for an address that needs it;
connection problems, timeouts and 4xx are temporary.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import aiosmtplib

from gateway.config import Config
from gateway.delivery.outbound import one_line
from parsers.addresses import AddressError, Mailbox, parse_address
from storage.engine import utcnow


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A stored outbound mail made ready to send: the message and its envelope."""

    message: EmailMessage
    sender: str
    recipients: tuple[Mailbox, ...]


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    permanent: bool = False
    error: str | None = None
    # The row was replaced by others (an event fanned out): it is done already.
    fanned_out: bool = False
    # The relay's SMTP reply code, when it answered (250 on success).
    code: int | None = None


def _header_addresses(entries: list[dict[str, Any]]) -> list[tuple[Address, Mailbox]]:
    """Each stored {name, address} as a header address and its Mailbox;
    AddressError when an address is not exactly one addr-spec."""
    found = []
    for entry in entries:
        mailbox = parse_address(entry.get("address"))
        name = one_line(str(entry.get("name") or ""), 100)
        found.append((Address(display_name=name, username=mailbox.local,
                              domain=mailbox.domain), mailbox))
    return found


def compose(payload: dict[str, Any]) -> Outgoing:
    """The MIME message and envelope for a stored outbound mail. Header values
    are one line each; addresses are parsed, never passed on as text."""
    to = _header_addresses(payload["to"])
    cc = _header_addresses(payload.get("cc") or [])
    if not to:
        raise AddressError("the mail has no recipient")
    sender = Address(display_name=one_line(payload.get("from_name") or "", 100),
                     addr_spec=payload["from_address"])
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = [address for address, _ in to]
    if cc:
        msg["Cc"] = [address for address, _ in cc]
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
    if payload.get("html"):  # an agent's reply: sanitised when it was stored
        msg.add_alternative(payload["html"], subtype="html")
    for item in payload.get("attachments") or []:
        maintype, _, subtype = str(item["content_type"]).partition("/")
        msg.add_attachment(base64.b64decode(item["content_base64"]), maintype=maintype,
                           subtype=subtype or "octet-stream",
                           filename=one_line(str(item["filename"]), 255))
    recipients = tuple(dict.fromkeys(mailbox for _, mailbox in (*to, *cc)))
    return Outgoing(message=msg, sender=sender.addr_spec, recipients=recipients)


async def send(config: Config, row: dict[str, Any]) -> SendResult:
    payload = row["message"]
    relay = config.relay_address
    if relay is None:
        return SendResult(False, False, "no outbound relay is configured")
    out = config.outbound
    password = os.environ.get(out.password_env) if out.password_env else None
    try:
        outgoing = compose(payload)
    except AddressError as exc:
        return SendResult(False, True, f"refused recipient: {exc.reason}")
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        return SendResult(False, True, f"cannot build the message: {exc}")
    try:
        await aiosmtplib.send(outgoing.message, sender=outgoing.sender,
                              recipients=[m.addr_spec for m in outgoing.recipients],
                              hostname=relay[0], port=relay[1],
                              start_tls=out.starttls, username=out.username, password=password,
                              timeout=out.timeout_seconds,
                              # Our name in EHLO, not the library's default (the host's FQDN).
                              local_hostname=out.helo or config.smtp.hostname)
    except aiosmtplib.SMTPNotSupported as exc:
        # A relay without SMTPUTF8 for an address that needs it: retrying will not help.
        needs_utf8 = any(m.smtputf8 for m in outgoing.recipients)
        return SendResult(False, needs_utf8, f"{type(exc).__name__}: {exc}")
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [r.code for r in exc.recipients]
        return SendResult(False, all(500 <= c < 600 for c in codes), f"refused: {exc}",
                          code=max(codes, default=None))
    except aiosmtplib.SMTPResponseException as exc:
        return SendResult(False, 500 <= exc.code < 600, f"{exc.code} {exc.message}",
                          code=exc.code)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        return SendResult(False, False, f"{type(exc).__name__}: {exc}")
    return SendResult(True, code=250)
