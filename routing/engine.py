"""The engine: classify, then walk the rules in order, recording hit or miss.

Like a Mailman chain, it is a short loop over data. The hot path records one
status byte per rule; the reasons (which condition held or failed, on what
value) are worked out only when the decision is explained or serialised.

A `RuleSet` is compiled once (`compile_rules`) and the compiled form is kept
while the rule set lives, found again by identity: hashing a thousand frozen
rules by value on every message would cost more than deciding.
"""

from __future__ import annotations

import weakref
from functools import partial
from typing import Any

from routing.classify import Classifier
from routing.conditions import AllOf, AnyOf, Check, Condition, NotOf, describe
from routing.decision import DISABLED, HIT, MISS, SKIPPED, Decision
from routing.evidence import evidence
from routing.facts import Facts
from routing.fields import SCANNED_FIELDS
from routing.inputs import FieldValue, RoutingInput
from routing.language import LanguageDetector, Read, default_detector
from routing.operators import Pred, compile_test
from routing.regex import LiteralSet
from routing.rules import Actions, Rule, RuleSet

_SCALARS = (
    "queue", "priority", "type", "category", "component",
    "acknowledge", "template", "quarantine", "escalation",
)  # fmt: skip


def _assignments(then: Actions) -> tuple[tuple[str, Any], ...]:
    return tuple((n, getattr(then, n)) for n in _SCALARS if getattr(then, n) is not None)


class Engine:
    """A `RuleSet` compiled: predicates, literal sets, lists and the classifier.

    It keeps the rule set's parts, never the `RuleSet` itself, so the cache in
    `compile_rules` lets a replaced rule set (and its compiled form) go.
    """

    def __init__(self, rules: RuleSet) -> None:
        self.rules: tuple[Rule, ...] = rules.rules
        settings = self.settings = rules.settings
        self.max_chars = settings.max_text_chars
        self.business_hours = settings.business_hours
        self.classifier = Classifier(settings, rules.components, rules.classifier)
        # Cue patterns come first in every text field's set, so their indexes
        # are the same in each and one scan per field serves cues and rules.
        self._sets = {f: LiteralSet() for f in SCANNED_FIELDS}
        for literal_set in self._sets.values():
            for pattern in self.classifier.cues.patterns:
                literal_set.add(pattern)
        self._leaves: dict[Check, Pred] = {}
        self._described: dict[Check, str] = {}
        self.preds: tuple[Pred | None, ...] = tuple(
            None if r.when is None else self._compile(r.when) for r in rules.rules
        )
        self.assignments = tuple(_assignments(r.then) for r in rules.rules)
        # Which rules run for new requests and for replies, and the status
        # template (disabled and skipped rules filled in) for each.
        self.chain: dict[bool, tuple[int, ...]] = {}
        self.template: dict[bool, bytes] = {}
        for reply in (False, True):
            status = bytearray(len(rules.rules))
            chain = []
            for i, rule in enumerate(rules.rules):
                if not rule.enabled:
                    status[i] = DISABLED
                elif not rule.applies(reply):
                    status[i] = SKIPPED
                else:
                    chain.append(i)
            self.chain[reply] = tuple(chain)
            self.template[reply] = bytes(status)
        self._addresses: dict[str, frozenset[str]] = {}
        self._domains: dict[str, frozenset[str]] = {}
        for name, entries in settings.lists:
            low = [e.strip().lower() for e in entries]
            self._addresses[name] = frozenset(e for e in low if "@" in e.lstrip("@"))
            self._domains[name] = frozenset(e.lstrip("@") for e in low if "@" not in e.lstrip("@"))
        self.component_queue = {c.name: c.queue for c in rules.components}
        for literal_set in self._sets.values():
            literal_set.compile()  # now, rather than on the first message

    # --- compiling -----------------------------------------------------------

    def leaf(self, test: Check) -> Pred:
        pred = self._leaves.get(test)
        if pred is None:
            pred = self._leaves[test] = compile_test(test, self._sets)
        return pred

    def _compile(self, cond: Condition) -> Pred:
        if isinstance(cond, Check):
            return self.leaf(cond)
        if isinstance(cond, NotOf):
            inner = self._compile(cond.item)
            return lambda f: not inner(f)
        parts = tuple(self._compile(i) for i in cond.items)
        if len(parts) == 1:
            return parts[0]
        if isinstance(cond, AllOf):
            if len(parts) == 2:
                a, b = parts
                return lambda f: a(f) and b(f)
            return lambda f: all(p(f) for p in parts)
        if len(parts) == 2:
            a, b = parts
            return lambda f: a(f) or b(f)
        return lambda f: any(p(f) for p in parts)

    # --- used by Facts (its `Compiled` protocol) -----------------------------

    def scan(self, field: str, data: bytes) -> frozenset[int]:
        return self._sets[field].match(data)

    def lists_for(self, address: str) -> tuple[str, ...]:
        """Names of the reference lists the address is on (domains cover subdomains)."""
        if not address:
            return ()
        domain = address.rpartition("@")[2]
        parents = {".".join(domain.split(".")[i:]) for i in range(domain.count(".") + 1)}
        return tuple(
            name
            for name, addresses in self._addresses.items()
            if address in addresses or not parents.isdisjoint(self._domains[name])
        )

    # --- explaining ----------------------------------------------------------

    def explain(
        self, facts: Facts, cond: Condition, shown: dict[str, str]
    ) -> tuple[bool, list[str]]:
        """Evaluate again, slowly, keeping the tests that decided the outcome.

        Bound to one input's facts, this is that decision's `Explainer`."""
        if isinstance(cond, Check):
            held = self.leaf(cond)(facts)
            said = self._described.get(cond)
            if said is None:
                said = self._described[cond] = describe(cond)
            verdict = "held" if held else "failed"
            return held, [f"{said} {verdict} on {evidence(cond, facts, held, shown)}"]
        if isinstance(cond, NotOf):
            held, reasons = self.explain(facts, cond.item, shown)
            return not held, [f"not: {r}" for r in reasons]
        gathered: list[str] = []
        for item in cond.items:
            held, reasons = self.explain(facts, item, shown)
            if isinstance(cond, AllOf) and not held:
                return False, reasons  # the first failure is the reason
            if isinstance(cond, AnyOf) and held:
                return True, reasons  # the first success is the reason
            gathered.extend(reasons)
        return isinstance(cond, AllOf), gathered


# id(rule set) -> (a weak reference to it, its compiled form). The weak
# reference tells a live entry from one whose id was reused, and its callback
# drops the entry when the rule set goes.
_compiled: dict[int, tuple[weakref.ref[RuleSet], Engine]] = {}


def _forget(key: int, ref: weakref.ref[RuleSet]) -> None:
    entry = _compiled.get(key)
    if entry is not None and entry[0] is ref:
        del _compiled[key]


def compile_rules(rules: RuleSet) -> Engine:
    """The compiled form of `rules`: built on first use, then found by identity."""
    key = id(rules)
    entry = _compiled.get(key)
    if entry is not None and entry[0]() is rules:
        return entry[1]
    engine = Engine(rules)
    _compiled[key] = (weakref.ref(rules, partial(_forget, key)), engine)
    return engine


def language_sample(rules: RuleSet, item: RoutingInput) -> str:
    """The text whose language the classification names: the subject and the
    new text (else the whole text), cut to the rules' sample length."""
    return f"{item.subject}\n{item.new_text or item.text}"[: rules.settings.language_sample_chars]


def read_language(rules: RuleSet, item: RoutingInput) -> LanguageDetector:
    """The rules' language detector having read `item`'s sample already, to pass
    to `decide`: identifying the language can then be a step of its own (the
    gateway identifies a whole batch's before deciding any: its model's tables
    stay in the CPU's caches)."""
    detector = default_detector(rules.settings.languages)
    return Read(detector, language_sample(rules, item))


def decide(
    rules: RuleSet, item: RoutingInput, *, detector: LanguageDetector | None = None
) -> Decision:
    """Classify `item`, run the rules in order and say what to do, and why."""
    engine = compile_rules(rules)
    settings = engine.settings
    facts = Facts(item, engine)
    classification = engine.classifier.classify(
        facts.hits("subject"),
        facts.hits("body" if item.new_text else "text"),
        facts.header,
        language_sample(rules, item),
        detector or default_detector(settings.languages),
    )
    facts.classification = classification

    reply = item.is_reply
    status = bytearray(engine.template[reply])
    preds, assignments, all_rules = engine.preds, engine.assignments, engine.rules
    values: dict[str, Any] = {}
    set_by: dict[str, str] = {}
    tags: dict[str, None] = {}
    fields: dict[str, FieldValue] = {}
    stopped_by: str | None = None
    for i in engine.chain[reply]:
        pred = preds[i]
        if pred is not None and not pred(facts):
            status[i] = MISS
            continue
        status[i] = HIT
        rule = all_rules[i]
        for name, value in assignments[i]:
            values[name] = value
            set_by[name] = rule.name
        if rule.then.tags:
            tags.update(dict.fromkeys(rule.then.tags))
            set_by["tags"] = rule.name
        if rule.then.fields:
            fields.update(rule.then.fields)
            set_by["fields"] = rule.name
        if rule.stop:
            stopped_by = rule.name
            break

    return _finish(engine, facts, bytes(status), values, set_by, tags, fields, stopped_by)


def _finish(
    engine: Engine,
    facts: Facts,
    status: bytes,
    values: dict[str, Any],
    set_by: dict[str, str],
    tags: dict[str, None],
    fields: dict[str, FieldValue],
    stopped_by: str | None,
) -> Decision:
    settings = engine.settings
    cls = facts.classification
    assert cls is not None
    reply = facts.item.is_reply
    sources = {name: f"rule:{rule}" for name, rule in set_by.items()}

    def pick(name: str, guess_value: str | None, guess_source: str) -> Any:
        if name in values:
            return values[name]
        sources[name] = "classifier" if guess_source != "default" else "default"
        return guess_value

    kind = pick("type", cls.type.value, cls.type.source)
    priority = pick("priority", cls.priority.value, cls.priority.source)
    component = pick("component", cls.component.value, cls.component.source)
    # A rule's queue wins; else the owning queue of the component; else the
    # queue the source names (a form's); else the default.
    owner = engine.component_queue.get(component) if component else None
    if "queue" in values:
        queue = values["queue"]
    elif owner:
        queue, sources["queue"] = owner, f"component:{component}"
    elif facts.item.default_queue:
        queue, sources["queue"] = facts.item.default_queue, f"form:{facts.item.form_id}"
    else:
        queue, sources["queue"] = settings.default_queue, "default"
    quarantine = bool(values.get("quarantine", False))
    if "acknowledge" in values:
        acknowledge = bool(values["acknowledge"])
    else:
        # No automatic answer to replies, nor to what is held for review.
        acknowledge = settings.acknowledge and not reply and not quarantine
        sources["acknowledge"] = "default"
    template = values.get("template", settings.template) if acknowledge else None
    # A reply keeps its request's routing: only what a replies rule set applies.
    applies = tuple(sorted(set_by)) if reply else (
        "queue", "priority", "type", "category", "component", "tags", "fields",
        "acknowledge", "template", "quarantine", "escalation",
    )  # fmt: skip
    return Decision(
        is_reply=reply,
        classification=cls,
        queue=queue,
        priority=priority,
        type=kind,
        category=values.get("category"),
        component=component,
        tags=tuple(tags),
        fields=tuple(fields.items()),
        acknowledge=acknowledge,
        template=template,
        quarantine=quarantine,
        escalation=int(values.get("escalation", 0)),
        sources=tuple(sorted(sources.items())),
        applies=applies,
        matched=tuple(r.name for r, s in zip(engine.rules, status, strict=True) if s == HIT),
        stopped_by=stopped_by,
        trace=status,
        rules=engine.rules,
        explainer=partial(engine.explain, facts),
    )
