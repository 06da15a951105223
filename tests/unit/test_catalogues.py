"""Every message id in the code and templates has a translation in every
shipped catalogue, with the same placeholders: a missing one fails CI.

The ids are extracted as `python -m gateway.i18n.extraction` extracts them
(Babel over gateway/**/*.py, Jinja2's extractor over the page and mail
templates); that command also merges new ids into the .po files to translate.
"""

from __future__ import annotations

from babel.messages.catalog import Catalog

from gateway.i18n.catalogues import shipped
from gateway.i18n.codes import SHIPPED
from gateway.i18n.extraction import Found, check, extract, missing


def test_catalogues__every_message_is_translated_in_every_shipped_language() -> None:
    problems = check()
    assert problems == [], "\n".join(problems[:50])


def test_catalogues__extraction_finds_code_and_templates() -> None:
    found = {f.key: f for f in extract()}
    # A Python call, a page template, a mail template's {% trans %} block, a plural.
    assert "(no subject)" in found
    assert "There is a problem" in found
    assert found["There is a problem"].where[0].startswith(
        "gateway/http/templates/form.html:")
    assert "Please keep %(tag)s in the subject when you write to us about it." in found
    assert any(isinstance(f.id, tuple) for f in found.values())


def test_catalogues__a_missing_translation_is_reported() -> None:
    synthetic = Found("A message nobody has translated", None, ("gateway/x.py:1",))
    catalogues = {lang: c for lang, c in shipped().items() if lang in SHIPPED}
    problems = missing(catalogues, [*extract(), synthetic])
    assert problems == [
        f"{lang}: 'A message nobody has translated' (used at gateway/x.py:1): no translation"
        for lang in sorted(catalogues)]
    assert len(problems) == len(SHIPPED) - 1  # English is the source


def test_catalogues__empty_fuzzy_and_wrong_placeholders_are_reported() -> None:
    catalog = Catalog(locale="de")
    catalog.add("Hello %(name)s,", "Hallo %(nmae)s,")
    catalog.add("Send", "")
    catalog.add("Back", "Zurück", flags=["fuzzy"])
    catalog.add(("%(count)s file", "%(count)s files"), ("eine Datei", "%(count)s Dateien"))
    catalog.add("Closed", "100 % geschlossen")
    found = [Found("Hello %(name)s,", None, ("a:1",)), Found("Send", None, ("a:2",)),
             Found("Back", None, ("a:3",)),
             Found(("%(count)s file", "%(count)s files"), None, ("a:4",)),
             Found("Closed", None, ("a:5",))]
    assert missing({"de": catalog}, found) == [
        "de: 'Hello %(name)s,' (used at a:1): placeholders %(nmae)s where the message id "
        "has %(name)s",
        "de: 'Send' (used at a:2): the translation is empty",
        "de: 'Back' (used at a:3): the translation is marked fuzzy",
        "de: 'Closed' (used at a:5): placeholders % g where the message id has none",
    ]
