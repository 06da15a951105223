"""Decode header values: RFC 2047 words, RFC 2231 parameters, addresses, ids, dates.

Lenient on purpose: encoded words split inside a multi-byte character, missing
base64 padding, encoded words inside quoted strings and raw 8-bit bytes are
all common in real mail and all read here.
"""

from __future__ import annotations

import re
from datetime import datetime
from email.utils import getaddresses, parsedate_to_datetime
from urllib.parse import unquote_to_bytes

from parsers.charsets import decode_bytes, decode_header_bytes
from parsers.limits import MAX_ADDRESSES, MAX_PARAMETERS, MAX_REFERENCES
from parsers.records import Address
from parsers.transfer import decode_base64

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?]*?)\?=")
_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")
_MESSAGE_ID = re.compile(r"<([^<>\s]+)>")
_PARAMETER = re.compile(r"\s*([^\s=;]+)\s*=\s*(\"(?:[^\"\\]|\\.)*\"?|[^;]*)\s*(?:;|$)")
_COMMENT = re.compile(r"\([^()]*\)")
_SECTION = re.compile(r"^(.+?)\*(\d+)?(\*)?$")


def header_text(raw: bytes, fallback_charset: str | None = None) -> str:
    """An unstructured header (Subject and the like) as text."""
    return decode_words(raw_text(raw, fallback_charset))


def raw_text(raw: bytes, fallback_charset: str | None = None) -> str:
    """Header bytes as text before RFC 2047 decoding; 8-bit bytes as UTF-8, then the fallback."""
    if raw.isascii():
        return raw.decode("ascii")
    return decode_header_bytes(raw, fallback_charset)


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words, joining adjacent ones as the RFC says."""
    if "=?" not in value:
        return value
    out: list[str] = []
    pending: list[tuple[str, bytes]] = []  # adjacent encoded words not yet decoded
    last = 0
    for match in _ENCODED_WORD.finditer(value):
        between = value[last : match.start()]
        if between.strip() or not pending:
            _flush(pending, out)
            out.append(between)
        charset = match.group(1).split("*", 1)[0]
        data = _word_bytes(match.group(2), match.group(3))
        if pending and pending[-1][0].lower() == charset.lower():
            # Same charset: join the bytes, a character may span two words.
            pending[-1] = (pending[-1][0], pending[-1][1] + data)
        else:
            pending.append((charset, data))
        last = match.end()
    _flush(pending, out)
    out.append(value[last:])
    return "".join(out)


def _flush(pending: list[tuple[str, bytes]], out: list[str]) -> None:
    for charset, data in pending:
        out.append(decode_bytes(data, charset)[0])
    pending.clear()


def _word_bytes(encoding: str, text: str) -> bytes:
    data = text.encode("ascii", errors="replace")
    if encoding in "Qq":
        return _QP_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), data.replace(b"_", b" "))
    return decode_base64(data)[0]


# The plain forms most mail uses: `Name <a@b>`, `<a@b>`, `a@b`, with a phrase of
# atoms (and dots) and a dot-atom addr-spec, comma-separated. For these the
# stdlib parser's answer is known without it, at a tenth of its cost; anything
# else (quotes, comments, groups, folding, 8-bit text, domain literals) goes to it.
_ATEXT = r"-A-Za-z0-9!#$%&'*+/=?^_`{|}~"  # in a class: the leading - is itself
_ADDR_SPEC = rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_PHRASE = rf"[{_ATEXT}.]+(?:[ \t]+[{_ATEXT}.]+)*"
_PLAIN_MAILBOX = re.compile(
    rf"[ \t]*(?:({_PHRASE})[ \t]*<({_ADDR_SPEC})>|<({_ADDR_SPEC})>|({_ADDR_SPEC}))[ \t]*")
_BLANK = re.compile(r"[ \t]*")


def plain_addresses(value: str) -> list[tuple[str, str]] | None:
    """`getaddresses([value])`'s (name, address) pairs when every entry is in a
    plain form; None when any is not. Blank entries give nothing (the stdlib's
    empty pairs, which `addresses` skips anyway)."""
    pairs: list[tuple[str, str]] = []
    for part in value.split(","):
        found = _PLAIN_MAILBOX.fullmatch(part)
        if found is None:
            if _BLANK.fullmatch(part) is None:
                return None
            continue
        phrase, routed, bracketed, bare = found.groups()
        if phrase is not None:
            pairs.append((" ".join(phrase.split()), routed))
        else:
            pairs.append(("", bracketed if bracketed is not None else bare))
    return pairs


def address_pairs(values: list[str]) -> list[tuple[str, str]]:
    """`getaddresses(values)`, by `plain_addresses` where every value is plain.
    Raises what getaddresses raises on hostile input."""
    pairs: list[tuple[str, str]] = []
    for value in values:
        plain = plain_addresses(value)
        if plain is None:
            return getaddresses(values)
        pairs += plain
    return pairs


def addresses(raw: bytes | None, defects: list[str], field: str) -> tuple[Address, ...]:
    """An address-list field, at most MAX_ADDRESSES entries."""
    if not raw:
        return ()
    value = raw_text(raw)
    try:
        pairs = address_pairs([value])
    except Exception:  # stdlib parser bugs on hostile input
        defects.append(f"{field}: unparseable address list")
        return ()
    found: list[Address] = []
    for name, address in pairs:
        if not address and not name:
            continue
        if len(found) >= MAX_ADDRESSES:
            defects.append(f"{field}: addresses past {MAX_ADDRESSES} ignored")
            break
        if "(" in name and f'"{name}' not in value:
            # A comment beside a phrase is not part of the name (RFC 5322 3.4).
            name = _COMMENT.sub("", name).strip() or name.strip("() ")
        found.append(Address(name=_clean(decode_words(name)), address=address.strip()))
    return tuple(found)


def _clean(text: str) -> str:
    return " ".join(text.replace('\\"', '"').split()).strip("\"' ")


def message_ids(raw: bytes | None, limit: int = MAX_REFERENCES) -> tuple[str, ...]:
    """Message-IDs in a field, without angle brackets; a bare token when none is bracketed."""
    if not raw:
        return ()
    value = raw_text(raw)
    ids = [m.group(1) for m in _MESSAGE_ID.finditer(value)]
    if not ids:
        ids = [token.strip("<>") for token in value.split() if "@" in token]
    return tuple(ids[:limit])


def date(raw: bytes | None) -> datetime | None:
    if not raw:
        return None
    try:
        return parsedate_to_datetime(raw_text(raw)[:200])
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def content_type_params(
    raw: bytes | None, defects: list[str], fallback_charset: str | None = None
) -> tuple[str, dict[str, str]]:
    """The lower-cased value before the first ";" and its parameters (RFC 2045, RFC 2231)."""
    if raw is None:
        return "", {}
    value = raw_text(raw, fallback_charset)
    head, _, rest = value.partition(";")
    return head.strip().lower(), parameters(rest, defects)


def parameters(text: str, defects: list[str]) -> dict[str, str]:
    plain: dict[str, str] = {}
    sections: dict[str, dict[int, tuple[str, bool]]] = {}
    count = 0
    for match in _PARAMETER.finditer(text):
        count += 1
        if count > MAX_PARAMETERS:
            defects.append(f"parameters past {MAX_PARAMETERS} ignored")
            break
        name = match.group(1).lower()
        value = match.group(2).strip()
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1] if value.endswith('"') else value[1:])
        section = _SECTION.match(name)
        if section is None:
            plain.setdefault(name, decode_words(value))
            continue
        base, number, extended = section.group(1), section.group(2), section.group(3)
        sections.setdefault(base, {})[int(number or 0)] = (value, bool(extended or not number))
    for base, parts in sections.items():
        plain[base] = _join_sections(parts)
    return plain


def _join_sections(parts: dict[int, tuple[str, bool]]) -> str:
    """RFC 2231: charset'language' on the first section, percent-encoding where starred."""
    charset = "us-ascii"
    data = b""
    for index in sorted(parts)[:MAX_PARAMETERS]:
        value, extended = parts[index]
        if extended:
            if index == sorted(parts)[0] and value.count("'") >= 2:
                charset, _, value = value.split("'", 2)
                charset = charset or "us-ascii"
            data += unquote_to_bytes(value)
        else:
            data += value.encode("utf-8", errors="replace")
    return decode_words(decode_bytes(data, charset)[0])
