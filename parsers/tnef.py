"""Unpack TNEF (winmail.dat, application/ms-tnef) into the files Outlook packed in it."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from tnefparse.tnef import TNEF  # type: ignore[import-untyped]

from parsers.limits import MAX_TNEF_ATTACHMENTS, MAX_TNEF_OBJECTS

TNEF_TYPES = ("application/ms-tnef", "application/vnd.ms-tnef")


@dataclass(frozen=True, slots=True)
class TnefFile:
    filename: str | None
    content: bytes


@dataclass(frozen=True, slots=True)
class TnefContent:
    files: tuple[TnefFile, ...]
    body: str | None


def is_tnef(content_type: str, filename: str | None) -> bool:
    return content_type in TNEF_TYPES or (filename or "").lower() == "winmail.dat"


def unpack_tnef(data: bytes) -> TnefContent | None:
    """The files and plain body inside ``data``; None when it is not readable TNEF."""
    if not _few_objects(data):
        return None
    try:
        # With checksums on, tnefparse logs only real problems (off, it logs every call).
        parsed = TNEF(data, do_checksum=True)
        files = tuple(
            TnefFile(filename=_name(item), content=bytes(item.data or b""))
            for item in parsed.attachments[:MAX_TNEF_ATTACHMENTS]
        )
        body = parsed.body
    except Exception:  # tnefparse raises many kinds on corrupt input
        return None
    if isinstance(body, bytes):
        body = body.decode("cp1252", errors="replace")
    return TnefContent(files=files, body=body.strip("\x00") if isinstance(body, str) else None)


def _few_objects(data: bytes) -> bool:
    """True when ``data`` holds at most MAX_TNEF_OBJECTS attributes.

    tnefparse copies the rest of the stream for every attribute, which is
    quadratic on a stream of many tiny ones; real files hold a few dozen.
    """
    offset = _HEADER_BYTES
    for _ in range(MAX_TNEF_OBJECTS + 1):
        if offset + _ATTRIBUTE_OVERHEAD > len(data):
            return True
        (length,) = struct.unpack_from("<I", data, offset + 5)
        offset += _ATTRIBUTE_OVERHEAD + length
    return False


# MS-OXTNEF 2.1.3: signature and key; then level, id, type, length, data, checksum.
_HEADER_BYTES = 6
_ATTRIBUTE_OVERHEAD = 11


def _name(item: object) -> str | None:
    try:
        name = item.long_filename()  # type: ignore[attr-defined]
    except Exception:  # a missing or undecodable name is not fatal
        return None
    if isinstance(name, bytes):
        name = name.decode("cp1252", errors="replace")
    return str(name).strip("\x00").strip() or None if name else None
