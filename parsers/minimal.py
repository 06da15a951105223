"""A deliberately small email reading for the intake pipeline.

Subject, sender, recipients, Message-ID headers, plain text and attachments,
through the standard library only. The full parser (charsets, quoted-reply
stripping, automatic mail) replaces this behind the same call in the pipeline.

It uses the compat32 policy and decodes only the headers it needs: the
`default` policy parses every header it is asked for into objects, which costs
ten times the parse of the whole message.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import Message

_MAX_ADDRESSES = 200
_MAX_HEADER = 16_384


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


def _decode(value: str, defects: list[str], name: str) -> str:
    """RFC 2047 encoded words to text; undecodable input is kept as it came."""
    if "=?" not in value:
        return " ".join(value.split())
    try:
        return " ".join(str(make_header(decode_header(value))).split())
    except Exception:  # noqa: BLE001 - broken encoded words are common
        defects.append(f"{name}: undecodable encoded word")
        return " ".join(value.split())


def _raw(msg: Message, name: str) -> str:
    value = msg.get(name)
    if value is None:
        return ""
    return str(value)[:_MAX_HEADER]


def _addresses(msg: Message, name: str, defects: list[str]) -> list[tuple[str, str]]:
    values = [str(v)[:_MAX_HEADER] for v in msg.get_all(name, failobj=[])][:_MAX_ADDRESSES]
    try:
        pairs = email.utils.getaddresses(values)
    except Exception:  # noqa: BLE001
        defects.append(f"{name}: unreadable address list")
        return []
    return [(_decode(n, defects, name), a) for n, a in pairs[:_MAX_ADDRESSES] if "@" in a]


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:  # unknown charset name
        return payload.decode("utf-8", "replace")


def _text_and_attachments(msg: Message,
                          defects: list[str]) -> tuple[str, list[MinimalAttachment]]:
    plain: str | None = None
    html: str | None = None
    found: list[MinimalAttachment] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        disposition = part.get_content_disposition()
        filename = part.get_filename()
        content_type = part.get_content_type()
        if disposition == "attachment" or filename or not content_type.startswith("text/"):
            content = part.get_payload(decode=True)
            if isinstance(content, bytes):
                cid = part.get("Content-ID")
                found.append(MinimalAttachment(
                    filename=_decode(filename, defects, "filename") if filename else None,
                    content_type=content_type, content=content,
                    content_id=str(cid).strip() if cid else None,
                    inline=disposition == "inline"))
        elif content_type == "text/plain" and plain is None:
            plain = _part_text(part)
        elif content_type == "text/html" and html is None:
            html = _part_text(part)
    return (plain if plain is not None else html or ""), found


def parse_minimal(raw: bytes) -> MinimalEmail:
    """Read the few fields intake needs; never raises on malformed input."""
    defects: list[str] = []
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    sender = _addresses(msg, "From", defects)
    from_name, from_address = sender[0] if sender else (None, None)
    try:
        text, attachments = _text_and_attachments(msg, defects)
    except Exception as exc:  # noqa: BLE001 - a broken structure loses the body, not the mail
        defects.append(f"body: {type(exc).__name__}")
        text, attachments = "", []
    return MinimalEmail(
        subject=_decode(_raw(msg, "Subject"), defects, "Subject"),
        from_name=from_name or None,
        from_address=from_address.lower() if from_address else None,
        to=_addresses(msg, "To", defects),
        cc=_addresses(msg, "Cc", defects),
        message_id=" ".join(_raw(msg, "Message-ID").split()) or None,
        in_reply_to=" ".join(_raw(msg, "In-Reply-To").split()) or None,
        references=_raw(msg, "References").split(),
        text=text,
        attachments=attachments,
        defects=defects + [type(d).__name__ for d in msg.defects],
    )
