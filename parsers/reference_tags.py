"""Find the request references a subject quotes, e.g. "Re: printer [#R-1042]"."""

from __future__ import annotations

import re
from functools import lru_cache

REF_PLACEHOLDER = "{ref}"
_REF = r"([A-Za-z0-9][A-Za-z0-9._-]{0,63}?)"


def find_reference_tags(subject: str, pattern: str = "[#{ref}]") -> tuple[str, ...]:
    """References found in ``subject`` for a tag format such as ``[#{ref}]``, in order, once each.

    The literal parts of the format match case-insensitively and tolerate
    spaces added by mail clients ("[ #R-1042 ]").
    """
    found: list[str] = []
    for match in _compiled(pattern).finditer(subject):
        if match.group(1) not in found:
            found.append(match.group(1))
    return tuple(found)


@lru_cache(maxsize=32)
def _compiled(pattern: str) -> re.Pattern[str]:
    if pattern.count(REF_PLACEHOLDER) != 1:
        raise ValueError(f"reference tag format needs exactly one {REF_PLACEHOLDER}: {pattern!r}")
    before, after = pattern.split(REF_PLACEHOLDER)
    return re.compile(_literal(before) + r"\s*" + _REF + r"\s*" + _literal(after), re.IGNORECASE)


def _literal(text: str) -> str:
    # Optional spaces around punctuation ("[ #"), none inside words ("Ticket").
    chars = [ch for ch in text if not ch.isspace()]
    out = ""
    for index, ch in enumerate(chars):
        if index and not (ch.isalnum() and chars[index - 1].isalnum()):
            out += r"\s*"
        out += re.escape(ch)
    return out
