"""A deliberately small email reading for the intake pipeline.

Subject, sender, recipients, Message-ID headers, plain text and attachments,
through the standard library only. The full parser (charsets, quoted-reply
stripping, automatic mail) replaces this behind the same call in the pipeline.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
from dataclasses import dataclass, field
from email.message import EmailMessage

_MAX_ADDRESSES = 200


@dataclass(frozen=True, slots=True)
class MinimalAttachment:
    filename: str | None
    content_type: str
    content: bytes
    content_id: str | None
    inline: bool


@dataclass(frozen=True, slots=True)
class MinimalEmail:
    subject: str
    from_name: str | None
    from_address: str | None
    to: list[tuple[str, str]]
    cc: list[tuple[str, str]]
    message_id: str | None
    in_reply_to: str | None
    references: list[str]
    text: str
    attachments: list[MinimalAttachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)


def _header(msg: EmailMessage, name: str, defects: list[str]) -> str:
    try:
        value = msg.get(name)
        return "" if value is None else " ".join(str(value).split())
    except Exception as exc:  # noqa: BLE001 - any header may be malformed
        defects.append(f"{name}: {type(exc).__name__}")
        raw = msg.get_all(name, failobj=[""])
        return " ".join(str(raw[0]).split()) if raw else ""


def _addresses(msg: EmailMessage, name: str, defects: list[str]) -> list[tuple[str, str]]:
    values = [str(v) for v in msg.get_all(name, failobj=[])][:_MAX_ADDRESSES]
    try:
        pairs = email.utils.getaddresses(values)
    except Exception:  # noqa: BLE001
        defects.append(f"{name}: unreadable address list")
        return []
    return [(n, a) for n, a in pairs[:_MAX_ADDRESSES] if a]


def _text(msg: EmailMessage, defects: list[str]) -> str:
    try:
        body = msg.get_body(preferencelist=("plain", "html"))
        if body is None:
            return ""
        content = body.get_content()
        return content if isinstance(content, str) else ""
    except Exception as exc:  # noqa: BLE001 - wrong charsets, broken encodings
        defects.append(f"body: {type(exc).__name__}")
        payload = msg.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def _attachments(msg: EmailMessage, defects: list[str]) -> list[MinimalAttachment]:
    found: list[MinimalAttachment] = []
    try:
        for part in msg.iter_attachments():
            content = part.get_payload(decode=True)
            if not isinstance(content, bytes):
                continue
            cid = part.get("Content-ID")
            found.append(MinimalAttachment(
                filename=part.get_filename(), content_type=part.get_content_type(),
                content=content, content_id=str(cid).strip() if cid else None,
                inline=part.get_content_disposition() == "inline"))
    except Exception as exc:  # noqa: BLE001
        defects.append(f"attachments: {type(exc).__name__}")
    return found


def parse_minimal(raw: bytes) -> MinimalEmail:
    """Read the few fields intake needs; never raises on malformed input."""
    defects: list[str] = []
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    sender = _addresses(msg, "From", defects)
    from_name, from_address = sender[0] if sender else (None, None)
    references = _header(msg, "References", defects).split()
    return MinimalEmail(
        subject=_header(msg, "Subject", defects),
        from_name=from_name or None,
        from_address=from_address.lower() if from_address else None,
        to=_addresses(msg, "To", defects),
        cc=_addresses(msg, "Cc", defects),
        message_id=_header(msg, "Message-ID", defects) or None,
        in_reply_to=_header(msg, "In-Reply-To", defects) or None,
        references=references,
        text=_text(msg, defects),
        attachments=_attachments(msg, defects),
        defects=defects + [type(d).__name__ for d in msg.defects],
    )
