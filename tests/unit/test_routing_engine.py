"""The chain: rule order, stop, defaults, actions, replies, and the decision."""

from __future__ import annotations

import gc
import json
from datetime import UTC, datetime
from typing import Any

from routing.api import Decision, RoutingInput, compile_rules, decide, load_rules
from routing.engine import _compiled

QUEUES = ("general", "billing", "ops", "network", "review", "vip")
WHEN = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


class Fixed:
    name = "fixed"

    def detect(self, text: str) -> tuple[str, float]:
        return "en", 0.99


def run(config: str, **facts: Any) -> Decision:
    facts.setdefault("received_at", WHEN)
    rules = load_rules(config, "t.toml", QUEUES)
    return decide(rules, RoutingInput(**facts), detector=Fixed())


CHAIN = """
[[rule]]
name = "billing address"
when = { to = "billing@example.com" }
then = { queue = "billing", tags = ["billing"] }

[[rule]]
name = "outage"
when.any = [{ subject.matches = "(?i)\\\\b(outage|down)\\\\b" }, { body.contains = "urgent" }]
then = { type = "incident", priority = "P1", queue = "ops", tags = ["outage"] }
stop = true

[[rule]]
name = "vip"
when = { from_domain = "vip.example" }
then = { queue = "vip", escalation = 1 }
"""


def test_rule_order__later_hit_overrides_earlier() -> None:
    d = run(CHAIN, to=("billing@example.com",), sender="a@vip.example")
    assert d.matched == ("billing address", "vip")
    assert d.queue == "vip"
    assert dict(d.sources)["queue"] == "rule:vip"
    assert d.tags == ("billing",)


def test_stop__ends_the_chain_and_later_rules_are_not_reached() -> None:
    d = run(CHAIN, to=("billing@example.com",), sender="a@vip.example", subject="Site down")
    assert d.matched == ("billing address", "outage")
    assert d.stopped_by == "outage"
    assert (d.queue, d.priority, d.type, d.escalation) == ("ops", "P1", "incident", 0)
    assert d.tags == ("billing", "outage")
    last = d.rule_results[-1]
    assert (last.rule, last.outcome) == ("vip", "not reached")
    assert "'outage' stopped the chain" in last.reason


def test_stop__without_hit_does_not_stop() -> None:
    d = run(CHAIN, sender="a@vip.example", subject="hello")
    assert d.matched == ("vip",)
    assert [r.outcome for r in d.rule_results] == ["miss", "miss", "hit"]


def test_defaults__no_rule_hits() -> None:
    d = run(CHAIN, subject="hello", new_text="nothing to see")
    assert d.matched == ()
    assert d.queue == "general"
    assert (d.priority, d.type) == ("P3", "service_request")
    assert d.acknowledge and d.template == "default"
    assert not d.quarantine and d.escalation == 0
    assert dict(d.sources)["queue"] == "default"


def test_defaults__configured_in_routing_table() -> None:
    config = (
        '[routing]\ndefault_queue = "review"\ndefault_priority = "P4"\n'
        'default_type = "information"\nacknowledge = false\ntemplate = "plain"\n'
    )
    d = run(config, subject="hello")
    assert (d.queue, d.priority, d.type, d.acknowledge, d.template) == (
        "review",
        "P4",
        "information",
        False,
        None,
    )


def test_actions__every_action_applies() -> None:
    config = """
[[component]]
name = "printer"
aliases = ["printers"]

[[rule]]
name = "all actions"
[rule.then]
queue = "billing"
priority = "P2"
type = "complaint"
category = "invoices"
component = "printer"
tags = ["a", "b"]
fields = { region = "eu", seats = 3 }
acknowledge = true
template = "billing-ack"
escalation = 2
"""
    d = run(config)
    assert (d.queue, d.priority, d.type, d.category, d.component) == (
        "billing",
        "P2",
        "complaint",
        "invoices",
        "printer",
    )
    assert d.tags == ("a", "b")
    assert d.fields == (("region", "eu"), ("seats", 3))
    assert (d.acknowledge, d.template, d.escalation) == (True, "billing-ack", 2)


def test_actions__tags_accumulate_without_duplicates_and_fields_merge() -> None:
    config = """
[[rule]]
name = "one"
then = { tags = ["x", "y"], fields = { a = 1, b = "k" } }
[[rule]]
name = "two"
then = { tags = ["y", "z"], fields = { a = 2 } }
"""
    d = run(config)
    assert d.tags == ("x", "y", "z")
    assert dict(d.fields) == {"a": 2, "b": "k"}


def test_quarantine__held_and_not_acknowledged() -> None:
    config = """
[routing.lists]
blocked = ["spam.example"]
[[rule]]
name = "blocked senders"
when = { on_list = "blocked" }
then = { quarantine = true, queue = "review" }
stop = true
applies_to = "all"
"""
    d = run(config, sender="x@spam.example")
    assert d.quarantine and d.queue == "review"
    assert not d.acknowledge and d.template is None
    reply = run(config, sender="x@spam.example", is_reply=True)
    assert reply.quarantine and "quarantine" in reply.applies


def test_acknowledge__rule_turns_it_off_or_picks_template() -> None:
    config = """
[[rule]]
name = "monitoring"
when = { channel = "api" }
then = { acknowledge = false }
[[rule]]
name = "email template"
when = { channel = "email" }
then = { template = "ack-en" }
"""
    assert not run(config, channel="api").acknowledge
    d = run(config, channel="email")
    assert d.acknowledge and d.template == "ack-en"


def test_component__owning_queue_unless_a_rule_sets_the_queue() -> None:
    config = """
[[component]]
name = "vpn"
aliases = ["anyconnect", "remote access"]
queue = "network"
[[rule]]
name = "billing"
when = { to = "billing@example.com" }
then = { queue = "billing" }
"""
    d = run(config, subject="AnyConnect fails", new_text="cannot start it")
    assert (d.component, d.queue) == ("vpn", "network")
    assert dict(d.sources)["queue"] == "component:vpn"
    d = run(config, to=("billing@example.com",), subject="AnyConnect fails")
    assert (d.component, d.queue) == ("vpn", "billing")


def test_component__set_by_rule_routes_to_its_queue() -> None:
    config = """
[[component]]
name = "vpn"
queue = "network"
[[rule]]
name = "vpn form"
when = { form_id = "vpn-access" }
then = { component = "vpn" }
"""
    d = run(config, channel="form", form_id="vpn-access")
    assert (d.component, d.queue) == ("vpn", "network")


def test_replies__are_not_rerouted_by_rules_for_new_requests() -> None:
    d = run(CHAIN, to=("billing@example.com",), subject="Re: down", is_reply=True)
    assert d.matched == ()
    assert d.applies == ()
    assert not d.acknowledge
    assert {r.outcome for r in d.rule_results} == {"skipped"}
    assert "this is a reply" in d.rule_results[0].reason


def test_replies__rule_applying_to_replies_changes_what_it_sets() -> None:
    config = (
        CHAIN
        + """
[[rule]]
name = "angry reply"
when = { body.contains = "still not fixed" }
then = { priority = "P2", escalation = 1 }
applies_to = "replies"
"""
    )
    d = run(config, subject="Re: x", new_text="It is still not fixed!", is_reply=True)
    assert d.matched == ("angry reply",)
    assert d.applies == ("escalation", "priority")
    assert (d.priority, d.escalation) == ("P2", 1)
    new = run(config, subject="x", new_text="It is still not fixed!")
    assert "angry reply" not in new.matched
    assert new.rule_results[-1].outcome == "skipped"


def test_replies__applies_to_all_runs_for_both() -> None:
    config = (
        '[[rule]]\nname = "r"\nwhen = { subject.contains = "x" }\n'
        'then = { tags = ["t"] }\napplies_to = "all"\n'
    )
    assert run(config, subject="x").matched == ("r",)
    assert run(config, subject="x", is_reply=True).matched == ("r",)


def test_enabled__false_skips_the_rule() -> None:
    config = '[[rule]]\nname = "off"\nthen = { queue = "ops" }\nenabled = false\n'
    d = run(config)
    assert d.queue == "general"
    assert d.rule_results[0].outcome == "disabled"


def test_class_override__rule_type_wins_over_classifier() -> None:
    config = """
[[rule]]
name = "complaints desk"
when = { class.type = "complaint" }
then = { queue = "review", type = "information" }
"""
    d = run(config, subject="Complaint", new_text="This is unacceptable, I want a refund.")
    assert d.classification.type.value == "complaint"
    assert d.type == "information" and d.queue == "review"
    assert dict(d.sources)["type"] == "rule:complaints desk"


def test_decision__to_dict_is_json_and_complete() -> None:
    d = run(CHAIN, to=("billing@example.com",), subject="Site down", new_text="x" * 500)
    data = json.loads(json.dumps(d.to_dict()))
    assert data["queue"] == "ops" and data["matched"] == ["billing address", "outage"]
    assert [r["outcome"] for r in data["rules"]] == ["hit", "hit", "not reached"]
    assert data["classification"]["type"]["value"] == "incident"
    assert data["classification"]["type"]["cues"][0] == {
        "where": "subject",
        "text": "down",
        "weight": 1.5,
    }
    assert set(data) >= {"priority", "type", "tags", "fields", "acknowledge", "template"}
    assert set(data) >= {"quarantine", "escalation", "sources", "applies", "stopped_by"}


def test_decision__reasons_truncate_long_values() -> None:
    long_body = "lorem ipsum " * 200 + "URGENT please" + " dolor" * 200
    d = run(CHAIN, subject="hello", new_text=long_body)
    reason = d.rule_results[1].reason
    assert 'body contains "urgent" held' in reason
    assert "URGENT please" in reason
    assert len(reason) < 250


def test_decision__explain_is_readable_text() -> None:
    d = run(CHAIN, to=("billing@example.com",), subject="Site down")
    text = d.explain()
    assert "queue        ops  (rule:outage)" in text
    assert 'subject matches "(?i)\\\\b(outage|down)\\\\b" held on subject = "Site down"' in text
    assert "HIT         outage: subject matches" in text
    assert "NOT REACHED vip" in text
    assert "Classification" in text


def test_decide__same_input_same_decision() -> None:
    a = run(CHAIN, to=("billing@example.com",), subject="Site down")
    b = run(CHAIN, to=("billing@example.com",), subject="Site down")
    assert a == b and a.to_dict() == b.to_dict()


def test_input__naive_time_is_refused() -> None:
    try:
        RoutingInput(received_at=datetime(2026, 1, 1))
    except ValueError as exc:
        assert "aware" in str(exc)
    else:
        raise AssertionError("naive datetime accepted")


def test_compile_rules__once_per_rule_set_found_by_identity() -> None:
    rules = load_rules(CHAIN, "t.toml", QUEUES)
    twin = load_rules(CHAIN, "t.toml", QUEUES)
    assert twin == rules and twin is not rules
    engine = compile_rules(rules)
    assert compile_rules(rules) is engine  # load_rules compiled it: the same one
    assert compile_rules(twin) is not engine  # equal is not enough: no hashing by value
    keys = {id(rules), id(twin)}
    assert keys <= _compiled.keys()
    del rules, twin
    gc.collect()
    assert keys.isdisjoint(_compiled)  # a rule set gone takes its compiled form along
