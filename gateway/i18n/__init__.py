"""Languages of what customers read: message catalogues, the choice of a
language, dates in the desk's time zone.

- `choose()`: the language to write in (detected, Accept-Language, queue, desk).
- `translations(language)`: gettext's interface (gettext, ngettext, pgettext) on
  the catalogue of that language; English, the message ids, when there is none.
- `format_datetime()`, `format_date()`: as the language writes them, in a time zone.
- `template_functions(language)`, `prepare(env)`: the same in Jinja2 templates
  (`{% trans %}`, `_()`), new-style.
- `customer_text()`, `customer_title()`: problem messages as a customer reads them.

The catalogues are gettext .po files (catalogues.py): shipped in `locales/`, and
a desk's own folder (`[desk] locales`) read with the configuration.
"""

from __future__ import annotations

from gateway.i18n.catalogues import (
    available,
    folder_languages,
    read_folder,
    translations,
    use_folder,
)
from gateway.i18n.codes import DEFAULT, SHIPPED, normalise
from gateway.i18n.dates import check_timezone, format_date, format_datetime
from gateway.i18n.languages import MAX_HEADER as MAX_ACCEPT_LANGUAGE
from gateway.i18n.languages import (
    choose,
    detected,
    from_timeline,
    match,
    parse_accept_language,
)
from gateway.i18n.problems import N_, customer_text, customer_title
from gateway.i18n.templating import functions as template_functions
from gateway.i18n.templating import prepare

__all__ = [
    "DEFAULT",
    "MAX_ACCEPT_LANGUAGE",
    "SHIPPED",
    "N_",
    "available",
    "check_timezone",
    "choose",
    "customer_text",
    "customer_title",
    "detected",
    "folder_languages",
    "format_date",
    "format_datetime",
    "from_timeline",
    "match",
    "normalise",
    "parse_accept_language",
    "prepare",
    "read_folder",
    "template_functions",
    "translations",
    "use_folder",
]
