from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from routing.sla.escalation import (
    EscalationConfigError,
    load_escalations,
    steps_for,
    unclaimed_due,
)

QUEUES = ("general", "duty")


def test_escalation__reads_each_trigger() -> None:
    rules = load_escalations({"escalation": [
        {"name": "b", "when": {"breached": "first_response", "priority": ["P1", "P2"]},
         "then": {"queue": "duty", "escalation": "+1", "notify": True}},
        {"name": "u", "when": {"unclaimed_for": "30m"}, "then": {"priority": "P2"}},
        {"name": "r", "when": {"reopened": 3, "queue": "general"}, "then": {"escalation": 2}},
    ]}, QUEUES)
    assert [(r.trigger, r.target) for r in rules] == [("breached", "first_response"),
                                                      ("unclaimed", None), ("reopened", None)]
    assert rules[1].unclaimed_for == timedelta(minutes=30)
    assert rules[0].changes(1) == {"queue": "duty", "escalation_level": 2}
    assert rules[2].changes(3) == {"escalation_level": 3}  # never lowers a level
    assert rules[0].notify


def test_escalation__filters_choose_rules() -> None:
    rules = load_escalations({"escalation": [
        {"name": "p1", "when": {"breached": "resolution", "priority": "P1"},
         "then": {"queue": "duty"}},
        {"name": "all", "when": {"breached": "resolution"}, "then": {"escalation": "+1"}},
    ]}, QUEUES)
    fired = steps_for(rules, trigger="breached", target="resolution", queue="general",
                      priority="P3", type=None)
    assert [r.name for r in fired] == ["all"]
    fired = steps_for(rules, trigger="breached", target="resolution", queue="general",
                      priority="P1", type=None)
    assert [r.name for r in fired] == ["p1", "all"]
    assert steps_for(rules, trigger="warning", target="resolution", queue="general",
                     priority="P1", type=None) == ()


@pytest.mark.parametrize(("table", "key"), [
    ({"when": {}, "then": {"queue": "duty"}}, "escalation[0].when"),
    ({"when": {"breached": "lunch"}, "then": {"queue": "duty"}}, "escalation[0].when.breached"),
    ({"when": {"breached": "resolution"}, "then": {"queue": "nowhere"}},
     "escalation[0].then.queue"),
    ({"when": {"breached": "resolution"}, "then": {}}, "escalation[0].then"),
    ({"when": {"unclaimed_for": "soon"}, "then": {"priority": "P1"}},
     "escalation[0].when.unclaimed_for"),
    ({"when": {"reopened": 0}, "then": {"priority": "P1"}}, "escalation[0].when.reopened"),
    ({"when": {"reopened": 2}, "then": {"escalation": "+2"}}, "escalation[0].then.escalation"),
    ({"when": {"reopened": 2, "colour": "red"}, "then": {"priority": "P1"}},
     "escalation[0].when.colour"),
    ({"when": {"reopened": 2}, "then": {"priority": "P3", "priority_may_lower": "yes"}},
     "escalation[0].then.priority_may_lower"),
    ({"when": {"reopened": 2}, "then": {"queue": "duty", "priority_may_lower": True}},
     "escalation[0].then.priority_may_lower"),
])
def test_escalation__errors_name_the_key(table: dict[str, object], key: str) -> None:
    with pytest.raises(EscalationConfigError) as info:
        load_escalations({"escalation": [table]}, QUEUES)
    assert str(info.value).startswith(key)


def test_escalation__priority_is_raised_never_lowered() -> None:
    """The README's "nobody took it" (then priority P2) must not turn a P1 into a P2."""
    [rule] = load_escalations({"escalation": [
        {"name": "u", "when": {"unclaimed_for": "30m"}, "then": {"priority": "P2"}}]}, QUEUES)
    assert rule.changes(0, "P1") == {}
    assert rule.changes(0, "P2") == {}
    assert rule.changes(0, "P3") == {"priority": "P2"}
    assert rule.changes(0, "P4") == {"priority": "P2"}
    assert rule.changes(0, None) == {"priority": "P2"}  # no priority yet: set


def test_escalation__priority_may_lower_when_it_says_so() -> None:
    [rule] = load_escalations({"escalation": [
        {"name": "calm", "when": {"reopened": 1},
         "then": {"priority": "P3", "priority_may_lower": True}}]}, QUEUES)
    assert rule.priority_may_lower
    assert rule.changes(0, "P1") == {"priority": "P3"}
    assert rule.changes(0, "P3") == {}  # the same priority is no change


def test_escalation__unclaimed_due_is_the_earliest_rule_that_applies() -> None:
    rules = load_escalations({"escalation": [
        {"name": "slow", "when": {"unclaimed_for": "1h"}, "then": {"priority": "P2"}},
        {"name": "fast", "when": {"unclaimed_for": "3m", "queue": "duty"},
         "then": {"priority": "P1"}},
        {"name": "late", "when": {"breached": "resolution"}, "then": {"queue": "duty"}},
    ]}, QUEUES)
    created = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert unclaimed_due(rules, created_at=created, queue="duty", priority=None,
                         type=None) == created + timedelta(minutes=3)
    assert unclaimed_due(rules, created_at=created, queue="general", priority=None,
                         type=None) == created + timedelta(hours=1)
    assert unclaimed_due(rules[2:], created_at=created, queue="duty", priority=None,
                         type=None) is None
