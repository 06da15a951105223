"""Languages of what customers read: message catalogues, the choice of a
language, dates in the desk's time zone. Interface only, for now: every
language reads as English until the catalogues land."""

from __future__ import annotations

import gettext as _gettext
from datetime import datetime

# The languages shipped, English first (the source language of every message id).
SHIPPED = ("en", "de", "fr", "es", "it", "nl", "pl", "pt")
DEFAULT = "en"


def choose(*, detected: str | None = None, accept_language: str | None = None,
           queue: str | None = None, desk: str | None = None) -> str:
    """The language to write in: the request's detected language, then the
    form's or page's Accept-Language (its best shipped match), then the
    queue's default, then the desk's; each only when shipped; else English."""
    for preference in (detected, queue, desk):
        if preference and preference.split("-")[0].lower() in SHIPPED:
            return preference.split("-")[0].lower()
    return DEFAULT


def translations(language: str) -> _gettext.NullTranslations:
    """The catalogue of `language` (gettext's interface: gettext, ngettext, pgettext)."""
    return _gettext.NullTranslations()


def format_datetime(moment: datetime, language: str, timezone: str | None = None) -> str:
    """`moment` as `language` writes a date and time, in `timezone` (the desk's)."""
    return moment.isoformat()
