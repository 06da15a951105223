"""The component catalogue: names and aliases found in subject and body."""

from __future__ import annotations

from datetime import UTC, datetime

from routing.api import Cue, Decision, RoutingInput, decide, load_rules

CATALOGUE = """
[[component]]
name = "vpn"
aliases = ["anyconnect", "remote access"]
queue = "network"

[[component]]
name = "email"
aliases = ["outlook", "mailbox"]
queue = "messaging"

[[component]]
name = "printer"
aliases = ["toner"]
"""
QUEUES = ("general", "network", "messaging")


class Fixed:
    name = "fixed"

    def detect(self, text: str) -> tuple[str, float]:
        return "en", 0.9


def route(subject: str = "", body: str = "", extra: str = "") -> Decision:
    rules = load_rules(CATALOGUE + extra, "t.toml", QUEUES)
    item = RoutingInput(
        received_at=datetime(2026, 11, 30, tzinfo=UTC), subject=subject, new_text=body
    )
    return decide(rules, item, detector=Fixed())


def test_component__alias_in_body() -> None:
    d = route(body="My AnyConnect client keeps disconnecting")
    assert d.classification.component.value == "vpn"
    assert d.classification.component.cues == (Cue("body", "anyconnect", 1.0),)
    assert (d.component, d.queue) == ("vpn", "network")


def test_component__name_is_its_own_alias() -> None:
    assert route(subject="VPN question").component == "vpn"


def test_component__multi_word_alias() -> None:
    assert route(body="remote   access is slow").component == "vpn"


def test_component__subject_outweighs_body() -> None:
    # A subject cue counts 2, a body cue 1; a tie goes to the catalogue's order.
    d = route(subject="Outlook keeps asking for a password", body="VPN is on")
    assert d.classification.component.value == "email"
    d = route(subject="Outlook keeps asking", body="VPN is on, anyconnect too")
    assert d.classification.component.value == "vpn"
    d = route(subject="Outlook and mailbox", body="VPN is on")
    assert d.classification.component.value == "email"
    assert d.queue == "messaging"


def test_component__without_queue_keeps_default_queue() -> None:
    d = route(body="out of toner")
    assert (d.component, d.queue) == ("printer", "general")
    assert dict(d.sources)["queue"] == "default"


def test_component__none_found() -> None:
    d = route(body="hello")
    assert d.component is None and d.classification.component.score == 0.0


def test_component__rules_read_class_component() -> None:
    extra = (
        '[[rule]]\nname = "vpn tag"\nwhen = { class.component = "vpn" }\n'
        'then = { tags = ["vpn"] }\n'
    )
    assert route(body="anyconnect", extra=extra).tags == ("vpn",)
