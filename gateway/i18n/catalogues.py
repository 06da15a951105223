"""Message catalogues: gettext .po files, read at start and compiled in memory.

The shipped catalogues live in `locales/<lang>/LC_MESSAGES/intake.po` beside
this file (English is the source language: its text is the message ids, so it
needs none). A desk may add a language or reword one with `[desk] locales`, a
folder of the same layout: its entries come first and anything it leaves out
falls back to the shipped catalogue of that language, then of the language
without its region, then to English. No build step: each .po is read by Babel
and compiled to a .mo image in memory, which `gettext` reads as usual.

The desk's folder is checked with the configuration (every file must read
cleanly and every translation keep its message id's placeholders) and put in
force by the loader once the whole configuration is valid (start, reload): a
broken folder, or a reload refused for anything else, leaves the catalogues in
force as they were.
"""

from __future__ import annotations

import gettext
import io
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from babel.messages.catalog import Catalog, Message
from babel.messages.mofile import write_mo
from babel.messages.pofile import PoFileError, read_po

from gateway.i18n.codes import DEFAULT, SHIPPED, normalise, primary

DOMAIN = "intake"
LOCALES = Path(__file__).with_name("locales")
# A catalogue is a few hundred short messages; anything far larger is a mistake.
MAX_PO_BYTES = 4 * 1024 * 1024
MAX_LANGUAGES = 200

# printf-style conversions (as `%` formats them, `%%` included) and str.format fields.
_PERCENT = re.compile(
    r"%(?:\([^)]{0,64}\))?[#0 +-]*(?:\*|\d{1,3})?(?:\.(?:\*|\d{1,3}))?[diouxXeEfFgGcrsa%]")
_BRACES = re.compile(r"\{[A-Za-z_0-9]{0,64}\}")


def placeholders(text: str) -> Counter[str]:
    """The placeholders of `text`: `%(name)s`, `%d`, `%%`, `{name}`, and each lone `%`
    (which `%` formatting refuses) counted as `%`."""
    found: Counter[str] = Counter(_PERCENT.findall(text))
    found.update(_BRACES.findall(text))
    lone = _PERCENT.sub("", text).count("%")
    if lone:
        found["%"] += lone
    return found


def _shown(tokens: Iterable[str]) -> str:
    return ", ".join(sorted(tokens)) or "none"


def placeholder_problem(message: Message) -> str | None:
    """Why a translated message would break where its text is formatted: its
    placeholders differ from its message id's; None when they agree (or when it
    is not translated: that is for the completeness check to say)."""
    if isinstance(message.id, str):
        if not isinstance(message.string, str) or not message.string:
            return None
        wanted, got = placeholders(message.id), placeholders(message.string)
        if wanted != got:
            return (f"placeholders {_shown(got.elements())} where the message id has "
                    f"{_shown(wanted.elements())}")
        return None
    # Plural: each form may leave the count out ("one file"), nothing else.
    union = set(placeholders(message.id[0])) | set(placeholders(message.id[1]))
    counts = {p for p in union if p in ("%d", "%(num)d", "%(num)s", "%s")}
    forms = [s for s in (message.string or ()) if s]
    if not forms:
        return None
    used = set().union(*(set(placeholders(s)) for s in forms))
    extra = used - union
    missing = union - counts - used
    if extra or missing:
        return (f"plural forms use {_shown(used)} where the message ids have "
                f"{_shown(union)}")
    return None


def _key(message: Message) -> str:
    text = message.id if isinstance(message.id, str) else message.id[0]
    return f"{message.context}\x04{text}" if message.context else text


def compiled(catalog: Catalog) -> gettext.GNUTranslations:
    """`catalog` as gettext reads it: written as a .mo image in memory (fuzzy and
    untranslated entries left out, so they fall back)."""
    image = io.BytesIO()
    write_mo(image, catalog)
    image.seek(0)
    return gettext.GNUTranslations(image)


def read_catalogue(path: Path, shown: str, problems: list[str]) -> Catalog | None:
    """One .po file, checked: readable, within size, valid, placeholders kept.
    Problems go to `problems` as `SHOWN: what`; None when it cannot be used."""
    try:
        if path.stat().st_size > MAX_PO_BYTES:
            problems.append(f"{shown}: larger than {MAX_PO_BYTES} bytes")
            return None
        data = path.read_bytes()
    except OSError as exc:
        problems.append(f"{shown}: cannot read: {exc.strerror or exc}")
        return None
    try:
        # No locale: a desk's language need not be one Babel knows; the file's
        # own Plural-Forms header says how its plurals go.
        catalog = read_po(io.BytesIO(data), abort_invalid=True, ignore_obsolete=True)
    except (PoFileError, UnicodeDecodeError, ValueError, LookupError) as exc:
        problems.append(f"{shown}: not a valid .po file: {exc}"[:500])
        return None
    before = len(problems)
    for message in catalog:
        if message.id and (why := placeholder_problem(message)) is not None:
            problems.append(f"{shown}: {_key(message)!r}: {why}"[:500])
    return catalog if len(problems) == before else None


def _po_path(root: Path, folder_name: str) -> Path:
    return root / folder_name / "LC_MESSAGES" / f"{DOMAIN}.po"


@lru_cache(maxsize=1)
def shipped() -> Mapping[str, Catalog]:
    """The shipped catalogues by language, read once per process. A problem in
    one is a bug of ours (the catalogue test catches it), so it raises."""
    problems: list[str] = []
    found: dict[str, Catalog] = {}
    for language in SHIPPED:
        path = _po_path(LOCALES, language)
        if language == DEFAULT and not path.exists():
            continue  # the source language: its message ids are its text
        catalog = read_catalogue(path, f"{language}/LC_MESSAGES/{DOMAIN}.po", problems)
        if catalog is not None:
            found[language] = catalog
    if problems:
        raise RuntimeError("shipped catalogues: " + "; ".join(problems))
    return found


def _language_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def folder_languages(folder: str | Path | None) -> frozenset[str]:
    """The languages a desk's folder has a catalogue for (read, not checked)."""
    if not folder:
        return frozenset()
    try:
        entries = _language_folders(Path(folder))[:MAX_LANGUAGES]
    except OSError:
        return frozenset()
    return frozenset(code for e in entries if (code := normalise(e.name)) is not None
                     and _po_path(Path(folder), e.name).is_file())


def read_folder(folder: str | Path) -> tuple[dict[str, Catalog], list[str]]:
    """A desk's catalogues (`<lang>/LC_MESSAGES/intake.po` under `folder`) by
    language, and every problem (`what`, one each)."""
    root = Path(folder)
    problems: list[str] = []
    found: dict[str, Catalog] = {}
    if not root.is_dir():
        return {}, [f"folder {str(folder)!r} does not exist or is not a folder"]
    try:
        entries = _language_folders(root)
    except OSError as exc:
        return {}, [f"folder {str(folder)!r} cannot be listed: {exc.strerror or exc}"]
    if len(entries) > MAX_LANGUAGES:
        return {}, [f"more than {MAX_LANGUAGES} language folders"]
    for entry in entries:
        language = normalise(entry.name)
        shown = f"{entry.name}/LC_MESSAGES/{DOMAIN}.po"
        if language is None:
            problems.append(f"{entry.name}: not a language code (such as de, pt_BR)")
            continue
        if language in found:
            problems.append(f"{entry.name}: a second folder for language {language}")
            continue
        path = _po_path(root, entry.name)
        if not path.is_file():
            problems.append(f"{shown}: missing")
            continue
        catalog = read_catalogue(path, shown, problems)
        if catalog is not None:
            found[language] = catalog
    return found, problems


@dataclass(frozen=True)
class Catalogues:
    """The catalogues in force: the shipped ones and the desk's (a folder's)."""

    desk: Mapping[str, Catalog] = field(default_factory=dict)
    folder: str | None = None
    _made: dict[str, gettext.NullTranslations] = field(default_factory=dict, repr=False,
                                                        compare=False)

    @property
    def languages(self) -> frozenset[str]:
        return frozenset(SHIPPED) | frozenset(self.desk)

    def translations(self, language: str) -> gettext.NullTranslations:
        made = self._made.get(language)
        if made is not None:
            return made
        chain: list[gettext.NullTranslations] = []
        base = shipped()
        for code in dict.fromkeys((language, primary(language))):
            for source in (self.desk, base):
                if code in source:
                    chain.append(compiled(source[code]))
        if not chain:
            made = gettext.NullTranslations()
        else:
            made = chain[0]
            for later in chain[1:]:
                made.add_fallback(later)
        # Building one twice in a race is harmless: both are the same.
        self._made[language] = made
        return made


_lock = threading.Lock()
_in_force = Catalogues()


def in_force() -> Catalogues:
    return _in_force


def use_folder(folder: str | None) -> list[str]:
    """Read the desk's folder (None: none) and, when it has no problem, put it in
    force with the shipped catalogues. Returns the problems (nothing changes then)."""
    global _in_force
    desk: dict[str, Catalog] = {}
    if folder:
        desk, problems = read_folder(folder)
        if problems:
            return problems
    shipped()  # read now, at start, not on the first customer's page
    with _lock:
        _in_force = Catalogues(desk=desk, folder=folder or None)
    return []


def translations(language: str | None) -> gettext.NullTranslations:
    """The catalogue for `language` (English, the message ids, when there is none)."""
    code = normalise(language) or DEFAULT
    return _in_force.translations(code)


def available() -> frozenset[str]:
    """Every language there is a catalogue for (English included)."""
    return _in_force.languages
