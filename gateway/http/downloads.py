"""Headers for a stored file's download, safe for any name and type it was stored with.

A file keeps the name its sender gave it (in storage and in the API's JSON); only
the download's headers are built from a cleaned copy: the plain base name (no path,
no `..`), without control, bidi or line-separator characters, offered as RFC 6266's
`filename*` in UTF-8 (RFC 8187) with an ASCII `filename` fallback for old clients.
A stored type that is not one `type/subtype[; param=value]` becomes
application/octet-stream. Either way nothing a sender wrote can end a header line.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

OCTET_STREAM = "application/octet-stream"
# Long enough for any real name; browsers and file systems cut at 255 bytes anyway.
MAX_NAME_CHARS = 150
MAX_EXTENSION_CHARS = 16
MAX_MEDIA_TYPE = 200  # attachments.content_type is String(200)
# RFC 8187 attr-char, the characters filename* may carry unescaped.
ATTR_CHARS = "!#$&+-.^_`|~"
# The fallback's characters: letters, digits and punctuation no browser, shell or
# file system reads specially (no quotes, backslash, slash, percent, colon).
_FALLBACK_UNSAFE = re.compile(r"[^A-Za-z0-9 !#$&+,\-.=@^_`{}~();\[\]]+")
# Categories dropped from names: controls (CR, LF, NUL, ESC, DEL, C1), format
# characters (bidi overrides such as U+202E, zero widths), line and paragraph
# separators, unassigned code points.
_DROPPED = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp", "Cn"})
_SURROGATE = re.compile("[\ud800-\udfff]")
# RFC 9110 8.3.1 media-type: token "/" token *( OWS ";" OWS parameter ).
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_MEDIA_TYPE = re.compile(
    rf"{_TOKEN}/{_TOKEN}(?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|\"[\x20\x21\x23-\x5b\x5d-\x7e]*\"))*")


def _visible(name: str) -> str:
    text = unicodedata.normalize("NFC", _SURROGATE.sub("\ufffd", name))
    return "".join(c if unicodedata.category(c) not in _DROPPED else "" for c in text)


def _base_name(name: str) -> str:
    """The last path segment, without `..`, leading dots, or edge white space."""
    last = [part for part in re.split(r"[/\\]", name) if part.strip(" .")]
    base = last[-1] if last else ""
    base = " ".join(base.split())           # tabs and runs of space: one space
    base = re.sub(r"\.{2,}", ".", base)     # no `..` anywhere
    return base.strip(" .")                 # no hidden file, no Windows trailing dot


def _shortened(name: str, limit: int) -> str:
    if len(name) <= limit:
        return name
    stem, dot, extension = name.rpartition(".")
    if dot and stem and len(extension) <= MAX_EXTENSION_CHARS:
        return stem[:limit - len(extension) - 1].rstrip(" .") + "." + extension
    return name[:limit].rstrip(" .")


def display_name(name: str | None, fallback: str) -> str:
    """The name to offer: `name` as its base name, cleaned, else `fallback`."""
    base = _shortened(_base_name(_visible(name or "")), MAX_NAME_CHARS)
    return base or fallback


def ascii_name(name: str, fallback: str) -> str:
    """`name` in safe ASCII: accents dropped, other characters as `_`."""
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem:
        stem, extension = name, ""

    def plain(text: str) -> str:
        folded = unicodedata.normalize("NFKD", text)
        folded = "".join(c for c in folded if not unicodedata.combining(c))
        return _FALLBACK_UNSAFE.sub("_", folded)

    stem, extension = plain(stem), plain(extension)
    if not any(c.isalnum() for c in stem):
        stem = fallback  # nothing readable left: a neutral name, same extension
    return _base_name(f"{stem}.{extension}" if extension else stem) or fallback


def content_disposition(name: str | None, *, fallback: str) -> str:
    """`attachment` with both file name forms of RFC 6266 section 4.3."""
    shown = display_name(name, fallback)
    return (f'attachment; filename="{ascii_name(shown, fallback)}"; '
            f"filename*=UTF-8''{quote(shown, safe=ATTR_CHARS)}")


def media_type(stored: str | None) -> str:
    """The stored type if it is one well-formed media type, else octet-stream."""
    value = (stored or "").strip()
    if len(value) > MAX_MEDIA_TYPE or not _MEDIA_TYPE.fullmatch(value) or "*" in value:
        return OCTET_STREAM
    return value
