"""Each operator, on text, list, number, boolean and custom fields."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from routing.api import RoutingInput, decide, load_rules

QUEUES = ("general", "billing")
WHEN = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


class Fixed:
    name = "fixed"

    def detect(self, text: str) -> tuple[str, float]:
        return "en", 0.99


def hit(when: str, **facts: Any) -> bool:
    text = f'[[rule]]\nname = "r"\nwhen = {when}\nthen = {{ queue = "billing" }}\n'
    rules = load_rules(text, "test.toml", QUEUES)
    facts.setdefault("received_at", WHEN)
    return decide(rules, RoutingInput(**facts), detector=Fixed()).matched == ("r",)


def test_equals__text_is_case_insensitive() -> None:
    assert hit('{ subject.equals = "Printer Broken" }', subject="printer BROKEN")
    assert not hit('{ subject.equals = "Printer" }', subject="Printer broken")


def test_equals__shorthand_scalar() -> None:
    assert hit('{ from = "Ann@Example.com" }', sender="ann@example.com")


def test_equals__list_field_any_element() -> None:
    assert hit('{ to = "billing@example.com" }', to=("a@example.com", "Billing@Example.com"))
    assert not hit('{ to = "billing@example.com" }', to=("a@example.com",))


def test_one_of__shorthand_list() -> None:
    assert hit('{ from_domain = ["a.example", "b.example"] }', sender="x@b.example")
    assert not hit('{ from_domain = ["a.example", "b.example"] }', sender="x@c.example")


def test_one_of__explicit_on_list_field() -> None:
    when = '{ cc.one_of = ["x@example.com", "y@example.com"] }'
    assert hit(when, cc=("z@example.com", "Y@example.com"))
    assert not hit(when, cc=("z@example.com",))


def test_contains__text() -> None:
    assert hit('{ subject.contains = "INVOICE" }', subject="About my invoice #12")
    assert not hit('{ subject.contains = "invoice" }', subject="About my bill")


def test_contains__body_uses_one_scan_and_is_case_insensitive() -> None:
    when = '{ any = [{ body.contains = "Refund" }, { body.contains = "chargeback" }] }'
    assert hit(when, new_text="I want a REFUND now")
    assert hit(when, new_text="this is a Chargeback notice")
    assert not hit(when, new_text="thanks for your help")


def test_contains__regex_characters_are_literal() -> None:
    assert hit('{ body.contains = "a+b (c)" }', new_text="x A+B (C) y")
    assert not hit('{ body.contains = "a+b (c)" }', new_text="aab c")


def test_contains__list_field() -> None:
    assert hit('{ attachment_name.contains = "invoice" }', attachments=_files("Invoice-12.pdf"))


def test_starts_with__text() -> None:
    assert hit('{ subject.starts_with = "[ALERT]" }', subject="[alert] disk full")
    assert not hit('{ subject.starts_with = "[ALERT]" }', subject="Re: [alert] disk full")


def test_ends_with__text() -> None:
    assert hit('{ from.ends_with = "@partner.example" }', sender="bob@PARTNER.example")
    assert not hit('{ from.ends_with = "@partner.example" }', sender="bob@partner.example.org")


def test_ends_with__list_field() -> None:
    assert hit('{ attachment_name.ends_with = ".pdf" }', attachments=_files("a.txt", "B.PDF"))


def test_matches__regex_search() -> None:
    when = '{ subject.matches = "\\\\b(INC|REQ)\\\\d{4}\\\\b" }'
    assert hit(when, subject="Follow-up on INC1234 please")
    assert not hit(when, subject="Follow-up on inc1234 please")  # case-sensitive by default
    assert hit('{ subject.matches = "(?i)\\\\binc\\\\d+" }', subject="INC99")


def test_matches__on_body_and_list_field() -> None:
    assert hit('{ body.matches = "order #[0-9]+" }', new_text="about order #991, thanks")
    assert hit('{ to.matches = "^support\\\\+[a-z]+@" }', to=("support+fr@example.com",))


def test_exists__true_and_false() -> None:
    assert hit("{ form_id.exists = true }", channel="form", form_id="contact")
    assert not hit("{ form_id.exists = true }")
    assert hit("{ form_id.exists = false }")
    assert hit("{ header.x-ticket.exists = false }", headers=(("Subject", "x"),))


def test_greater__number_field() -> None:
    assert hit("{ attachment_count.greater = 1 }", attachments=_files("a", "b"))
    assert not hit("{ attachment_count.greater = 2 }", attachments=_files("a", "b"))


def test_less__number_field() -> None:
    assert hit("{ attachment_count.less = 1 }")
    assert not hit("{ attachment_count.less = 1 }", attachments=_files("a"))


def test_greater__custom_field_from_form_string() -> None:
    assert hit("{ field.amount.greater = 1000 }", custom_fields=(("amount", "1500.50"),))
    assert not hit("{ field.amount.greater = 1000 }", custom_fields=(("amount", "999"),))
    assert not hit("{ field.amount.greater = 1000 }", custom_fields=(("amount", "lots"),))


def test_less__custom_field_number() -> None:
    assert hit("{ field.score.less = 0.5 }", custom_fields=(("score", 0.25),))


def test_equals__custom_field_loose_types() -> None:
    assert hit("{ field.seats = 42 }", custom_fields=(("seats", "42"),))
    assert hit('{ field.plan = "Gold" }', custom_fields=(("plan", "gold"),))
    assert hit("{ field.urgent = true }", custom_fields=(("urgent", True),))
    assert hit("{ field.urgent = true }", custom_fields=(("urgent", "true"),))
    assert not hit("{ field.urgent = true }", custom_fields=(("urgent", False),))


def test_one_of__custom_field_numbers() -> None:
    assert hit("{ field.level = [1, 2] }", custom_fields=(("level", 2),))
    assert not hit("{ field.level = [1, 2] }", custom_fields=(("level", 3),))


def test_equals__bool_field() -> None:
    assert hit("{ has_attachment = true }", attachments=_files("a"))
    assert hit("{ has_attachment = false }")


@pytest.mark.parametrize(
    "op", ["equals", "one_of", "contains", "starts_with", "ends_with", "matches", "greater"]
)
def test_operators__missing_value_never_matches(op: str) -> None:
    operand = {"one_of": '["x"]', "greater": "1"}.get(op, '"x"')
    assert not hit(f"{{ field.absent.{op} = {operand} }}")


def _files(*names: str) -> tuple[Any, ...]:
    from routing.api import Attachment

    return tuple(Attachment(name=n, content_type="application/octet-stream") for n in names)
