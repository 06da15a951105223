"""Classification cues: type and priority, with scores, cues and overrides."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from routing.api import Classification, Cue, RoutingInput, decide, load_rules

QUEUES = ("general", "ops")


class Fixed:
    name = "fixed"

    def detect(self, text: str) -> tuple[str, float]:
        return "en", 0.9


def classify(config: str = "", **facts: Any) -> Classification:
    facts.setdefault("received_at", datetime(2026, 11, 30, tzinfo=UTC))
    rules = load_rules(config, "t.toml", QUEUES)
    return decide(rules, RoutingInput(**facts), detector=Fixed()).classification


def test_type__incident_cues() -> None:
    c = classify(subject="VPN not working", new_text="It crashed again this morning.")
    assert c.type.value == "incident"
    assert {q.text for q in c.type.cues} == {"not working", "crashed"}
    assert 0 < c.type.score < 1


def test_type__each_label_has_cues() -> None:
    cases = {
        "complaint": "This is unacceptable, I want a refund.",
        "information": "Quick question: how do I export my calendar?",
        "access_request": "Please grant me access to the finance share.",
        "service_request": "Could you install Visio on my laptop?",
        "incident": "The printer is broken.",
    }
    for label, text in cases.items():
        assert classify(new_text=text).type.value == label, text


def test_type__subject_weighs_more_than_body() -> None:
    c = classify(subject="Complaint", new_text="a question about the invoice")
    assert c.type.value == "complaint"
    assert c.type.cues == (Cue("subject", "complaint", 1.5),)


def test_type__whole_words_only() -> None:
    c = classify(subject="Download link", new_text="The downloader errors out")
    assert "down" not in {q.text for q in c.type.cues}
    assert c.type.value == "service_request" and c.type.source == "default"


def test_type__default_when_no_cue() -> None:
    c = classify(subject="Hello", new_text="Thanks")
    assert (c.type.value, c.type.score, c.type.cues, c.type.source) == (
        "service_request",
        0.0,
        (),
        "default",
    )


def test_priority__urgency_cues() -> None:
    assert classify(subject="Production down", new_text="").priority.value == "P1"
    assert classify(new_text="This is urgent, we have a deadline").priority.value == "P2"
    assert classify(new_text="No rush, when you have time").priority.value == "P4"
    assert classify(new_text="Hello").priority.value == "P3"


def test_priority__longer_cue_hides_the_cue_inside_it() -> None:
    c = classify(new_text="This is not urgent at all.")
    assert c.priority.value == "P4"
    assert [q.text for q in c.priority.cues] == ["not urgent"]


def test_priority__headers_are_cues() -> None:
    c = classify(headers=(("X-Priority", "1 (Highest)"),), new_text="Hello")
    assert c.priority.value == "P2"
    assert c.priority.cues == (Cue("header:x-priority", "1", 1.0),)
    c = classify(headers=(("Importance", "Low"),), new_text="Hello")
    assert c.priority.value == "P4"


def test_priority__more_weight_wins_and_ties_go_to_more_urgent() -> None:
    c = classify(new_text="urgent, but no rush")
    assert c.priority.value == "P2"
    assert c.priority.score == round(1 / 3, 4)


def test_cues__match_case_and_spacing_insensitively() -> None:
    c = classify(new_text="my screen is NOT\n   WORKING")
    assert [q.text for q in c.type.cues] == ["not working"]


def test_overrides__add_cues_with_weight() -> None:
    config = """
[[classifier]]
output = "type"
label = "complaint"
cues = ["fed up", "grr"]
weight = 3.0
"""
    c = classify(config, new_text="I am fed up, the printer is broken")
    assert c.type.value == "complaint"
    assert c.type.cues == (Cue("body", "fed up", 3.0),)


def test_overrides__replace_builtin_cues() -> None:
    config = """
[[classifier]]
output = "priority"
label = "P2"
cues = ["red alert"]
mode = "replace"
"""
    assert classify(config, new_text="urgent please").priority.value == "P3"
    assert classify(config, new_text="Red alert!").priority.value == "P2"


def test_overrides__rule_can_use_and_override_outputs() -> None:
    config = """
[[rule]]
name = "complaints to duty"
when = { class.type = "complaint", class.type_score.greater = 0.3 }
then = { type = "incident", queue = "ops" }
"""
    rules = load_rules(config, "t.toml", QUEUES)
    item = RoutingInput(
        received_at=datetime(2026, 11, 30, tzinfo=UTC),
        new_text="Unacceptable service, I want compensation.",
    )
    d = decide(rules, item, detector=Fixed())
    assert d.classification.type.value == "complaint"
    assert (d.type, d.queue) == ("incident", "ops")
    reason = d.rule_results[0].reason
    assert 'class.type equals "complaint" held on class.type = "complaint"' in reason
    assert "class.type_score greater 0.3 held on class.type_score = 0.6667" in reason
