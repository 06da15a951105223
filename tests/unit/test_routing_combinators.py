"""all / any / not, and the implicit AND of keys in one table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from routing.api import RoutingInput, decide, load_rules
from routing.conditions import AllOf, AnyOf, Check, NotOf

WHEN = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


class Fixed:
    name = "fixed"

    def detect(self, text: str) -> tuple[str, float]:
        return "en", 0.99


def rules(when: str) -> Any:
    return load_rules(f'[[rule]]\nname = "r"\nwhen = {when}\n', "t.toml", ["general"])


def hit(when: str, **facts: Any) -> bool:
    facts.setdefault("received_at", WHEN)
    return decide(rules(when), RoutingInput(**facts), detector=Fixed()).matched == ("r",)


def test_all__every_item_must_hold() -> None:
    when = '{ all = [{ subject.contains = "vpn" }, { from_domain = "example.com" }] }'
    assert hit(when, subject="VPN", sender="a@example.com")
    assert not hit(when, subject="VPN", sender="a@other.example")
    assert not hit(when, subject="mail", sender="a@example.com")


def test_all__keys_of_one_table_are_anded() -> None:
    when = '{ subject.contains = "vpn", from_domain = "example.com" }'
    assert rules(when).rules[0].when == AllOf(
        (Check("subject", "contains", "vpn"), Check("from_domain", "equals", "example.com"))
    )
    assert hit(when, subject="VPN", sender="a@example.com")
    assert not hit(when, subject="VPN", sender="a@other.example")


def test_all__two_operators_on_one_field() -> None:
    when = '{ subject = { starts_with = "re:", contains = "invoice" } }'
    assert hit(when, subject="Re: invoice 12")
    assert not hit(when, subject="invoice 12")


def test_any__one_item_is_enough() -> None:
    when = (
        '{ any = [{ subject.matches = "(?i)\\\\b(outage|down)\\\\b" }, '
        '{ body.contains = "urgent" }] }'
    )
    assert hit(when, subject="Site DOWN")
    assert hit(when, subject="hello", new_text="this is URGENT")
    assert not hit(when, subject="download", new_text="no hurry")


def test_any__dotted_toml_form_from_design() -> None:
    text = (
        '[[rule]]\nname = "outage"\n'
        'when.any = [{ subject.matches = "(?i)\\\\b(outage|down)\\\\b" }, '
        '{ body.contains = "urgent" }]\n'
    )
    loaded = load_rules(text, "t.toml", ["general"])
    assert isinstance(loaded.rules[0].when, AnyOf)


def test_not__negates() -> None:
    assert hit('{ not = { from_domain = "example.com" } }', sender="a@other.example")
    assert not hit('{ not = { from_domain = "example.com" } }', sender="a@example.com")
    assert rules("{ not = { form_id.exists = true } }").rules[0].when == NotOf(
        Check("form_id", "exists", True)
    )


def test_not__of_any_and_nested_all() -> None:
    when = (
        '{ all = [{ channel = "email" }, '
        '{ not = { any = [{ subject.contains = "newsletter" }, '
        '{ from.starts_with = "noreply@" }] } }] }'
    )
    assert hit(when, subject="help", sender="ann@example.com")
    assert not hit(when, subject="Our newsletter", sender="ann@example.com")
    assert not hit(when, subject="help", sender="noreply@example.com")
    assert not hit(when, channel="api", subject="help", sender="ann@example.com")


def test_when__absent_or_empty_is_always() -> None:
    assert hit("{}")
    loaded = load_rules('[[rule]]\nname = "r"\n', "t.toml", ["general"])
    assert loaded.rules[0].when is None


def test_explain__any_reports_the_item_that_held() -> None:
    when = '{ any = [{ subject.contains = "vpn" }, { body.contains = "urgent" }] }'
    item = RoutingInput(received_at=WHEN, subject="mail", new_text="it is urgent")
    result = decide(rules(when), item, detector=Fixed()).rule_results[0]
    assert result.outcome == "hit"
    assert result.reason == 'body contains "urgent" held on body = "it is urgent"'


def test_explain__all_reports_the_first_failure() -> None:
    when = '{ subject.contains = "vpn", from_domain = "example.com" }'
    item = RoutingInput(received_at=WHEN, subject="VPN down", sender="a@other.example")
    result = decide(rules(when), item, detector=Fixed()).rule_results[0]
    assert result.outcome == "miss"
    assert (
        result.reason == 'from_domain equals "example.com" failed on from_domain = "other.example"'
    )


def test_explain__not_says_what_it_negated() -> None:
    item = RoutingInput(received_at=WHEN, sender="a@example.com")
    result = decide(rules('{ not = { from_domain = "example.com" } }'), item, detector=Fixed())
    assert result.rule_results[0].reason == (
        'not: from_domain equals "example.com" held on from_domain = "example.com"'
    )
