"""Classification before the rules: type, priority, component and language.

Each output is a `Guess` with a score and the cues that produced it, so the
timeline can say *why* a request was called a complaint. The method is plain
and explainable: distinct whole-word cues, weighted, subject above body; the
label with the highest weight wins, and its score is its share of the total
(with one unit of doubt added, so a single cue never scores 1.0).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from routing.cues import PRIORITY_CUES, PRIORITY_HEADERS, SUBJECT_WEIGHT, TYPE_CUES
from routing.fields import PRIORITIES, TYPES
from routing.language import UNDETERMINED, LanguageDetector, enough_text
from routing.regex import word_pattern
from routing.rules import Component, CueOverride, Settings


@dataclass(frozen=True, slots=True)
class Cue:
    where: str  # "subject", "body", "header:importance", "language sample"
    text: str
    weight: float


@dataclass(frozen=True, slots=True)
class Guess:
    value: str | None
    score: float
    cues: tuple[Cue, ...] = ()
    source: str = "cues"  # "cues", "default", "headers", or the detector's name


@dataclass(frozen=True, slots=True)
class Classification:
    type: Guess
    priority: Guess
    component: Guess
    language: Guess


def merge_cues(
    builtin: Mapping[str, tuple[str, ...]], output: str, overrides: tuple[CueOverride, ...]
) -> dict[str, list[tuple[str, float]]]:
    """Label -> [(cue, weight)] after the config's additions and replacements."""
    merged = {label: [(c, 1.0) for c in cues] for label, cues in builtin.items()}
    for o in overrides:
        if o.output != output:
            continue
        if o.mode == "replace":
            merged[o.label] = []
        merged.setdefault(o.label, []).extend((c, o.weight) for c in o.cues)
    return merged


class CueTable:
    """Every cue of every output as one list of whole-word patterns.

    The engine puts these patterns first in the literal set of each text
    field, so one scan of the body finds the cues and the rules' phrases.
    """

    def __init__(self) -> None:
        self.patterns: list[str] = []
        self.meaning: list[list[tuple[str, str, str, float]]] = []  # output, label, cue, weight
        self._index: dict[str, int] = {}

    def add(self, output: str, table: Mapping[str, list[tuple[str, float]]]) -> None:
        for label, cues in table.items():
            for cue, weight in cues:
                pattern = word_pattern(cue)
                index = self._index.get(pattern)
                if index is None:
                    index = self._index[pattern] = len(self.patterns)
                    self.patterns.append(pattern)
                    self.meaning.append([])
                self.meaning[index].append((output, label, cue, weight))

    def found(
        self, hits: frozenset[int], where: str, factor: float
    ) -> dict[str, list[tuple[str, Cue]]]:
        """Output -> [(label, cue)] for the cue patterns among `hits`."""
        found: dict[str, list[tuple[str, Cue]]] = {}
        for i in hits:
            if i < len(self.meaning):
                for output, label, cue, weight in self.meaning[i]:
                    found.setdefault(output, []).append((label, Cue(where, cue, weight * factor)))
        # "not urgent" also contains "urgent": a cue inside a longer cue found
        # in the same text is the longer cue's, not a cue of its own.
        for output, pairs in found.items():
            texts = {c.text.lower() for _, c in pairs}
            found[output] = [
                (label, c)
                for label, c in pairs
                if not any(c.text.lower() in t and c.text.lower() != t for t in texts)
            ]
        return found


def _pick(found: list[tuple[str, Cue]], order: tuple[str, ...], default: str | None) -> Guess:
    if not found:
        return Guess(default, 0.0, (), "default")
    totals: dict[str, float] = {}
    for label, cue in found:
        totals[label] = totals.get(label, 0.0) + cue.weight
    rank = {label: i for i, label in enumerate(order)}
    best = min(totals, key=lambda lb: (-totals[lb], rank.get(lb, len(rank)), lb))
    score = totals[best] / (sum(totals.values()) + 1.0)
    cues = tuple(sorted((c for lb, c in found if lb == best), key=lambda c: (c.where, c.text)))
    return Guess(best, round(score, 4), cues, "cues")


class Classifier:
    def __init__(
        self,
        settings: Settings,
        components: tuple[Component, ...],
        overrides: tuple[CueOverride, ...],
    ) -> None:
        self._settings = settings
        self.cues = CueTable()
        self.cues.add("type", merge_cues(TYPE_CUES, "type", overrides))
        self.cues.add("priority", merge_cues(PRIORITY_CUES, "priority", overrides))
        # Component names weigh in the subject twice as much as in the body.
        self.cues.add("component", {c.name: [(t, 1.0) for t in c.terms] for c in components})
        self._component_order = tuple(c.name for c in components)

    def classify(
        self,
        subject_hits: frozenset[int],
        body_hits: frozenset[int],
        header: Callable[[str], tuple[str, ...]],
        sample: str,
        detector: LanguageDetector,
    ) -> Classification:
        s = self._settings
        in_subject = self.cues.found(subject_hits, "subject", SUBJECT_WEIGHT)
        in_body = self.cues.found(body_hits, "body", 1.0)
        parts = [
            (lb, Cue(c.where, c.text, c.weight / SUBJECT_WEIGHT * 2.0))
            for lb, c in in_subject.get("component", [])
        ]
        urgency = in_subject.get("priority", []) + in_body.get("priority", [])
        for (name, value), label in PRIORITY_HEADERS.items():
            if any(v.strip().lower().startswith(value) for v in header(name)):
                urgency.append((label, Cue(f"header:{name}", value, 1.0)))
        return Classification(
            type=_pick(in_subject.get("type", []) + in_body.get("type", []), TYPES, s.default_type),
            priority=_pick(urgency, PRIORITIES, s.default_priority),
            component=_pick(parts + in_body.get("component", []), self._component_order, None),
            language=_language(sample, detector),
        )


def _language(sample: str, detector: LanguageDetector) -> Guess:
    if not enough_text(sample):
        return Guess(
            UNDETERMINED, 0.0, (Cue("language sample", "too little text", 0.0),), "default"
        )
    code, probability = detector.detect(sample)
    excerpt = sample[:60] + ("…" if len(sample) > 60 else "")
    return Guess(
        code, round(probability, 4), (Cue("language sample", excerpt, 1.0),), detector.name
    )
