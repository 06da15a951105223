"""The sender-authentication rule fields: auth.* and spam.*, written either
way TOML allows, validated against their choices, absent when not checked."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from routing.api import (
    InvalidRulesError,
    RoutingInput,
    SenderAuth,
    SpamOpinion,
    decide,
    dump_rules,
    load_rules,
)

QUEUES = ("general", "review")
NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
FORGED = SenderAuth(source="trusted", spf="fail", dkim="none", dmarc="fail",
                    dmarc_policy="reject")
GENUINE = SenderAuth(source="verified", spf="pass", dkim="pass", dmarc="pass", arc="pass",
                     dmarc_policy="none", dkim_domains=("Example.COM", "esp.example"))


def rules(when: str) -> str:
    return f'[[rule]]\nname = "r"\nwhen = {when}\nthen = {{ queue = "review" }}\n'


def hit(when: str, **facts: Any) -> bool:
    decision = decide(load_rules(rules(when), "test.toml", QUEUES),
                      RoutingInput(received_at=NOW, **facts))
    return decision.matched == ("r",)


def problems(when: str) -> str:
    with pytest.raises(InvalidRulesError) as caught:
        load_rules(rules(when), "test.toml", QUEUES)
    return str(caught.value)


@pytest.mark.parametrize("when", ['{ "auth.dmarc" = "fail" }', '{ auth.dmarc = "fail" }',
                                  '{ auth.dmarc.equals = "fail" }',
                                  '{ auth = { dmarc = { one_of = ["fail", "temperror"] } } }'])
def test_auth_dmarc__both_key_forms_read_the_same(when: str) -> None:
    assert hit(when, auth=FORGED)
    assert not hit(when, auth=GENUINE)


def test_each_auth_field__matches_its_verdict() -> None:
    assert hit('{ auth.spf = "fail" }', auth=FORGED)
    assert hit('{ auth.dkim = "pass", auth.arc = "pass" }', auth=GENUINE)
    assert hit('{ auth.dmarc_policy = "reject" }', auth=FORGED)
    assert hit('{ auth.source = "verified" }', auth=GENUINE)
    assert not hit('{ auth.source = "verified" }', auth=FORGED)
    assert hit('{ auth.dkim_domain = "example.com" }', auth=GENUINE)
    assert hit('{ auth.dkim_domain.ends_with = ".example" }', auth=GENUINE)
    assert not hit('{ auth.dkim_domain = "evil.example" }', auth=GENUINE)


def test_not_checked__fields_absent_equals_fails_exists_false() -> None:
    for field, value in (("auth.dmarc", "none"), ("auth.spf", "none"),
                         ("auth.source", "trusted"), ("auth.dmarc_policy", "none")):
        assert not hit(f'{{ "{field}" = "{value}" }}')
        assert hit(f'{{ "{field}".exists = false }}')
        assert not hit(f'{{ "{field}".exists = true }}')
    assert hit('{ not = { auth.dmarc = "pass" } }')  # unauthenticated: not a pass
    assert hit('{ auth.dmarc.exists = true }', auth=FORGED)
    # A domain without a published policy: the policy alone is absent.
    assert hit('{ auth.dmarc_policy.exists = false }',
               auth=SenderAuth(source="trusted", dmarc="none"))


def test_spam_fields__score_and_flag() -> None:
    spammy = SpamOpinion(score=7.4, flag=True)
    assert hit('{ spam.score.greater = 5 }', spam=spammy)
    assert not hit('{ spam.score.greater = 8 }', spam=spammy)
    assert hit('{ "spam.flag" = true }', spam=spammy)
    assert not hit('{ spam.flag = true }', spam=SpamOpinion(score=1.0))
    assert hit('{ spam.flag.exists = false }', spam=SpamOpinion(score=1.0))
    assert not hit('{ spam.score.greater = -1000 }')  # no filter's verdict
    assert hit('{ spam.score.exists = false }')


def test_internal_domain_unauthenticated__the_documented_rule() -> None:
    when = '{ from_domain = "help.example", not = { auth.dmarc = "pass" } }'
    assert hit(when, sender="ceo@help.example", auth=FORGED)
    assert hit(when, sender="ceo@help.example")  # not checked at all
    assert not hit(when, sender="ceo@help.example", auth=GENUINE)
    assert not hit(when, sender="ann@example.com", auth=FORGED)


@pytest.mark.parametrize(("when", "message"), [
    ('{ auth.dmarc = "passed" }', "'passed' is not one of pass, fail"),
    ('{ "auth.dmarc_policy" = "drop" }', "is not one of none, quarantine, reject"),
    ('{ auth.source = "front" }', "is not one of verified, trusted"),
    ('{ auth.dkim = ["pass", "ok"] }', "'ok' is not one of"),
    ('{ auth.dmark = "fail" }', "unknown field 'auth.dmark'"),
    ('{ auth = "fail" }', "'auth' needs a table of names"),
    ('{ spam.score = "high" }', "needs a number"),
    ('{ spam.flag.greater = 1 }', "does not apply to bool field 'spam.flag'"),
    ('{ auth.dmarc.greater = 1 }', "does not apply to text field 'auth.dmarc'"),
])
def test_validation__reports_each_mistake(when: str, message: str) -> None:
    assert message in problems(when)


def test_dump__writes_the_dotted_form_back() -> None:
    text = rules('{ auth.dmarc = "fail", "spam.score" = { greater = 5 } }')
    dumped = dump_rules(load_rules(text, "test.toml", QUEUES))
    again = load_rules(dumped, "dumped.toml", QUEUES)
    assert again.rules == load_rules(text, "test.toml", QUEUES).rules
    assert "auth" in dumped and "dmarc" in dumped
