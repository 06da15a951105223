"""Read delivery status reports (RFC 3464) and the free-form bounces older MTAs send."""

from __future__ import annotations

import re
from collections.abc import Callable

from parsers.header_block import split_entity
from parsers.header_values import message_ids, raw_text
from parsers.mime_tree import Entity
from parsers.records import Bounce, BouncedRecipient
from parsers.transfer import decode_transfer

_MAX_RECIPIENTS = 100
_BOUNCE_SENDER = re.compile(r"^(?:mailer-daemon|postmaster|mail-daemon|mailerdaemon)\b", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery status notification|returned mail|mail delivery failed|"
    r"delivery failure|failure notice|non[- ]?delivery|unzustellbar|nicht zustellbar|"
    r"non remis|no se puede entregar|delivery has failed|could not be delivered",
    re.IGNORECASE,
)
_DELAY = re.compile(r"\bdelay|verzögert|retard|temporar", re.IGNORECASE)
_TEXT_MESSAGE_ID = re.compile(r"^Message-ID:\s*<([^<>\s]+)>", re.IGNORECASE | re.MULTILINE)


def find_bounce(
    root: Entity, headers: dict[str, str], from_address: str, subject: str, text: str
) -> Bounce | None:
    """The bounce this message reports, or None when it is not a bounce."""
    report = _find(root, lambda e: e.content_type == "multipart/report")
    if report is not None and report.params.get("report-type", "").lower() == "delivery-status":
        return _from_report(report)
    if not (_BOUNCE_SENDER.match(from_address) and _BOUNCE_SUBJECT.search(subject)):
        if "x-failed-recipients" not in headers:
            return None
    failed = [a.strip() for a in headers.get("x-failed-recipients", "").split(",") if a.strip()]
    delayed = bool(_DELAY.search(subject))
    return Bounce(
        permanent=not delayed,
        recipients=tuple(
            BouncedRecipient(
                address=a, action="delayed" if delayed else "failed", status="", diagnostic=""
            )
            for a in failed[:_MAX_RECIPIENTS]
        ),
        original_message_id=_returned_message_id(root) or _text_message_id(text),
        reporting_mta=None,
        kind="heuristic",
    )


def _from_report(report: Entity) -> Bounce:
    status_part = _find(
        report,
        lambda e: e.content_type in ("message/delivery-status", "message/global-delivery-status"),
    )
    recipients: list[BouncedRecipient] = []
    reporting_mta = None
    if status_part is not None:
        data, _ = decode_transfer(status_part.body, status_part.transfer_encoding)
        groups = re.split(rb"\r?\n[ \t]*\r?\n", data.strip())
        for number, group in enumerate(groups):
            fields = {k: raw_text(v) for k, v in split_entity(group + b"\n\n").fields}
            if number == 0 and "reporting-mta" in fields:
                reporting_mta = _after_type(fields["reporting-mta"])
            recipient = fields.get("final-recipient") or fields.get("original-recipient")
            if recipient and len(recipients) < _MAX_RECIPIENTS:
                recipients.append(
                    BouncedRecipient(
                        address=_after_type(recipient),
                        action=fields.get("action", "").strip().lower(),
                        status=fields.get("status", "").strip().split(" ")[0],
                        diagnostic=_after_type(fields.get("diagnostic-code", "")),
                    )
                )
    # RFC 3464 2.3.3: "failed" means the MTA gave up, even after a 4.x.x status;
    # "delayed" means it is still trying.
    permanent = not recipients or any(r.action == "failed" for r in recipients)
    return Bounce(
        permanent=permanent,
        recipients=tuple(recipients),
        original_message_id=_returned_message_id(report),
        reporting_mta=reporting_mta,
        kind="dsn",
    )


def _returned_message_id(root: Entity) -> str | None:
    """Message-ID of the returned message (message/rfc822) or its headers (text/rfc822-headers)."""
    returned = _find(
        root,
        lambda e: (
            e.content_type
            in ("message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers")
        ),
    )
    if returned is None:
        return None
    if returned.message is not None:
        block = returned.message.block
    else:
        data, _ = decode_transfer(returned.body, returned.transfer_encoding)
        block = split_entity(data)
    ids = message_ids(block.get("message-id"), limit=1)
    return ids[0] if ids else None


def _text_message_id(text: str) -> str | None:
    found = _TEXT_MESSAGE_ID.search(text)
    return found.group(1) if found else None


def _after_type(value: str) -> str:
    """ "rfc822; bob@example.com" -> "bob@example.com" (RFC 3464 typed fields)."""
    return value.split(";", 1)[-1].strip()


def _find(root: Entity, wanted: Callable[[Entity], bool]) -> Entity | None:
    stack = [root]
    seen = 0
    while stack and seen < 2000:
        entity = stack.pop(0)
        seen += 1
        if wanted(entity):
            return entity
        stack.extend(entity.children)
    return None
