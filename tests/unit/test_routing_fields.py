"""Each field a condition can read, from the input facts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from routing.api import Attachment, RoutingInput, decide, load_rules

QUEUES = ("general", "billing")
MONDAY_10_UTC = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # 11:00 in Paris
HEAD = """
[routing]
max_text_chars = 100
[routing.lists]
vip = ["ceo@example.com", "board.example.org"]
blocked = ["@spam.example"]
[routing.business_hours]
timezone = "Europe/Paris"
days = ["mon", "tue", "wed", "thu", "fri"]
start = "09:00"
end = "17:30"
holidays = ["2026-12-25"]
"""


class Fixed:
    name = "fixed"

    def __init__(self, code: str = "en") -> None:
        self.code = code

    def detect(self, text: str) -> tuple[str, float]:
        return self.code, 0.97


def hit(when: str, detector: Fixed | None = None, **facts: Any) -> bool:
    text = HEAD + f'[[rule]]\nname = "r"\nwhen = {when}\nthen = {{ queue = "billing" }}\n'
    rules = load_rules(text, "test.toml", QUEUES)
    facts.setdefault("received_at", MONDAY_10_UTC)
    decision = decide(rules, RoutingInput(**facts), detector=detector or Fixed())
    return decision.matched == ("r",)


def test_channel__email_api_form() -> None:
    assert hit('{ channel = "api" }', channel="api")
    assert not hit('{ channel = "api" }', channel="email")
    assert hit('{ channel = ["form", "api"] }', channel="form")


def test_to__addresses_normalised() -> None:
    assert hit('{ to = "billing@example.com" }', to=(" <Billing@Example.COM> ",))


def test_cc__only_cc() -> None:
    assert hit('{ cc = "team@example.com" }', cc=("team@example.com",))
    assert not hit('{ cc = "team@example.com" }', to=("team@example.com",))


def test_envelope__rcpt_to() -> None:
    assert hit('{ envelope = "billing@example.com" }', envelope_to=("billing@example.com",))
    assert not hit('{ envelope = "billing@example.com" }', to=("billing@example.com",))


def test_recipient__any_of_to_cc_envelope() -> None:
    for where in ("to", "cc", "envelope_to"):
        assert hit('{ recipient = "billing@example.com" }', **{where: ("billing@example.com",)})


def test_from__sender_address() -> None:
    assert hit('{ from = "ann@example.com" }', sender="Ann@Example.com")
    assert not hit("{ from.exists = true }", sender="")


def test_from_domain__sender_domain() -> None:
    assert hit('{ from_domain = "example.com" }', sender="ann@EXAMPLE.com")
    assert not hit('{ from_domain = "example.com" }', sender="ann@sub.example.com")


def test_subject__text() -> None:
    assert hit('{ subject.contains = "vpn" }', subject="VPN down")


def test_body__new_text_only() -> None:
    assert hit('{ body.contains = "refund" }', new_text="refund please", text="quoted")
    assert not hit('{ body.contains = "refund" }', new_text="thanks", text="> refund please")


def test_text__full_text_and_fallback_to_new_text() -> None:
    assert hit('{ text.contains = "refund" }', new_text="thanks", text="> refund please")
    assert hit('{ text.contains = "refund" }', new_text="refund please")


def test_text__matching_reads_at_most_max_text_chars() -> None:
    late = "x" * 150 + " refund"
    assert not hit('{ body.contains = "refund" }', new_text=late)
    assert not hit('{ body.matches = "refund" }', new_text=late)
    assert hit('{ body.contains = "refund" }', new_text="refund" + "x" * 150)


def test_header__by_name_case_insensitive() -> None:
    headers = (("X-Customer-Id", "ACME-7"), ("Received", "a"), ("Received", "b"))
    assert hit('{ header.x-customer-id = "acme-7" }', headers=headers)
    assert hit('{ header."X-Customer-ID".starts_with = "acme" }', headers=headers)
    assert hit('{ header.received = "b" }', headers=headers)  # any of a repeated header
    assert not hit("{ header.x-other.exists = true }", headers=headers)


def test_form_id__form_channel() -> None:
    assert hit('{ form_id = "contact-us" }', channel="form", form_id="contact-us")


def test_has_attachment__and_count() -> None:
    files = (Attachment(name="a.png", content_type="image/png"),)
    assert hit("{ has_attachment = true }", attachments=files)
    assert hit("{ attachment_count = 1 }", attachments=files)


def test_attachment_type__media_type_without_parameters() -> None:
    files = (Attachment(name="a.txt", content_type="Text/Plain; charset=utf-8"),)
    assert hit('{ attachment_type = "text/plain" }', attachments=files)
    assert hit('{ attachment_type.starts_with = "text/" }', attachments=files)


def test_attachment_name__file_names() -> None:
    files = (Attachment(name="Invoice 12.PDF", content_type="application/pdf"),)
    assert hit('{ attachment_name.ends_with = ".pdf" }', attachments=files)


def test_language__from_detector() -> None:
    text = "Bonjour, je n'arrive plus à me connecter au VPN depuis ce matin."
    assert hit('{ language = "fr" }', detector=Fixed("fr"), new_text=text)
    assert not hit('{ language = "fr" }', detector=Fixed("de"), new_text=text)


def test_language__too_little_text_is_und() -> None:
    assert hit('{ language = "und" }', new_text="ok")


def test_business_hours__inside_and_outside() -> None:
    assert hit("{ business_hours = true }")  # Monday 11:00 Paris
    evening = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)  # 18:00 Paris
    assert hit("{ business_hours = false }", received_at=evening)
    saturday = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    assert hit("{ business_hours = false }", received_at=saturday)


def test_business_hours__holiday_and_other_offset() -> None:
    christmas = datetime(2026, 12, 25, 10, 0, tzinfo=UTC)  # a Friday
    assert hit("{ business_hours = false }", received_at=christmas)
    # 09:30 in New York on a Monday is 15:30 in Paris.
    new_york = datetime(2026, 11, 30, 9, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert hit("{ business_hours = true }", received_at=new_york)


def test_business_hours__absent_without_definition() -> None:
    text = '[[rule]]\nname = "r"\nwhen = { business_hours.exists = false }\n'
    rules = load_rules(text, "t.toml", QUEUES)
    decision = decide(rules, RoutingInput(received_at=MONDAY_10_UTC), detector=Fixed())
    assert decision.matched == ("r",)


def test_on_list__addresses_and_domains() -> None:
    assert hit('{ on_list = "vip" }', sender="CEO@example.com")
    assert hit('{ on_list = "vip" }', sender="member@board.example.org")
    assert hit('{ on_list = "vip" }', sender="x@eu.board.example.org")  # subdomain
    assert not hit('{ on_list = "vip" }', sender="x@example.org")
    assert hit('{ on_list = "blocked" }', sender="bot@spam.example")
    assert hit("{ on_list.exists = false }", sender="someone@else.example")


def test_is_reply__flag() -> None:
    text = '[[rule]]\nname = "r"\nwhen = { is_reply = true }\napplies_to = "all"\n'
    rules = load_rules(text, "t.toml", QUEUES)
    reply = RoutingInput(received_at=MONDAY_10_UTC, is_reply=True)
    assert decide(rules, reply, detector=Fixed()).matched == ("r",)


def test_field__custom_fields() -> None:
    assert hit('{ field.plan = "gold" }', custom_fields=(("plan", "Gold"),))
    assert hit('{ field."order id".matches = "^A-[0-9]+$" }', custom_fields=(("order id", "A-12"),))


def test_class__classifier_outputs() -> None:
    assert hit('{ class.type = "complaint" }', subject="Complaint", new_text="This is unacceptable")
    assert hit('{ class.priority = "P1" }', subject="Outage", new_text="critical outage")
    assert hit("{ class.type_score.greater = 0.5 }", subject="Complaint: unacceptable")
    assert hit('{ class.language = "en" }', new_text="Hello there, my printer is broken again.")
    assert hit("{ class.language_score.greater = 0.9 }", new_text="Hello there, printer broken.")


CALENDAR = """
[[calendar]]
name = "office"
timezone = "Europe/Paris"
hours = { mon = "09:00-12:00, 13:00-17:30", tue = "09:00-17:30" }
closed = ["2026-12-01"]
[routing.business_hours]
calendar = "office"
"""


def test_business_hours__from_the_calendar_service_levels_use() -> None:
    """One definition: `calendar = NAME` makes the rules read that [[calendar]]'s hours,
    its lunch break, weekly days and closed days included."""
    text = CALENDAR + '[[rule]]\nname = "r"\nwhen = { business_hours = true }\n'
    rules = load_rules(text, "t.toml", QUEUES)

    def inside(at: datetime) -> bool:
        return decide(rules, RoutingInput(received_at=at), detector=Fixed()).matched == ("r",)

    assert inside(MONDAY_10_UTC)  # Monday 11:00 Paris
    assert not inside(datetime(2026, 11, 30, 11, 30, tzinfo=UTC))  # 12:30: the break
    assert not inside(datetime(2026, 12, 1, 10, 0, tzinfo=UTC))  # Tuesday, closed day
    assert not inside(datetime(2026, 12, 2, 10, 0, tzinfo=UTC))  # Wednesday: no hours
