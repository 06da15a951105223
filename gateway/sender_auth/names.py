"""Domain names from hostile places (MAIL FROM, HELO, From, d= tags), made
into the one form the checks compare and look up: lower-case ASCII (IDNA
A-labels), no final dot, or None when it cannot be a host name."""

from __future__ import annotations

import re

import idna

MAX_NAME = 253
# A label of a name we look up: LDH plus "_" (_dmarc, _domainkey, selectors).
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


def domain(text: str | None) -> str | None:
    """`text` as a multi-label domain name, or None (RFC 7208 4.3: a malformed
    or single-label domain is no identity to check)."""
    if not text:
        return None
    name = text.strip().rstrip(".").lower()
    if not name.isascii():
        try:  # IDNA 2008 with UTS 46 mapping, as mail clients write names today
            name = idna.encode(name, uts46=True).decode("ascii")
        except (UnicodeError, ValueError, idna.IDNAError):
            return None
    if len(name) > MAX_NAME:
        return None
    labels = name.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        return None
    return name
