"""Language codes as the gateway writes them: a primary language subtag in
lower case and, when given, a region in upper case (`de`, `pt-BR`).

Codes come from outside (Accept-Language, the classifier, folder names of a
desk's catalogues), so anything that is not a plain ASCII code is refused
rather than guessed at.
"""

from __future__ import annotations

from functools import lru_cache

# The languages shipped, English first (the source language of every message id).
SHIPPED = ("en", "de", "fr", "es", "it", "nl", "pl", "pt")
DEFAULT = "en"
# Longer than any real subtag list (RFC 5646 tags are rarely over 20 characters).
MAX_CODE = 35


def _alpha(text: str, low: int, high: int) -> bool:
    return low <= len(text) <= high and text.isascii() and text.isalpha()


@lru_cache(maxsize=512)  # called several times for every message rendered
def normalise(code: str | None) -> str | None:
    """`code` (`pt_br`, `PT-BR`, `de-Latn-CH`) as `pt-BR`, `de`; None when it is no
    language code. A script or variant subtag is dropped with what follows it:
    catalogues are per language and region only."""
    if not code or len(code) > MAX_CODE:
        return None
    parts = code.strip().replace("_", "-").split("-")
    primary = parts[0].lower()
    if not _alpha(primary, 2, 3):
        return None
    if len(parts) > 1 and (_alpha(parts[1], 2, 2)
                           or (len(parts[1]) == 3 and parts[1].isascii()
                               and parts[1].isdigit())):
        return f"{primary}-{parts[1].upper()}"
    return primary


def primary(code: str) -> str:
    """The language without its region: `pt` of `pt-BR`."""
    return code.split("-", 1)[0]
