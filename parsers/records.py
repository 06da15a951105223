"""Typed results of parsing one email: what the rest of the gateway reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Address:
    name: str
    address: str


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str | None
    content_type: str
    size: int
    sha256: str
    content_id: str | None
    inline: bool
    content: bytes = field(repr=False)
    # A message/rfc822 attachment, parsed too so its text can be read.
    message: ParsedEmail | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class BouncedRecipient:
    address: str
    action: str
    status: str
    diagnostic: str


@dataclass(frozen=True, slots=True)
class Bounce:
    permanent: bool
    recipients: tuple[BouncedRecipient, ...]
    # Message-ID of our message that bounced, when the report returns it.
    original_message_id: str | None
    reporting_mta: str | None
    # "dsn" for a multipart/report, "heuristic" for a free-form bounce.
    kind: str


@dataclass(frozen=True, slots=True)
class ParsedEmail:
    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    date: datetime | None
    from_: Address | None
    reply_to: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    subject: str
    text: str
    html: str | None
    new_text: str
    attachments: tuple[Attachment, ...]
    auto_reply: bool
    bounce: Bounce | None
    list_mail: bool
    list_id: str | None
    defects: tuple[str, ...]
    # Lower-cased header names and decoded values, for rules that need more.
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def header(self, name: str) -> str | None:
        """First value of a header, by case-insensitive name."""
        wanted = name.lower()
        for key, value in self.headers:
            if key == wanted:
                return value
        return None
