"""Properties: a rule set written out with `dump_rules` and read back is equal,
and decides the same as the original on generated inputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routing.api import Attachment, RoutingInput, RuleSet, decide, dump_rules, load_rules
from routing.conditions import AllOf, AnyOf, Check, Condition, NotOf
from routing.fields import PRIORITIES, TYPES
from routing.rules import Actions, BusinessHours, Component, CueOverride, Rule, Settings

QUEUES = ("general", "billing", "ops", "network")
WORDS = ("vpn", "invoice", "urgent", "Printer", "refund", "down", "x", "ünïcode", 'quote"d')
ADDRESSES = ("ann@example.com", "bob@vip.example", "billing@example.com", "x@spam.example")
REGEXES = ("(?i)\\bdown\\b", "^re:", "[0-9]{3,}", "(a+)+$", "inv(oice)?", "é")
COMPONENTS = (
    Component(name="vpn", aliases=("anyconnect", "remote access"), queue="network"),
    Component(name="printer", aliases=("toner",), queue=None, description="all printers"),
)

words = st.sampled_from(WORDS)
text_operand = st.one_of(words, st.sampled_from(ADDRESSES), st.text(min_size=1, max_size=6))
number = st.one_of(
    st.integers(-5, 5000), st.floats(-10, 10, allow_nan=False).map(lambda f: round(f, 3))
)


def text_checks(field: str) -> st.SearchStrategy[Check]:
    return st.one_of(
        st.builds(
            Check,
            st.just(field),
            st.sampled_from(["equals", "contains", "starts_with", "ends_with"]),
            text_operand,
        ),
        st.builds(
            Check,
            st.just(field),
            st.just("one_of"),
            st.lists(text_operand, min_size=1, max_size=3).map(tuple),
        ),
        st.builds(Check, st.just(field), st.just("matches"), st.sampled_from(REGEXES)),
        st.builds(Check, st.just(field), st.just("exists"), st.booleans()),
    )


def choice_checks(field: str, choices: tuple[str, ...]) -> st.SearchStrategy[Check]:
    return st.one_of(
        st.builds(Check, st.just(field), st.just("equals"), st.sampled_from(choices)),
        st.builds(
            Check,
            st.just(field),
            st.just("one_of"),
            st.lists(st.sampled_from(choices), min_size=1, max_size=3).map(tuple),
        ),
    )


def number_checks(field: str) -> st.SearchStrategy[Check]:
    return st.one_of(
        st.builds(Check, st.just(field), st.sampled_from(["equals", "greater", "less"]), number),
        st.builds(
            Check,
            st.just(field),
            st.just("one_of"),
            st.lists(number, min_size=1, max_size=3).map(tuple),
        ),
    )


def bool_checks(field: str) -> st.SearchStrategy[Check]:
    return st.builds(Check, st.just(field), st.sampled_from(["equals", "exists"]), st.booleans())


checks = st.one_of(
    *[
        text_checks(f)
        for f in (
            "subject",
            "body",
            "text",
            "from",
            "from_domain",
            "to",
            "recipient",
            "attachment_name",
            "header.x-customer",
            "field.plan",
            "form_id",
        )
    ],
    choice_checks("channel", ("email", "api", "form")),
    choice_checks("class.type", TYPES),
    choice_checks("class.priority", PRIORITIES),
    choice_checks("on_list", ("vip", "blocked")),
    number_checks("attachment_count"),
    number_checks("field.amount"),
    number_checks("class.type_score"),
    bool_checks("has_attachment"),
    bool_checks("business_hours"),
    bool_checks("is_reply"),
    st.builds(Check, st.just("field.flag"), st.just("equals"), st.booleans()),
)
conditions: st.SearchStrategy[Condition] = st.recursive(
    checks,
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: AllOf(tuple(xs))),
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: AnyOf(tuple(xs))),
        inner.map(NotOf),
    ),
    max_leaves=6,
)
nonempty = st.text(min_size=1, max_size=8)
actions = st.builds(
    Actions,
    queue=st.none() | st.sampled_from(QUEUES),
    priority=st.none() | st.sampled_from(PRIORITIES),
    type=st.none() | st.sampled_from(TYPES),
    category=st.none() | nonempty,
    component=st.none() | st.sampled_from(["vpn", "printer"]),
    tags=st.lists(nonempty, max_size=3).map(tuple),
    fields=st.dictionaries(
        st.sampled_from(["a", "b c", "ü"]),
        st.one_of(words, st.integers(0, 9), st.booleans()),
        max_size=2,
    ).map(lambda d: tuple(d.items())),
    acknowledge=st.none() | st.booleans(),
    template=st.none() | nonempty,
    quarantine=st.none() | st.booleans(),
    escalation=st.none() | st.integers(0, 3),
)


@st.composite
def rule_sets(draw: st.DrawFn) -> RuleSet:
    rules = []
    for i in range(draw(st.integers(0, 6))):
        when = draw(st.none() | conditions)
        rules.append(
            Rule(
                name=f"rule {i}",
                when=when,
                then=draw(actions),
                # A catch-all that stops would make the rules after it unreachable,
                # which the loader rightly refuses.
                stop=False if when is None else draw(st.booleans()),
                applies_to=draw(st.sampled_from(["new", "replies", "all"])),
                enabled=draw(st.booleans()),
                description=draw(st.sampled_from(["", "why this rule exists"])),
            )
        )
    hours = draw(
        st.none() | st.just(BusinessHours(timezone="Europe/Paris", holidays=("2026-12-25",)))
    )
    return RuleSet(
        rules=tuple(rules),
        components=COMPONENTS,
        classifier=draw(
            st.sampled_from(
                [
                    (),
                    (
                        CueOverride(
                            output="type", label="complaint", cues=("grr",), weight=2.0, mode="add"
                        ),
                    ),
                ]
            )
        ),
        settings=Settings(
            default_queue=draw(st.sampled_from(QUEUES)),
            default_priority=draw(st.sampled_from(PRIORITIES)),
            acknowledge=draw(st.booleans()),
            max_text_chars=draw(st.integers(5, 70000)),
            lists=(("vip", ("vip.example", "ann@example.com")), ("blocked", ("@spam.example",))),
            business_hours=hours,
        ),
    )


inputs = st.builds(
    RoutingInput,
    received_at=st.integers(0, 24 * 14).map(
        lambda h: datetime(2026, 11, 23, tzinfo=UTC) + timedelta(hours=h)
    ),
    channel=st.sampled_from(["email", "api", "form"]),
    to=st.lists(st.sampled_from(ADDRESSES), max_size=2).map(tuple),
    sender=st.sampled_from(ADDRESSES),
    subject=st.lists(words, max_size=4).map(" ".join),
    new_text=st.lists(words, max_size=12).map(" ".join),
    headers=st.lists(
        st.tuples(st.sampled_from(["X-Customer", "X-Priority"]), words), max_size=2
    ).map(tuple),
    form_id=st.none() | words,
    attachments=st.lists(
        st.builds(Attachment, name=words, content_type=st.just("application/pdf")), max_size=2
    ).map(tuple),
    custom_fields=st.lists(
        st.tuples(
            st.sampled_from(["plan", "amount", "flag"]),
            st.one_of(words, st.integers(0, 99), st.booleans()),
        ),
        max_size=3,
    ).map(tuple),
    is_reply=st.booleans(),
)


class Fixed:
    name = "fixed"

    def detect(self, text: str) -> tuple[str, float]:
        return "en", 0.9


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule_sets())
def test_dump_rules__reads_back_equal(rules: RuleSet) -> None:
    assert load_rules(dump_rules(rules), "dumped.toml", QUEUES) == rules


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule_sets(), st.lists(inputs, min_size=1, max_size=4))
def test_dump_rules__decides_the_same(rules: RuleSet, items: list[RoutingInput]) -> None:
    again = load_rules(dump_rules(rules), "dumped.toml", QUEUES)
    for item in items:
        first: dict[str, Any] = decide(rules, item, detector=Fixed()).to_dict()
        second: dict[str, Any] = decide(again, item, detector=Fixed()).to_dict()
        assert first == second


def test_dump_rules__example_is_readable_toml() -> None:
    rules = load_rules(
        '[[rule]]\nname = "outage"\n'
        'when.any = [{ subject.matches = "(?i)down" }, { body.contains = "urgent" }]\n'
        'then = { queue = "ops", tags = ["p1"] }\nstop = true\n',
        "t.toml",
        QUEUES,
    )
    text = dump_rules(rules)
    assert 'name = "outage"' in text and "[[rule]]" in text
    assert load_rules(text, "t.toml", QUEUES) == rules
