"""Scores on the shared public corpus must not drop below their bars."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.corpus_scoring import score_email_reply_parser, score_mime, score_talon
from tests.corpus import require_corpus

MIME_BAR = 70  # of 74 messages with subject, sender, name, hashes and file names all right
TALON_QUOTATION_BAR = 0.95
PINNED_REPLY_TEXTS_BAR = 8


@pytest.fixture(scope="module")
def corpus() -> Path:
    return require_corpus()


def test_corpus_mime__all_five_fields(corpus: Path) -> None:
    scores = score_mime(corpus)
    assert scores["all"].passed >= MIME_BAR, f"{scores['all']} failing: {scores['all'].failures}"


def test_corpus_talon__quotation_rows(corpus: Path) -> None:
    quotation = score_talon(corpus)["quotation"]
    assert quotation.passed >= TALON_QUOTATION_BAR * quotation.total, (
        f"{quotation} failing: {quotation.failures}"
    )


def test_corpus_email_reply_parser__pinned_texts(corpus: Path) -> None:
    pinned = score_email_reply_parser(corpus)["pinned"]
    assert pinned.passed >= PINNED_REPLY_TEXTS_BAR, f"{pinned} failing: {pinned.failures}"


def test_corpus_email_reply_parser__pathological_inputs_are_fast(corpus: Path) -> None:
    import time

    from parsers.reply_text import reply_text

    base = corpus / "replies" / "email_reply_parser" / "raw"
    for name in ("pathological.txt", "email_long_quote.txt"):
        text = (base / name).read_text("utf-8", errors="replace")
        started = time.perf_counter()
        reply_text(text)
        assert time.perf_counter() - started < 1.0, name
