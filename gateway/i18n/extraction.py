"""Every message id in the code and templates, and what the catalogues lack.

Extraction is Babel's: Python under gateway/ (`_`, `gettext`, `ngettext`,
`pgettext`, `npgettext`, `N_`), and Jinja2's extractor, with the i18n
extension new-style as the gateway renders them, over the page templates
(gateway/http/templates/*.html) and the mail templates
(gateway/delivery/templates/*.txt). The catalogue test (tests/unit/
test_catalogues.py) fails when a shipped catalogue lacks a translation or a
translation's placeholders differ from its message id's.

    python -m gateway.i18n.extraction       # write intake.pot, merge it into each .po

Merging keeps every translation, adds new ids untranslated and drops the ids
the code no longer has; then translate the new ones (the test lists them).
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from gateway.i18n.catalogues import DOMAIN, LOCALES, placeholder_problem, shipped
from gateway.i18n.codes import DEFAULT, SHIPPED

ROOT = Path(__file__).parents[2]  # the repository (or the installed packages' folder)
KEYWORDS = {"_": None, "gettext": None, "N_": None, "ngettext": (1, 2),
            "pgettext": ((1, "c"), 2), "npgettext": ((1, "c"), 2, 3)}
_JINJA = "jinja2.ext:babel_extract"
# As each environment that renders them is made: the pages trim blocks
# (gateway/http/form_pages.py), the mail templates keep them (config/templates.py).
METHODS = [("gateway/**.py", "python"),
           ("gateway/http/templates/**.html", _JINJA),
           ("gateway/delivery/templates/**.txt", _JINJA)]
OPTIONS = {"gateway/http/templates/**.html": {"newstyle_gettext": "true", "trim_blocks": "true",
                                              "lstrip_blocks": "true", "silent": "false"},
           "gateway/delivery/templates/**.txt": {"newstyle_gettext": "true",
                                                 "keep_trailing_newline": "true",
                                                 "silent": "false"}}
TEMPLATE = LOCALES / f"{DOMAIN}.pot"


@dataclass(frozen=True, slots=True)
class Found:
    """One message id and where the code uses it."""

    id: str | tuple[str, str]
    context: str | None
    where: tuple[str, ...]

    @property
    def key(self) -> str:
        text = self.id if isinstance(self.id, str) else self.id[0]
        return f"{self.context}|{text}" if self.context else text


def _skip(path: str) -> bool:
    parts = Path(path).parts
    return any(p.startswith(".") or p in ("__pycache__", "locales") for p in parts)


def extract(root: Path = ROOT) -> list[Found]:
    """Every message id under `root`'s gateway/, once, with every place it is used."""
    seen: dict[tuple[str | tuple[str, str], str | None], list[str]] = {}
    for file, line, message, _comments, context in extract_from_dir(
            str(root), METHODS, OPTIONS, keywords=KEYWORDS, comment_tags=("Translators:",),
            strip_comment_tags=True, directory_filter=lambda d: not _skip(d)):
        if isinstance(message, tuple):
            if not message[0] or not message[1]:
                continue
            wanted: str | tuple[str, str] = (message[0], message[1])
        elif message:
            wanted = message
        else:
            continue
        seen.setdefault((wanted, context), []).append(f"{file}:{line}")
    return [Found(message, context, tuple(where))
            for (message, context), where in sorted(seen.items(), key=lambda kv: (
                kv[0][1] or "", kv[0][0] if isinstance(kv[0][0], str) else kv[0][0][0]))]


def missing(catalogues: Mapping[str, Catalog], found: Iterable[Found]) -> list[str]:
    """Every message id a catalogue lacks a usable translation for (absent,
    empty, fuzzy, a plural form empty), and every translation whose placeholders
    differ from its id's: `LANG: 'id' (used at FILE:LINE): what`, one a line."""
    problems: list[str] = []
    found = list(found)
    for language, catalog in sorted(catalogues.items()):
        for item in found:
            lookup = item.id if isinstance(item.id, str) else item.id[0]
            message = catalog.get(lookup, context=item.context)
            where = f"{language}: {item.key!r} (used at {item.where[0]})"
            strings = ([] if message is None else [message.string]
                       if isinstance(message.string, str) else list(message.string or ()))
            if message is None:
                problems.append(f"{where}: no translation")
            elif message.fuzzy:
                problems.append(f"{where}: the translation is marked fuzzy")
            elif not strings or not all(s.strip() for s in strings):
                problems.append(f"{where}: the translation is empty")
            elif isinstance(item.id, tuple) != isinstance(message.id, tuple):
                problems.append(f"{where}: singular and plural do not match the code's")
            elif (why := placeholder_problem(message)) is not None:
                problems.append(f"{where}: {why}")
    return problems


def check(root: Path = ROOT) -> list[str]:
    """What the shipped catalogues lack for the code under `root`."""
    catalogues = {lang: catalog for lang, catalog in shipped().items() if lang != DEFAULT}
    absent = [f"{lang}: no catalogue" for lang in SHIPPED
              if lang != DEFAULT and lang not in catalogues]
    return absent + missing(catalogues, extract(root))


AUTHORS = "the intake-gateway authors"
_HEADER: dict[str, Any] = {
    "project": "intake-gateway", "version": "0.1", "domain": DOMAIN, "fuzzy": False,
    "copyright_holder": AUTHORS, "msgid_bugs_address": "", "last_translator": AUTHORS,
    "language_team": AUTHORS,
    "header_comment": ("# Messages of the intake gateway: what its customers read.\n"
                       "# Made by `python -m gateway.i18n.extraction`; English is the "
                       "source.\n#")}


def template(found: Iterable[Found]) -> Catalog:
    catalog = Catalog(**_HEADER)
    for item in found:
        catalog.add(item.id, context=item.context,
                    locations=[(w.rsplit(":", 1)[0], int(w.rsplit(":", 1)[1]))
                               for w in item.where])
    return catalog


def _write(path: Path, catalog: Catalog, *, locations: bool = True) -> None:
    out = io.BytesIO()
    # The .po files leave out where each id is used (the .pot says it) and the
    # ids the code no longer has: they change only when their words do.
    write_po(out, catalog, width=100, sort_output=False, include_previous=False,
             omit_header=False, ignore_obsolete=True, no_location=not locations)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out.getvalue())


def update(root: Path = ROOT) -> dict[str, int]:
    """Write intake.pot from the code and merge it into each shipped .po;
    returns each language's count of messages still untranslated."""
    pot = template(extract(root))
    _write(TEMPLATE, pot)
    left: dict[str, int] = {}
    for language in SHIPPED:
        if language == DEFAULT:
            continue
        path = LOCALES / language / "LC_MESSAGES" / f"{DOMAIN}.po"
        if path.exists():
            with path.open("rb") as file:
                catalog = read_po(file, locale=language)
        else:
            catalog = Catalog(locale=language, **_HEADER)
        catalog.update(pot, no_fuzzy_matching=True)
        _write(path, catalog, locations=False)
        left[language] = len([m for m in catalog if m.id and not _translated(m.string)])
    return left


def _translated(string: str | tuple[str, ...] | list[str] | None) -> bool:
    if isinstance(string, str):
        return bool(string)
    return bool(string) and all(string or ())


if __name__ == "__main__":
    for lang, count in update().items():
        print(f"{lang}: {count} untranslated")
    sys.exit(0)
