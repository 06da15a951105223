"""Language identification through py3langid, whose model ships in the package.

Reading the model file is the one thing in routing that touches the disk; it
happens once per process, on first use, and reads package data only.
A caller may pass any `LanguageDetector` instead (tests, another library).
"""

from __future__ import annotations

from typing import Any, Protocol

UNDETERMINED = "und"  # ISO 639-2 code for "undetermined"
# Below this many letters no identifier is better than a guess.
MIN_LETTERS = 12


class LanguageDetector(Protocol):
    name: str

    def detect(self, text: str) -> tuple[str, float]:
        """ISO 639-1 code and probability (0 to 1) for `text`."""
        ...


class Py3LangidDetector:
    name = "py3langid"

    def __init__(self, languages: tuple[str, ...] = ()) -> None:
        self._languages = languages
        self._identifier: Any = None

    def _load(self) -> Any:
        from py3langid.langid import (  # type: ignore[import-untyped]
            MODEL_FILE,
            LanguageIdentifier,
        )

        identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        if self._languages:
            identifier.set_languages(list(self._languages))
        return identifier

    def detect(self, text: str) -> tuple[str, float]:
        if self._identifier is None:
            self._identifier = self._load()
        code, probability = self._identifier.classify(text)
        return str(code), float(probability)


# The labels of py3langid 0.4's model, so checking a config does not load it.
KNOWN_LANGUAGES = frozenset(
    """
    ace af am an ar ary arz as az ba bcl be bg bn br bs ca crh cs cy da de dz el en
    eo es et eu ext fa fi fo fr fuv fy ga gcf gcr gd gl gom grc gu gug guw ha hbo he
    hi hr ht hu hy id ig is it ja jv ka kab kik kk km kn ko ku ky la lb lg lij ln lo
    lt ltg lv mg mk ml mn mr ms mt my ne nl nn no nso oc om or pa pcm pl ps pt qu ro
    ru rw sa sdh se si sk sl sn so sq sr st sv sw ta te tg th tk tl tr tt ug uk ur
    uz uzs vec vi vo wa wuu xh yo yue zh zu zxx
    """.split()
)


_DETECTORS: dict[tuple[str, ...], Py3LangidDetector] = {}


def _detector(languages: tuple[str, ...]) -> Py3LangidDetector:
    # One model per language restriction, shared by every rule set that uses it.
    detector = _DETECTORS.get(languages)
    if detector is None:
        detector = _DETECTORS[languages] = Py3LangidDetector(languages)
    return detector


def default_detector(languages: tuple[str, ...] = ()) -> LanguageDetector:
    return _detector(languages)


def enough_text(text: str) -> bool:
    letters = 0
    for char in text:
        if char.isalpha():
            letters += 1
            if letters >= MIN_LETTERS:
                return True
    return False
