"""The decision: where a request goes, with every reason that put it there.

`to_dict()` is what the gateway stores on the request's timeline and returns
from the API; `explain()` is what `intake route FILE.eml --explain` prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from routing.classify import Classification, Guess
from routing.conditions import Condition, literal
from routing.inputs import FieldValue
from routing.rules import Rule

# One status byte per rule, recorded on the hot path.
NOT_REACHED, HIT, MISS, SKIPPED, DISABLED = 0, 1, 2, 3, 4
OUTCOMES = {
    NOT_REACHED: "not reached",
    HIT: "hit",
    MISS: "miss",
    SKIPPED: "skipped",
    DISABLED: "disabled",
}

# Whether a rule's condition held on this decision's input, and the reasons. The
# engine binds it to the input's facts, so explaining needs neither of them here;
# the dict keeps each field's quoted value for the whole explanation.
Explainer = Callable[[Condition, dict[str, str]], tuple[bool, list[str]]]


@dataclass(frozen=True, slots=True)
class RuleResult:
    rule: str
    outcome: str  # hit, miss, skipped, disabled, not reached
    reason: str


def _guess_dict(guess: Guess) -> dict[str, Any]:
    return {
        "value": guess.value,
        "score": guess.score,
        "source": guess.source,
        "cues": [{"where": c.where, "text": c.text, "weight": c.weight} for c in guess.cues],
    }


@dataclass(frozen=True, kw_only=True)
class Decision:
    is_reply: bool
    classification: Classification
    queue: str
    priority: str
    type: str
    category: str | None
    component: str | None
    tags: tuple[str, ...]
    fields: tuple[tuple[str, FieldValue], ...]
    acknowledge: bool
    template: str | None
    quarantine: bool
    escalation: int
    # Where each field's value came from: "rule:NAME", "classifier",
    # "component:NAME", "form:ID" (its queue) or "default".
    sources: tuple[tuple[str, str], ...]
    # The fields the gateway should write: all for a new request, for a reply
    # only those set by rules that apply to replies.
    applies: tuple[str, ...]
    matched: tuple[str, ...]  # names of the rules that hit, in order
    stopped_by: str | None
    trace: bytes = field(repr=False)  # one status per rule
    rules: tuple[Rule, ...] = field(repr=False, compare=False)  # what `trace` is about
    explainer: Explainer = field(repr=False, compare=False)

    @property
    def rule_results(self) -> tuple[RuleResult, ...]:
        """Every rule, in order, with its outcome and the reason for it."""
        return self._kept("rule_results", hits_only=False)

    @property
    def hit_results(self) -> tuple[RuleResult, ...]:
        """The rules that hit, with why: cheap enough to store for every request."""
        return self._kept("hit_results", hits_only=True)

    def _kept(self, name: str, *, hits_only: bool) -> tuple[RuleResult, ...]:
        # Worked out once per decision. Not functools.cached_property: on Python
        # 3.11 it takes a lock per read, 2% of a request's pipeline CPU; two
        # threads explaining one decision at once would only do it twice.
        found: tuple[RuleResult, ...] | None = self.__dict__.get(name)
        if found is None:
            found = self.__dict__[name] = (self._results(hits_only=hits_only)
                                           if self.matched or not hits_only else ())
        return found

    def _results(self, *, hits_only: bool) -> tuple[RuleResult, ...]:
        results = []
        shown_values: dict[str, str] = {}
        for rule, status in zip(self.rules, self.trace, strict=True):
            if hits_only and status != HIT:
                continue
            if status in (HIT, MISS):
                if rule.when is None:
                    reason = "no conditions: applies to every input"
                else:
                    _, reasons = self.explainer(rule.when, shown_values)
                    reason = "; ".join(reasons)
            elif status == SKIPPED:
                reason = (
                    "applies to replies only; this is a new request"
                    if rule.applies_to == "replies"
                    else "applies to new requests only; this is a reply"
                )
            elif status == DISABLED:
                reason = "disabled in the config"
            else:
                reason = f"not evaluated: rule {self.stopped_by!r} stopped the chain"
            results.append(RuleResult(rule.name, OUTCOMES[status], reason))
        return tuple(results)

    def to_dict(self, *, every_rule: bool = True) -> dict[str, Any]:
        """A JSON-able form, for the timeline and the API.

        With `every_rule=False` only the rules that hit are listed (with their
        reasons): what a request's timeline keeps; misses cost time to explain.
        """
        c = self.classification
        return {
            "queue": self.queue,
            "priority": self.priority,
            "type": self.type,
            "category": self.category,
            "component": self.component,
            "tags": list(self.tags),
            "fields": dict(self.fields),
            "acknowledge": self.acknowledge,
            "template": self.template,
            "quarantine": self.quarantine,
            "escalation": self.escalation,
            "is_reply": self.is_reply,
            "applies": list(self.applies),
            "sources": dict(self.sources),
            "matched": list(self.matched),
            "stopped_by": self.stopped_by,
            "classification": {
                "type": _guess_dict(c.type),
                "priority": _guess_dict(c.priority),
                "component": _guess_dict(c.component),
                "language": _guess_dict(c.language),
            },
            "rules": [
                {"rule": r.rule, "outcome": r.outcome, "reason": r.reason}
                for r in (self.rule_results if every_rule else self.hit_results)
            ],
        }

    def explain(self) -> str:
        """Readable text, for `intake route FILE.eml --explain`."""
        sources = dict(self.sources)

        def line(name: str, value: object) -> str:
            source = sources.get(name)
            return f"  {name:<12} {value}" + (f"  ({source})" if source else "")

        lines = ["Decision" + (" (reply: only 'applies' fields change)" if self.is_reply else "")]
        lines += [
            line("queue", self.queue),
            line("priority", self.priority),
            line("type", self.type),
            line("category", self.category or "-"),
            line("component", self.component or "-"),
            line("tags", ", ".join(self.tags) or "-"),
            line("fields", ", ".join(f"{k}={literal(v)}" for k, v in self.fields) or "-"),
            line("acknowledge", "yes" if self.acknowledge else "no"),
            line("template", self.template or "-"),
            line("quarantine", "HELD FOR REVIEW" if self.quarantine else "no"),
            line("escalation", self.escalation),
        ]
        if self.is_reply:
            lines.append(f"  {'applies':<12} {', '.join(self.applies) or 'nothing'}")
        lines.append("Classification")
        c = self.classification
        for name, guess in (
            ("type", c.type),
            ("priority", c.priority),
            ("component", c.component),
            ("language", c.language),
        ):
            cues = ", ".join(f"{q.where} {q.text!r}" for q in guess.cues) or "no cues"
            lines.append(
                f"  {name:<12} {guess.value or '-'} score {guess.score} ({guess.source}: {cues})"
            )
        lines.append("Rules")
        for r in self.rule_results:
            lines.append(f"  {r.outcome.upper():<11} {r.rule}: {r.reason}")
        return "\n".join(lines)
