"""SLA policies and choosing the one that applies to a request."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from routing.sla.calendar import DEFAULT_CALENDAR, Calendar

MATCH_KEYS = ("queue", "priority", "type")


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """Targets in business time of `calendar`; the match keys say where it applies.

    An empty match key matches anything; a policy with none is the default.
    """

    name: str
    first_response: timedelta | None = None
    resolution: timedelta | None = None
    calendar: Calendar = DEFAULT_CALENDAR
    warn_at: float = 0.8  # warning once this fraction of a target has passed
    queue: tuple[str, ...] = ()
    priority: tuple[str, ...] = ()
    type: tuple[str, ...] = ()

    @property
    def specificity(self) -> int:
        """How many match keys the policy sets: the most specific match wins."""
        return sum(1 for values in (self.queue, self.priority, self.type) if values)

    def matches(self, queue: str | None, priority: str | None, type: str | None) -> bool:
        return all(
            not wanted or value in wanted
            for wanted, value in ((self.queue, queue), (self.priority, priority), (self.type, type))
        )


def select_policy(
    policies: Iterable[Policy],
    queue: str | None = None,
    priority: str | None = None,
    type: str | None = None,
) -> Policy | None:
    """The matching policy that sets the most match keys; None when none matches.

    Values compare exactly. Between equally specific matches the first listed
    wins, so the order of `[[sla]]` tables settles a tie.
    """
    best: Policy | None = None
    for policy in policies:
        if policy.matches(queue, priority, type) and (
            best is None or policy.specificity > best.specificity
        ):
            best = policy
    return best
