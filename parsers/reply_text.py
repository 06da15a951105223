"""The new part of a reply: quoted history and signature removed."""

from __future__ import annotations

from parsers.reply_quotes import strip_quotes
from parsers.signatures import split_signature


def reply_text(text: str) -> str:
    """What the sender wrote this time; the whole text when nothing is left otherwise."""
    text = text.replace("\r\n", "\n")
    return without_signature(strip_quotes(text), fallback=text)


def without_signature(reply: str, fallback: str) -> str:
    """``reply`` minus its signature; ``fallback`` when that leaves nothing (a bare forward)."""
    body, _signature = split_signature(reply)
    return body.strip() or fallback.strip()
