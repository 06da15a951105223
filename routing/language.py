"""Language identification through py3langid, whose model ships in the package.

Reading the model file is the one thing in routing that touches the disk; it
happens once per process, on first use, and reads package data only.
A caller may pass any `LanguageDetector` instead (tests, another library).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

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
        from py3langid.langid import MODEL_FILE  # type: ignore[import-untyped]

        identifier = _identifier_class().from_model_file(MODEL_FILE, norm_probs=True)
        if self._languages:
            identifier.set_languages(list(self._languages))
        return identifier

    def detect(self, text: str) -> tuple[str, float]:
        if self._identifier is None:
            self._identifier = self._load()
        code, probability = self._identifier.classify(text)
        return str(code), float(probability)


class Read:
    """A detector that has read one sample already: asked about that sample, it
    answers what it found then; about any other text, it asks `detector`."""

    def __init__(self, detector: LanguageDetector, sample: str) -> None:
        self.name = detector.name
        self._detector = detector
        self._sample = sample
        self._found = detector.detect(sample) if enough_text(sample) else None

    def detect(self, text: str) -> tuple[str, float]:
        if self._found is not None and text == self._sample:
            return self._found
        return self._detector.detect(text)


_IDENTIFIER: Any = None
# The words remembered per identifier (about 9 MB when full of 32-byte words),
# and the longest one remembered: a longer run without a space is walked each time.
WORDS_KEPT = 16_384
WORD_BYTES = 32
_NONE: dict[bytes, tuple[int, tuple[int, ...]]] = {}  # a state with no word remembered yet


def _identifier_class() -> Any:
    """py3langid's identifier with two exact shortcuts: the same scores to the bit.

    - **Weights as float32, once per feature.** The model keeps its weights as
      float16 (28 MB); py3langid converts the rows a text's features pick at
      every call, a third of its time here. This one converts each row the first
      time a text uses it and keeps it, packed in the order first used (the same
      float32 matrix product of the same values), for 568 bytes per row kept:
      about 8 MB after 2,000 samples of mixed mail from the test corpus (57 MB if
      every row were used). A lock keeps the rows whole should two threads score
      at once.
    - **Words walked once.** Features are found by walking a byte automaton (one
      state per byte, in Python, over a 39 MB table). Where a word begins in a
      given state, its walk always ends in the same state having met the same
      features in the same order, so each (state, word and its space) is walked
      once and remembered: a desk's mail repeats its words. The counts come out
      as the walk's, in its order. At most `WORDS_KEPT` words of at most
      `WORD_BYTES` bytes are kept (all forgotten when full).

    Only py3langid's scoring steps are replaced; were a later version to name them
    otherwise, its own would run, as exactly.
    """
    global _IDENTIFIER
    if _IDENTIFIER is not None:
        return _IDENTIFIER
    import numpy as np
    from py3langid.langid import LanguageIdentifier

    class Identifier(LanguageIdentifier):  # type: ignore[misc]
        __slots__ = ("_rows", "_slot", "_used", "_source", "_words", "_kept")
        _lock = threading.Lock()

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._source: np.ndarray | None = None  # the weights `_rows` were taken from
            # By the state a word starts in, then the word: where it ends, what it met.
            self._words: dict[int, dict[bytes, tuple[int, tuple[int, ...]]]] = {}
            self._kept = 0  # words remembered

        def _raw_score(self, text: bytes) -> np.ndarray:
            visits = self._visits(text)
            # No feature at all: py3langid's own answer for that.
            scores: np.ndarray = (self._sparse_score(visits, self.nb_ptc) if visits
                                  else super()._raw_score(text))
            return scores

        def _visits(self, text: bytes) -> Counter[int]:
            """The automaton's feature counts over `text`, word by word."""
            words = self._words
            found: list[int] = []
            state = 0
            parts = text.split(b" ")
            tail = parts.pop()  # the one part without a space after it
            for part in parts:
                # Remembered by the state it starts in and the word without the
                # space that follows it: no key or word built per word.
                known = words.get(state, _NONE).get(part)
                if known is None:
                    met: list[int] = []
                    known = (self._walk(state, part + b" ", met), tuple(met))
                    if len(part) < WORD_BYTES:
                        self._remember(state, part, known)
                state = known[0]
                found += known[1]
            self._walk(state, tail, found)
            return Counter(found)

        def _remember(self, state: int, part: bytes, known: tuple[int, tuple[int, ...]]
                      ) -> None:
            if self._kept >= WORDS_KEPT:
                self._words.clear()
                self._kept = 0
            self._words.setdefault(state, {})[part] = known
            self._kept += 1

        def _walk(self, state: int, word: bytes, found: list[int]) -> int:
            """py3langid's walk over `word` from `state`; its features added to `found`."""
            moves, rows, output = self.tk_nextmove, self._rowbase, self.tk_output
            for byte in word:
                state = moves[rows[state] + byte]
                feature = output[state]
                if feature >= 0:
                    found.append(feature)
            return state

        def _sparse_score(self, visits: dict[int, int], table: np.ndarray) -> np.ndarray:
            with self._lock:
                scores: np.ndarray = self._score(visits, table)
                return scores

        def _score(self, visits: dict[int, int], table: np.ndarray) -> np.ndarray:
            if self._source is not table:  # new, or languages set
                self._source = table
                self._slot = np.full(len(table), -1, dtype=np.intp)  # row -> kept at
                self._rows = np.empty((1024, table.shape[1]), dtype=np.float32)
                self._used = 0
            index = np.fromiter(visits.keys(), dtype=np.intp, count=len(visits))
            slots = self._slot[index]
            if (slots < 0).any():
                slots = self._keep(table, index)
            counts = np.fromiter(visits.values(), dtype=np.float32, count=len(visits))
            scores: np.ndarray = np.log1p(counts) @ self._rows[slots] + self.nb_pc
            return scores

        def _keep(self, table: np.ndarray, index: np.ndarray) -> np.ndarray:
            """Convert the rows of `index` not kept yet; the slots of all of them."""
            new = np.unique(index[self._slot[index] < 0])
            used = self._used + len(new)
            if used > len(self._rows):
                grown = np.empty((max(used, 2 * len(self._rows)), table.shape[1]),
                                 dtype=np.float32)
                grown[: self._used] = self._rows[: self._used]
                self._rows = grown
            self._rows[self._used:used] = table[new]
            self._slot[new] = np.arange(self._used, used)
            self._used = used
            slots: np.ndarray = self._slot[index]
            return slots

    _IDENTIFIER = Identifier
    return Identifier


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
