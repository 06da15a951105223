"""Turn bytes into text when the charset label is missing, wrong or too narrow.

Mail clients label text with the charset they think they used; the usual
lies are well known (GB2312 text using GBK/GB18030 characters, Latin-1 that
is really Windows-1252, ISO-2022-JP with NEC or IBM extensions), so labels
are widened to the superset first. Detection is the slow last resort.
"""

from __future__ import annotations

import codecs

from charset_normalizer import from_bytes

from parsers.iso2022jp import decode_iso2022jp_ms
from parsers.limits import MAX_DETECT_BYTES

# Labels replaced by the superset that real mailers actually write.
_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "euc-cn": "gb18030",
    "csgb2312": "gb18030",
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "iso_8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "ansi_x3.4-1968": "cp1252",
    "windows-1252": "cp1252",
    "iso-8859-9": "cp1254",
    "iso-8859-11": "cp874",
    "tis-620": "cp874",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "euc-kr": "cp949",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "x-sjis": "cp932",
    "sjis": "cp932",
    "windows-31j": "cp932",
    "big5": "big5hkscs",
    "iso-8859-8-i": "iso-8859-8",
    "utf8": "utf-8",
    "unicode-1-1-utf-7": "utf-7",
    "iso-2022-jp": "iso-2022-jp-ms",
    "csiso2022jp": "iso-2022-jp-ms",
    "iso-2022-jp-ext": "iso-2022-jp-ms",
}

# Labels that only say "some 8-bit charset".
_UNKNOWN = {"", "unknown", "unknown-8bit", "x-unknown", "default", "8bit", "x-user-defined"}

# Labels under which a UTF-8 body is the common mislabelling.
_LATIN_LABELS = {"cp1252"}
# Codecs whose bytes are not a superset of ASCII, or are 7-bit: no UTF-8 shortcut.
_NOT_ASCII_BASED = ("utf-16", "utf-32", "utf-7", "iso-2022", "iso2022", "hz")

ISO2022JP_MS = "iso-2022-jp-ms"
_HIGH_BYTES = bytes(range(0x80, 0x100))


def codec_for(label: str | None) -> str | None:
    """Python codec for a MIME charset label, widened to its superset; None if unknown."""
    if label is None:
        return None
    name = label.strip().strip("\"'").lower()
    if name in _UNKNOWN:
        return None
    if "gb2312" in name or "gbk" in name:
        name = "gb2312"  # "iso-gb2312", "x-gbk" and other spellings seen in the wild
    name = _SUPERSETS.get(name, name)
    if name == ISO2022JP_MS:
        return name
    try:
        return codecs.lookup(name).name
    except (LookupError, ValueError):
        return None


def decode_bytes(data: bytes, label: str | None) -> tuple[str, str | None]:
    """Text of ``data`` and, when the label could not be trusted, a defect saying so."""
    codec = codec_for(label)
    if data.isascii() and codec != ISO2022JP_MS:
        return data.decode("ascii"), None
    if codec is not None:
        if not codec.startswith(_NOT_ASCII_BASED):
            # 8-bit text that is valid UTF-8 is UTF-8 whatever the label says: legacy
            # text almost never passes that check by chance, mislabelled UTF-8 always does.
            text = _try(data, "utf-8")
            if text is not None:
                if codec in ("utf-8", *_LATIN_LABELS):
                    return text, None  # US-ASCII and Latin-1 labels on UTF-8: too common to list
                return text, f"charset {label!r} mislabels UTF-8 text"
        text = _try(data, codec)
        if text is not None:
            return text, None
        for relative in _FAMILY.get(codec, ()):
            text = _try(data, relative)
            if text is not None:
                return text, f"charset {label!r} mislabels {relative} text"
        text = _mixed_utf8(data)
        if text is not None:
            return text, f"charset {label!r}: UTF-8 mixed with cp1252 bytes"
        guessed = detect(data)
        if guessed is not None and guessed != codec:
            text = _try(data, guessed)
            if text is not None:
                return text, f"charset {label!r} does not fit; detected {guessed}"
        return _decode_lossy(data, codec), f"charset {label!r}: undecodable bytes replaced"
    text = _try(data, "utf-8")
    if text is not None:
        return text, None
    defect = "missing charset" if label is None else f"unknown charset {label!r}"
    text = _mixed_utf8(data)
    if text is not None:
        return text, f"{defect}; UTF-8 mixed with cp1252 bytes"
    if _mostly_ascii(data):
        # Western text with a few accents: US-ASCII's widening, cp1252, fits.
        text = _try(data, "cp1252")
        if text is not None:
            return text, f"{defect}; read as cp1252"
    guessed = detect(data)
    if guessed is not None:
        text = _try(data, guessed)
        if text is not None:
            return text, f"{defect}; detected {guessed}"
    return _decode_lossy(data, "cp1252"), f"{defect}; read as cp1252"


def decode_header_bytes(data: bytes, fallback: str | None = None) -> str:
    """An 8-bit header (RFC 6532 says UTF-8; older mailers used their own charset)."""
    text = _try(data, "utf-8")
    if text is not None:
        return text
    codec = codec_for(fallback)
    if codec is not None and codec not in _LATIN_LABELS:
        for candidate in (codec, *_FAMILY.get(codec, ())):
            text = _try(data, candidate)
            if text is not None:
                return text
    if not _mostly_ascii(data):
        guessed = detect(data)
        if guessed is not None:
            text = _try(data, guessed)
            if text is not None:
                return text
    return _decode_lossy(data, "cp1252")


# Text labelled ISO-2022-JP that is not 7-bit is mostly Shift_JIS or EUC-JP.
_FAMILY = {ISO2022JP_MS: ("cp932", "euc_jp")}


def detect(data: bytes) -> str | None:
    """Best guess by charset-normalizer over a bounded sample, or None.

    Too short a sample gives wild guesses (a name in cp1252 read as UTF-16),
    so short text and UTF-16/32 answers are refused: the caller falls back.
    """
    if len(data) < _MIN_DETECT_BYTES:
        return None
    try:
        best = from_bytes(data[:MAX_DETECT_BYTES]).best()
    except Exception:  # a detector bug must not fail the parse
        return None
    if best is None or best.encoding.startswith(("utf_16", "utf_32")):
        return None
    return codec_for(best.encoding)


_MIN_DETECT_BYTES = 24


def _mixed_utf8(data: bytes) -> str | None:
    """Text that is mostly UTF-8 with some stray 8-bit bytes (a reply quoting a Latin-1
    message, say), read as UTF-8 with the stray bytes as cp1252; None if it is not that."""
    sample = data[:MAX_DETECT_BYTES]
    lossy = sample.decode("utf-8", errors="replace")
    stray = lossy.count("\ufffd")
    wide = sum(1 for ch in lossy if ch > "\x7f") - stray
    if wide == 0 or stray > wide:
        return None
    return data.decode("utf-8", errors=_CP1252_FALLBACK)


def _cp1252_for_stray_bytes(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    stray = error.object[error.start : error.end]
    return bytes(stray).decode("cp1252", errors="replace"), error.end


_CP1252_FALLBACK = "intake-cp1252-fallback"
codecs.register_error(_CP1252_FALLBACK, _cp1252_for_stray_bytes)


def _mostly_ascii(data: bytes) -> bool:
    sample = data[:MAX_DETECT_BYTES]
    high = len(sample) - len(sample.translate(None, _HIGH_BYTES))
    return high * 8 < len(sample)


def _try(data: bytes, codec: str) -> str | None:
    if codec == ISO2022JP_MS:
        return decode_iso2022jp_ms(data)
    try:
        return data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def _decode_lossy(data: bytes, codec: str) -> str:
    if codec == ISO2022JP_MS:
        return decode_iso2022jp_ms(data, strict=False) or ""
    try:
        return data.decode(codec, errors="replace")
    except LookupError:
        return data.decode("cp1252", errors="replace")
