"""Language identification with py3langid's shipped model."""

from __future__ import annotations

from datetime import UTC, datetime

from routing.api import RoutingInput, decide, load_rules, read_language
from routing.language import KNOWN_LANGUAGES, Read, default_detector


def language(subject: str, body: str, config: str = "") -> tuple[str | None, float]:
    rules = load_rules(config, "t.toml", ["general"])
    item = RoutingInput(
        received_at=datetime(2026, 11, 30, tzinfo=UTC), subject=subject, new_text=body
    )
    guess = decide(rules, item).classification.language
    return guess.value, guess.score


def test_language__english_french_german_spanish() -> None:
    samples = {
        "en": (
            "Printer",
            "Hello, the printer on the second floor is not working since this morning.",
        ),
        "fr": (
            "Imprimante",
            "Bonjour, l'imprimante du deuxième étage ne fonctionne plus depuis ce matin.",
        ),
        "de": (
            "Drucker",
            "Hallo, der Drucker im zweiten Stock funktioniert seit heute Morgen nicht mehr.",
        ),
        "es": ("Impresora", "Hola, la impresora del segundo piso no funciona desde esta mañana."),
    }
    for code, (subject, body) in samples.items():
        found, score = language(subject, body)
        assert found == code, (code, found)
        assert 0.5 < score <= 1.0


def test_language__too_little_text_is_undetermined() -> None:
    rules = load_rules("", "t.toml", ["general"])
    item = RoutingInput(
        received_at=datetime(2026, 11, 30, tzinfo=UTC), subject="ok", new_text="thx"
    )
    guess = decide(rules, item).classification.language
    assert (guess.value, guess.score, guess.source) == ("und", 0.0, "default")
    assert guess.cues[0].text == "too little text"


def test_language__restricted_set_from_config() -> None:
    config = '[routing]\nlanguages = ["en", "de"]\n'
    found, _ = language(
        "Imprimante", "Bonjour, l'imprimante ne fonctionne plus depuis ce matin.", config
    )
    assert found in ("en", "de")


def test_language__source_and_cue_name_the_sample() -> None:
    rules = load_rules("", "t.toml", ["general"])
    item = RoutingInput(
        received_at=datetime(2026, 11, 30, tzinfo=UTC),
        subject="Question",
        new_text="Where can I find the holiday calendar for next year?",
    )
    guess = decide(rules, item).classification.language
    assert guess.source == "py3langid"
    assert guess.cues[0].where == "language sample"
    assert guess.cues[0].text.startswith("Question\nWhere can I")


def test_language__known_codes_match_the_model() -> None:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    assert set(LanguageIdentifier.from_model_file(MODEL_FILE).labels) == KNOWN_LANGUAGES
    detector = default_detector(())
    assert detector.detect("Dit is een Nederlandse zin over de printer die kapot is.")[0] == "nl"


class Counting:
    """A detector that says English and counts what it was asked."""

    name = "counting"

    def __init__(self) -> None:
        self.asked: list[str] = []

    def detect(self, text: str) -> tuple[str, float]:
        self.asked.append(text)
        return "en", 0.5


def test_read__answers_its_sample_without_asking_again() -> None:
    inner = Counting()
    read = Read(inner, "Hello, the printer is broken again")
    assert inner.asked == ["Hello, the printer is broken again"]
    assert read.name == "counting"
    assert read.detect("Hello, the printer is broken again") == ("en", 0.5)
    assert len(inner.asked) == 1
    assert read.detect("another text altogether") == ("en", 0.5)
    assert inner.asked[1:] == ["another text altogether"]
    # Too little text to identify: not read ahead (decide does not ask either).
    short = Read(inner, "Hi")
    assert len(inner.asked) == 2
    short.detect("Hi")
    assert inner.asked[2:] == ["Hi"]


def test_read_language__decides_as_deciding_at_once() -> None:
    rules = load_rules('[settings]\nlanguage_sample_chars = 40\n', "t.toml", ["general"])
    at = datetime(2026, 12, 6, tzinfo=UTC)
    items = [
        RoutingInput(received_at=at, subject="Imprimante", new_text="Bonjour, l'imprimante du "
                     "deuxième étage ne fonctionne plus depuis ce matin."),
        RoutingInput(received_at=at, subject="Hi", new_text=""),
        RoutingInput(received_at=at, subject="Drucker", text="Hallo, der Drucker im zweiten "
                     "Stock funktioniert seit heute Morgen nicht mehr."),
    ]
    for item in items:
        ahead = decide(rules, item, detector=read_language(rules, item))
        assert ahead.to_dict() == decide(rules, item).to_dict()
    assert [decide(rules, i).classification.language.value for i in items] == ["fr", "und",
                                                                               "de"]
