"""Language identification with py3langid's shipped model."""

from __future__ import annotations

from datetime import UTC, datetime

from routing.api import RoutingInput, decide, load_rules
from routing.language import KNOWN_LANGUAGES, default_detector


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
