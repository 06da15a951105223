"""Values as both databases can store them, whatever arrived.

PostgreSQL's text and jsonb refuse a NUL and any string that is not UTF-8 (in
Python, a string holding a lone surrogate: an undecodable byte kept by
`surrogateescape`, or a `\\ud800` escape in JSON); jsonb refuses NaN and
Infinity. One such value fails its whole statement, and with it every other
row of a shared commit, so every value is made storable before it is written:

- `storable(value)` for what is derived from input (requests, messages,
  events): NUL and lone surrogates become U+FFFD, non-finite numbers null;
- `exact_meta(meta)` for an inbox item's metadata (envelope, HTTP headers),
  which must stay exactly what was received: a string that had to change keeps
  its exact bytes beside it, so nothing is lost.
"""

from __future__ import annotations

import base64
import math
import re
from typing import Any

import orjson

REPLACEMENT = "\ufffd"
# Under `EXACT` in an inbox item's metadata: for each string that text could not
# hold, by JSON pointer (RFC 6901), its exact bytes in base64 (RFC 4648): the
# bytes as received (UTF-8, and undecodable bytes as they came).
EXACT = "exact"

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Characters of text encoded at a time to look for lone surrogates (at most
# 256 KiB of UTF-8 held at once).
ENCODED_AT_ONCE = 65_536


def is_storable(text: str) -> bool:
    """True if PostgreSQL text and jsonb take `text` as it is."""
    if "\x00" in text:
        return False
    if text.isascii():  # the common case, known in C without a scan
        return True
    # A lone surrogate is the one code point UTF-8 cannot write: encoding (in C)
    # finds it 2.5 to 7 times faster than a regex scan of the text. By slices, so
    # a large text is never copied whole (a slice cannot split a character).
    try:
        for start in range(0, len(text), ENCODED_AT_ONCE):
            text[start:start + ENCODED_AT_ONCE].encode()
    except UnicodeEncodeError:
        return False
    return True


def storable_text(text: str) -> str:
    """`text` with NUL and lone surrogates replaced by U+FFFD."""
    return text if is_storable(text) else _UNSTORABLE.sub(REPLACEMENT, text)


def unstorable_count(text: str) -> int:
    """How many characters `storable_text` replaces."""
    return 0 if is_storable(text) else len(_UNSTORABLE.findall(text))


def storable(value: Any) -> Any:
    """A JSON-able value as both databases store it: text as `storable_text`,
    NaN and Infinity as null (JSON has neither), keys as text."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {storable_text(str(k)): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


# Values that never need a change, by exact type: checked without a call.
_PLAIN = frozenset({int, bool, type(None)})


def needs_change(value: Any) -> bool:
    """True if `storable(value)` differs from `value` (without building it).

    On the SMTP and HTTP hot paths for every item, over every event's data:
    loops, not generators, and the common leaves (ASCII text, numbers, None)
    checked in place rather than by a call each."""
    if isinstance(value, str):
        return not is_storable(value)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not is_storable(key):
                return True
            kind = type(item)
            if kind is str:
                if item.isascii():  # the common leaf, checked in place
                    if "\x00" in item:
                        return True
                elif not is_storable(item):
                    return True
            elif kind not in _PLAIN and needs_change(item):
                return True
        return False
    if isinstance(value, list | tuple):
        for item in value:
            if type(item) in _PLAIN:
                continue
            if needs_change(item):
                return True
        return False
    if isinstance(value, float):
        return not math.isfinite(value)
    return False


def stored_as_is(value: Any) -> bool:
    """True if a JSON column stores `value` as it would store `storable(value)`.

    The columns' encoder (storage/engine.py `json_text`, orjson) writes NaN and
    Infinity as null itself and refuses a lone surrogate or a key that is not
    text; so one encoding in C answers for the common value, about a twentieth
    of `needs_change`'s walk over an event's data. What it refuses, and an
    escaped NUL in what it wrote, are left to the walk, whose answer is exact
    for `storable` but may say False where the stdlib encoder (the columns'
    fallback) would have written both alike (a key that is not text beside an
    integer past 64 bits): the value is then made storable, which costs a copy
    and changes nothing stored."""
    try:
        encoded = orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return not needs_change(value)
    return b"\\u0000" not in encoded or not needs_change(value)


def exact_bytes(text: str) -> bytes:
    """The bytes a received string stood for: surrogateescape gives back the
    undecodable bytes as they came; any other lone surrogate (never from the
    wire) is kept by surrogatepass."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _pointer(path: tuple[str, ...]) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in path)


def exact_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """`meta` as storable JSON, each changed string's exact bytes under `EXACT`.

    Returns `meta` itself when nothing needs to change (the common case costs
    one pass over a few short strings).
    """
    if not needs_change(meta):
        return meta
    exact: dict[str, str] = {}

    def walk(value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(value, str):
            if not is_storable(value):
                exact[_pointer(path)] = base64.b64encode(exact_bytes(value)).decode("ascii")
                return storable_text(value)
            return value
        if isinstance(value, dict):  # keys are ours (field names): made storable only
            return {storable_text(str(k)): walk(v, (*path, storable_text(str(k))))
                    for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(v, (*path, str(i))) for i, v in enumerate(value)]
        return storable(value)

    kept = walk(meta, ())
    kept[EXACT] = storable(exact)
    return kept  # type: ignore[no-any-return]
