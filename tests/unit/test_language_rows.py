"""The language identifier's shortcuts (routing/language.py) score exactly as
py3langid's own path: the same scores to the bit, restricted or not, from one
thread or several, as float32 rows and walked words are first kept and later
reused."""

from __future__ import annotations

import random
import sys
import threading
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from py3langid.langid import (  # type: ignore[import-untyped]
    MODEL_FILE,
    LanguageIdentifier,
    visit_counts,
)

from routing import language
from routing.language import Py3LangidDetector
from tests.corpus import require_corpus

SAMPLES = [
    "Hello, the printer on the second floor is not working since this morning.",
    "Bonjour, l'imprimante du deuxième étage ne fonctionne plus depuis ce matin.",
    "Hallo, der Drucker im zweiten Stock funktioniert seit heute Morgen nicht mehr.",
    "Hola, la impresora del segundo piso no funciona desde esta mañana.",
    "Здравствуйте, принтер на втором этаже не работает с утра.",
    "こんにちは、二階のプリンターが今朝から動きません。",
    "مرحبا، الطابعة في الطابق الثاني لا تعمل منذ هذا الصباح.",
    "Γεια σας, ο εκτυπωτής στον δεύτερο όροφο δεν λειτουργεί από το πρωί.",
    "Witam, drukarka na drugim piętrze nie działa od rana.",
    "HELLO THE PRINTER IS BROKEN AGAIN PLEASE HELP",
]
WORDS = [w for s in SAMPLES for w in s.split()]


def _identifiers(languages: list[str] | None = None) -> tuple[Any, Any]:
    """(py3langid's own, ours), both fresh, restricted to `languages` if given."""
    stock = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    ours = Py3LangidDetector(tuple(languages or ()))._load()
    if languages:
        stock.set_languages(languages)
    return stock, ours


@pytest.fixture(scope="module")
def pair() -> tuple[Any, Any]:
    return _identifiers()


def _mixed_texts(count: int, seed: int) -> list[str]:
    """Texts of words from the samples in random order, with some random letters."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyzäöüéèàçñßøåłżśćęąабвгдежзийклмнопрстуфхцчшщ"
    texts = []
    for _ in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 40))]
        words += ["".join(rng.choice(letters) for _ in range(rng.randint(2, 9)))
                  for _ in range(rng.randint(0, 10))]
        rng.shuffle(words)
        texts.append(" ".join(words)[:300])
    return texts


def _same(stock: Any, ours: Any, text: str) -> None:
    expected, found = stock._decide(text), ours._decide(text)
    assert found.dtype == expected.dtype
    assert np.array_equal(found, expected), text
    assert ours.classify(text) == stock.classify(text)


def test_rows__scores_are_py3langids_to_the_bit(pair: tuple[Any, Any]) -> None:
    stock, ours = pair
    for text in SAMPLES + _mixed_texts(600, seed=14):
        _same(stock, ours, text)
    # Enough distinct features were met to grow the kept rows past their first block.
    assert ours._used > 1024
    assert len(ours._rows) >= ours._used


def test_rows__a_row_is_converted_once(pair: tuple[Any, Any]) -> None:
    stock, ours = pair
    text = SAMPLES[1]
    _same(stock, ours, text)
    used, rows = ours._used, ours._rows
    for _ in range(3):
        _same(stock, ours, text)
    assert (ours._used, ours._rows) == (used, rows)
    kept = ours._slot >= 0
    assert int(kept.sum()) == ours._used
    # Each kept row holds its own feature's weights.
    features = np.flatnonzero(kept)
    assert np.array_equal(ours._rows[ours._slot[features]],
                          ours.nb_ptc[features].astype(np.float32))


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=300))
def test_rows__any_text(pair: tuple[Any, Any], text: str) -> None:
    stock, ours = pair
    _same(stock, ours, text)


def test_rows__restricted_languages_score_as_py3langids() -> None:
    stock, ours = _identifiers(["en", "de", "fr"])
    assert ours.nb_classes == stock.nb_classes
    for text in SAMPLES + _mixed_texts(200, seed=3):
        _same(stock, ours, text)


def test_rows__threads_at_once_score_as_one() -> None:
    stock, ours = _identifiers()
    texts = _mixed_texts(400, seed=7)
    expected = [stock._decide(t) for t in texts]
    failures: list[str] = []
    start = threading.Barrier(4)

    def score(offset: int) -> None:
        start.wait()
        for i in range(offset, len(texts), 4):
            if not np.array_equal(ours._decide(texts[i]), expected[i]):
                failures.append(texts[i])

    threads = [threading.Thread(target=score, args=(n,)) for n in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often: mid-way through a row's keeping
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == []
    assert ours._used > 1024  # the rows grew while the threads scored


def test_rows__corpus_mail_scores_as_py3langids(pair: tuple[Any, Any]) -> None:
    stock, ours = pair
    texts: list[str] = []
    for path in sorted(require_corpus().rglob("*")):
        if path.is_file() and path.stat().st_size < 200_000:
            text = path.read_bytes().decode("utf-8", "replace")
            texts += [text[i:i + 300] for i in range(0, min(len(text), 3000), 300)]
    assert len(texts) > 500
    for text in texts:
        _same(stock, ours, text)


def _walked(ours: Any, text: str) -> list[tuple[int, int]]:
    """py3langid's own feature counts for `text`, in its order."""
    found = visit_counts(ours.tk_nextmove, ours._rowbase, ours.tk_output, ours._encode(text))
    return list(found.items()) if found else []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([*WORDS, "", " ", "x" * 40, "naïve", "\n", "a b"]),
                max_size=60))
def test_words__counted_as_the_walk_counts_them(pair: tuple[Any, Any], words: list[str]) -> None:
    _, ours = pair
    text = " ".join(words)
    for _ in range(2):  # the first time walked, the second remembered
        assert list(ours._visits(ours._encode(text)).items()) == _walked(ours, text)


def _kept_words(ours: Any) -> dict[tuple[int, bytes], Any]:
    """What the identifier remembers, by the state a word starts in and the word."""
    return {(state, word): known for state, inner in ours._words.items()
            for word, known in inner.items()}


def test_words__remembered_once_and_long_ones_not_at_all(pair: tuple[Any, Any]) -> None:
    stock, ours = pair
    long_word = "Donaudampfschifffahrtsgesellschaftskapitän"  # over WORD_BYTES
    text = f"the printer {long_word} is broken again"
    _same(stock, ours, text)
    kept = _kept_words(ours)
    assert any(word == b"printer" for _, word in kept)
    assert not any(long_word.encode() in word for _, word in kept)
    _same(stock, ours, text)
    assert _kept_words(ours) == kept


def test_words__at_most_words_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(language, "WORDS_KEPT", 50)
    stock, ours = _identifiers()
    for text in _mixed_texts(100, seed=21):
        _same(stock, ours, text)
        assert len(_kept_words(ours)) == ours._kept <= 50
