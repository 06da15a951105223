"""Retention policies: how long finished requests, raw bytes and history are kept.

Pure: the configuration's `[[retention]]` tables become `Policy` values, and
`governing` says which one applies to a queue and type. The most specific
policy wins whole (queue and type, then queue, then type, then the default
one with neither); a setting it leaves out is kept for ever, not taken from a
less specific policy, so what a policy says is all that applies to its requests.
Dead letters, outbox history and the audit are not any one request's: only the
default policy sets them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Policy:
    """One `[[retention]]` table; None: kept for ever."""

    queue: str | None = None
    type: str | None = None
    # Finished (resolved, closed, merged) requests, counted from when they finished.
    delete_after_days: int | None = None
    anonymise_after_days: int | None = None
    raw_after_days: int | None = None
    # Not per request: the default policy's only.
    dead_letters_after_days: int | None = None
    outbox_after_days: int | None = None
    audit_after_days: int | None = None

    @property
    def specificity(self) -> int:
        """3 queue and type, 2 queue, 1 type, 0 the default."""
        return (2 if self.queue is not None else 0) + (1 if self.type is not None else 0)

    @property
    def name(self) -> str:
        """How output names it: `queue=billing type=*`, `default`."""
        if self.specificity == 0:
            return "default"
        return f"queue={self.queue or '*'} type={self.type or '*'}"

    def matches(self, queue: str, type: str | None) -> bool:
        return ((self.queue is None or self.queue == queue)
                and (self.type is None or self.type == type))

    def overlaps(self, other: Policy) -> bool:
        """Whether some request could match both."""
        return ((self.queue is None or other.queue is None or self.queue == other.queue)
                and (self.type is None or other.type is None or self.type == other.type))

    def cutoff(self, days: int | None, now: datetime) -> datetime | None:
        return None if days is None else now - timedelta(days=days)


def by_specificity(policies: Iterable[Policy]) -> list[Policy]:
    """Most specific first: the order in which requests are given to policies."""
    return sorted(policies, key=lambda p: -p.specificity)


def governing(policies: Sequence[Policy], queue: str, type: str | None) -> Policy | None:
    """The policy that applies to a request of this queue and type (None: none does)."""
    for policy in by_specificity(policies):
        if policy.matches(queue, type):
            return policy
    return None


def overriding(policies: Sequence[Policy], policy: Policy) -> list[Policy]:
    """The policies more specific than `policy` that may take some of its
    requests: those requests are theirs, not `policy`'s."""
    return [other for other in policies
            if other.specificity > policy.specificity and policy.overlaps(other)]


def default_policy(policies: Sequence[Policy]) -> Policy | None:
    return next((p for p in policies if p.specificity == 0), None)


def problems(policy: Policy) -> list[str]:
    """What is wrong with one policy on its own (the config reports each)."""
    found = []
    if policy.specificity and any(
            days is not None for days in (policy.dead_letters_after_days,
                                          policy.outbox_after_days, policy.audit_after_days)):
        found.append("dead_letters_after_days, outbox_after_days and audit_after_days apply "
                     "to everything: set them on the [[retention]] without queue and type")
    if (policy.delete_after_days is not None and policy.anonymise_after_days is not None
            and policy.anonymise_after_days >= policy.delete_after_days):
        found.append("anonymise_after_days must be fewer than delete_after_days "
                     "(the request is deleted before it would be anonymised)")
    return found
