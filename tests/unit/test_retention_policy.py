"""Which `[[retention]]` policy governs a request (domain/retention.py)."""

from __future__ import annotations

import pytest

from domain.retention import Policy, governing, overriding, problems

DEFAULT = Policy(delete_after_days=365)
BILLING = Policy(queue="billing", anonymise_after_days=90)
INCIDENT = Policy(type="incident", delete_after_days=180)
BILLING_INCIDENT = Policy(queue="billing", type="incident", raw_after_days=7)
ALL = (DEFAULT, BILLING, INCIDENT, BILLING_INCIDENT)


@pytest.mark.parametrize("queue, type_, wanted", [
    ("billing", "incident", BILLING_INCIDENT),   # queue and type
    ("billing", "question", BILLING),            # queue before type
    ("billing", None, BILLING),
    ("general", "incident", INCIDENT),           # type before the default
    ("general", None, DEFAULT),
])
def test_governing__the_most_specific_wins(queue: str, type_: str | None,
                                           wanted: Policy) -> None:
    assert governing(ALL, queue, type_) is wanted


def test_governing__none_without_a_match() -> None:
    assert governing((BILLING,), "general", None) is None


def test_overriding__what_takes_requests_from_a_policy() -> None:
    assert set(overriding(ALL, DEFAULT)) == {BILLING, INCIDENT, BILLING_INCIDENT}
    # billing+incident requests are the queue-and-type policy's, not the type's
    assert overriding(ALL, INCIDENT) == [BILLING, BILLING_INCIDENT]
    assert overriding(ALL, BILLING_INCIDENT) == []


def test_problems__global_settings_and_order() -> None:
    assert problems(Policy(queue="billing", outbox_after_days=3))
    assert problems(Policy(delete_after_days=30, anonymise_after_days=30))
    assert problems(Policy(delete_after_days=30, anonymise_after_days=10,
                           dead_letters_after_days=5)) == []
