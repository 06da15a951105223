"""What an erasure looks for and how it blanks it out: pure functions.

A person is found by their address and the names they used (as requester, as
sender, as a recipient named beside their address). Wherever one of these
stands in someone else's record (a Cc line, a greeting, an event's data, a raw
mail's headers), it is replaced by `ERASED`, case-insensitively; the rest of
that record stays readable.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

ERASED = "[erased]"
# A name shorter than this is not looked for: "Al" would blank "Also" and "Alert"
# everywhere, and proves nothing about who wrote.
MIN_NAME = 3
MIN_NAME_WORDS = 2
# Names kept per erasure: a person uses a few; a hostile sender could vary its
# display name per mail, which must not make every later search slower.
MAX_NAMES = 50


@dataclass(frozen=True, slots=True)
class Terms:
    """The person's address (lower case) and names, longest first."""

    address: str
    names: tuple[str, ...] = ()

    @classmethod
    def of(cls, address: str, names: Iterable[str] = ()) -> Terms:
        address = address.strip().lower()
        kept: dict[str, str] = {}
        for name in names:
            clean = " ".join(name.split())
            # Two words at least: a display name comes from a header anyone may
            # write, and one word ("and", "Support") stands in others' text too.
            if (len(clean) >= MIN_NAME and len(clean.split()) >= MIN_NAME_WORDS
                    and clean.lower() != address and clean != ERASED):
                kept.setdefault(clean.lower(), clean)
        ordered = sorted(kept.values(), key=lambda n: (-len(n), n))[:MAX_NAMES]
        return cls(address, tuple(ordered))

    def with_names(self, names: Iterable[str]) -> Terms:
        return Terms.of(self.address, [*self.names, *names])

    def all(self) -> tuple[str, ...]:
        """Every term, longest first (so a name inside another is not cut in two)."""
        return tuple(sorted((self.address, *self.names), key=lambda t: (-len(t), t)))

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address, "names": list(self.names)}

    @classmethod
    def from_json(cls, data: Any) -> Terms:
        if not isinstance(data, dict) or not isinstance(data.get("address"), str):
            raise ValueError("an erasure's terms need an address")
        names = data.get("names")
        return cls.of(data["address"], [n for n in names if isinstance(n, str)]
                      if isinstance(names, list) else [])


@functools.lru_cache(maxsize=16)  # one erasure's terms, over many rows
def _text_pattern(terms: Terms) -> re.Pattern[str]:
    # Names match on any run of white space (a header may fold them).
    parts = [r"\s+".join(re.escape(word) for word in term.split()) for term in terms.all()]
    # Whole words only: a term inside a longer word is someone else's text.
    return re.compile(r"(?<!\w)(?:" + "|".join(parts) + r")(?!\w)", re.IGNORECASE)


@functools.lru_cache(maxsize=16)
def _bytes_pattern(terms: Terms) -> re.Pattern[bytes]:
    parts = [rb"\s+".join(re.escape(word.encode()) for word in term.split())
             for term in terms.all()]
    return re.compile(rb"(?<!\w)(?:" + b"|".join(parts) + rb")(?!\w)", re.IGNORECASE)


def mentions(text: str | None, terms: Terms) -> bool:
    return bool(text) and _text_pattern(terms).search(text or "") is not None


def redact(text: str, terms: Terms) -> str:
    return _text_pattern(terms).sub(ERASED, text)


def mentions_bytes(raw: bytes | None, terms: Terms) -> bool:
    if not raw:
        return False
    # Most inputs name no one: a C-speed look for each term's first word (in
    # ASCII case, as the pattern matches) spares them the regular expression,
    # which costs about 20 ms a MB.
    low = raw.lower()
    if not any(term.split()[0].encode().lower() in low for term in terms.all()):
        return False
    return _bytes_pattern(terms).search(raw) is not None


def redact_bytes(raw: bytes, terms: Terms) -> bytes:
    return _bytes_pattern(terms).sub(ERASED.encode(), raw)


def redact_value(value: Any, terms: Terms) -> Any:
    """A JSON value with every string (keys too) redacted."""
    if isinstance(value, str):
        return redact(value, terms)
    if isinstance(value, dict):
        return {redact(str(k), terms): redact_value(v, terms) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v, terms) for v in value]
    return value


def mentions_value(value: Any, terms: Terms) -> bool:
    if isinstance(value, str):
        return mentions(value, terms)
    if isinstance(value, dict):
        return any(mentions(str(k), terms) or mentions_value(v, terms)
                   for k, v in value.items())
    if isinstance(value, list):
        return any(mentions_value(v, terms) for v in value)
    return False


def names_beside(entries: Any, address: str) -> list[str]:
    """The display names a stored To or Cc list gives `address`."""
    if not isinstance(entries, list):
        return []
    return [str(e["name"]) for e in entries
            if isinstance(e, dict) and str(e.get("address") or "").strip().lower() == address
            and isinstance(e.get("name"), str) and e["name"].strip()]


# A string this short is not taken for a piece of someone's text: it could be anyone's.
MIN_QUOTED = 8
_ELLIPSIS = ("…", "...")


def _squeezed(text: str) -> str:
    return " ".join(text.split()).lower()


def redact_quoted(value: Any, sources: Iterable[str]) -> Any:
    """A JSON value with every string that is a piece of one of `sources` (the
    person's own texts: a classifier's sample or cue, cut with an ellipsis or
    not) replaced by ERASED, white space and case aside."""
    texts = [_squeezed(s) for s in sources if s]

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            core = item
            for ellipsis in _ELLIPSIS:
                core = core.removesuffix(ellipsis)
            core = _squeezed(core)
            if len(core) >= MIN_QUOTED and any(core in text for text in texts):
                return ERASED
            return item
        if isinstance(item, dict):
            return {k: walk(v) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v) for v in item]
        return item

    return walk(value) if texts else value
