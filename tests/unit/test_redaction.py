"""What an erasure looks for and blanks (domain/redaction.py)."""

from __future__ import annotations

from domain.redaction import (
    ERASED,
    Terms,
    mentions,
    mentions_bytes,
    names_beside,
    redact,
    redact_bytes,
    redact_quoted,
    redact_value,
)

TERMS = Terms.of("Zelda.Q@Erase.Example", ["Zelda  Quixote", "Zq", "zelda quixote"])


def test_terms__lower_case_address_names_deduplicated_short_ones_dropped() -> None:
    assert TERMS.address == "zelda.q@erase.example"
    assert TERMS.names == ("Zelda Quixote",)
    assert Terms.from_json(TERMS.to_json()) == TERMS


def test_redact__any_case_and_folded_white_space() -> None:
    text = "From: ZELDA\r\n QUIXOTE <zelda.q@ERASE.example>; cc Zelda Quixote"
    assert redact(text, TERMS) == f"From: {ERASED} <{ERASED}>; cc {ERASED}"
    assert mentions(text, TERMS) and not mentions("Zelda alone", TERMS)


def test_redact_bytes__raw_mail_keeps_everything_else() -> None:
    raw = b"To: Zelda Quixote <zelda.q@erase.example>\r\n\r\nHello \xff"
    assert redact_bytes(raw, TERMS) == b"To: [erased] <[erased]>\r\n\r\nHello \xff"
    assert mentions_bytes(raw, TERMS) and not mentions_bytes(b"\xff\xfe", TERMS)


def test_redact_value__json_strings_and_keys() -> None:
    value = {"to": [{"name": "Zelda Quixote", "address": "zelda.q@erase.example"}],
             "zelda.q@erase.example": 1, "n": 2}
    assert redact_value(value, TERMS) == {"to": [{"name": ERASED, "address": ERASED}],
                                          ERASED: 1, "n": 2}


def test_redact_quoted__pieces_of_her_text_only() -> None:
    data = {"cues": [{"text": "Printer jammed\nThe printer  jams. Call me…"},
                     {"text": "down"}, {"text": "someone else's words here"}]}
    out = redact_quoted(data, ["Printer jammed\nThe printer jams. Call me, Zelda."])
    assert out == {"cues": [{"text": ERASED}, {"text": "down"},
                            {"text": "someone else's words here"}]}


def test_names_beside__only_hers() -> None:
    entries = [{"name": "Zelda Q", "address": "ZELDA.Q@erase.example"},
               {"name": "Olaf", "address": "olaf@other.example"}, "junk", {"name": 3}]
    assert names_beside(entries, "zelda.q@erase.example") == ["Zelda Q"]
    assert names_beside("not a list", "zelda.q@erase.example") == []


def test_terms__one_word_names_and_parts_of_words_are_left_alone() -> None:
    """A display name is anyone's to write: "and" beside her address in a Cc
    must not blank "and" (nor "Understand") all over the desk."""
    terms = Terms.of("bob@x.org", ["and", "Bob Smith"])
    assert terms.names == ("Bob Smith",)
    text = "Understand the brand, and mail bob@x.org or Bob Smith; notbob@x.org stays"
    assert redact(text, terms) == (
        f"Understand the brand, and mail {ERASED} or {ERASED}; notbob@x.org stays")
    assert redact_bytes(b"xBob Smithy bob@x.org", terms) == f"xBob Smithy {ERASED}".encode()
