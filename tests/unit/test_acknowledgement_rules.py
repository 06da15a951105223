"""The lifecycle's rules for acknowledgements: who gets one, how many (pure)."""

from __future__ import annotations

import pytest

from domain.lifecycle import (
    NO_RECIPIENT,
    AcknowledgementLimits,
    AcknowledgementsSent,
    Recipient,
    acknowledgement_held,
    counted_recipient,
    recipient_veto,
)


@pytest.mark.parametrize("spelling", [
    "victim@victim.example", "VICTIM@Victim.Example", "victim+tag@victim.example",
    "v.i.c.t.i.m@victim.example", "v.ic.tim+x.y@victim.example", "ｖｉｃｔｉｍ@victim.example",
])
def test_counted_recipient__spellings_of_one_mailbox_count_as_one(spelling: str) -> None:
    assert counted_recipient(spelling) == Recipient(mailbox="victim@victim.example",
                                                    domain="victim.example")


def test_counted_recipient__keeps_within_the_column() -> None:
    # NFKC can make one character eighteen ("\ufdfa"); the key stays within 64 + 1 + 255.
    counted = counted_recipient("\ufdfa" * 60 + "@" + "d" * 255)
    assert len(counted.mailbox) <= 320 and len(counted.domain) <= 255
    assert counted_recipient("+@x.example").mailbox == "+@x.example"  # no empty base
    assert counted_recipient("...@x.example").mailbox == "...@x.example"


def test_acknowledgement_held__narrowest_limit_first() -> None:
    limits = AcknowledgementLimits(per_recipient_per_hour=5, per_domain_per_hour=100,
                                   per_minute=60)
    who = counted_recipient("ann@example.com")
    assert acknowledgement_held(recipient=who, sent=AcknowledgementsSent(
        to_recipient=4, to_domain=99, in_last_minute=59), limits=limits) is None
    assert acknowledgement_held(recipient=who, sent=AcknowledgementsSent(
        to_recipient=5, to_domain=100, in_last_minute=60), limits=limits) == (
        "5 sent to ann@example.com in the last hour (limit 5)")
    assert acknowledgement_held(recipient=who, sent=AcknowledgementsSent(
        to_domain=100, in_last_minute=60), limits=limits) == (
        "100 sent to addresses at example.com in the last hour (limit 100)")
    assert acknowledgement_held(recipient=who, sent=AcknowledgementsSent(
        in_last_minute=60), limits=limits) == "60 sent to anyone in the last minute (limit 60)"


def test_acknowledgement_held__none_is_no_limit_and_zero_is_none_at_all() -> None:
    who = counted_recipient("ann@example.com")
    many = AcknowledgementsSent(to_recipient=10**6, to_domain=10**6, in_last_minute=10**6)
    assert acknowledgement_held(recipient=who, sent=many,
                                limits=AcknowledgementLimits()) is None
    for zero in (AcknowledgementLimits(per_recipient_per_hour=0),
                 AcknowledgementLimits(per_domain_per_hour=0),
                 AcknowledgementLimits(per_minute=0)):
        assert acknowledgement_held(recipient=who, sent=AcknowledgementsSent(),
                                    limits=zero) is not None


def test_recipient_veto() -> None:
    assert recipient_veto(recipient="ann@example.com", ours=False) is None
    assert recipient_veto(recipient=None, ours=False) == NO_RECIPIENT
    assert recipient_veto(recipient=None, ours=True) == (
        "the answer would go to one of our own addresses")
    assert recipient_veto(recipient="no-reply@shop.example", ours=False) == (
        "no-reply@shop.example does not take replies")
