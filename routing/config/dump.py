"""Writing rules back out as TOML that `load_rules` reads to an equal `RuleSet`.

Conditions are written in their explicit form (`{ subject = { contains = "x" } }`
rather than the shorthand), so what goes out is what comes back.
"""

from __future__ import annotations

from typing import Any

import tomli_w

from routing.conditions import condition_to_toml
from routing.rules import Actions, Rule, RuleSet, Settings


def _settings(s: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {
        "default_queue": s.default_queue,
        "default_priority": s.default_priority,
        "default_type": s.default_type,
        "acknowledge": s.acknowledge,
        "template": s.template,
        "max_text_chars": s.max_text_chars,
        "language_sample_chars": s.language_sample_chars,
        "languages": list(s.languages),
        "lists": {name: list(entries) for name, entries in s.lists},
    }
    if s.business_hours is not None and s.business_hours.calendar is not None:
        out["business_hours"] = {"calendar": s.business_hours.calendar.name}
    elif s.business_hours is not None:
        h = s.business_hours
        out["business_hours"] = {
            "timezone": h.timezone,
            "days": list(h.days),
            "start": h.start,
            "end": h.end,
            "holidays": list(h.holidays),
        }
    return out


def _actions(a: Actions) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in (
        "queue", "priority", "type", "category", "component",
        "acknowledge", "template", "quarantine", "escalation",
    ):  # fmt: skip
        value = getattr(a, name)
        if value is not None:
            out[name] = value
    if a.tags:
        out["tags"] = list(a.tags)
    if a.fields:
        out["fields"] = dict(a.fields)
    return out


def _rule(rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {"name": rule.name}
    if rule.description:
        out["description"] = rule.description
    if rule.when is not None:
        out["when"] = condition_to_toml(rule.when)
    out["then"] = _actions(rule.then)
    out["stop"] = rule.stop
    out["applies_to"] = rule.applies_to
    out["enabled"] = rule.enabled
    return out


def dump_rules(rules: RuleSet) -> str:
    """The routing part of a config file: [routing], [[component]], [[classifier]], [[rule]]."""
    doc: dict[str, Any] = {"routing": _settings(rules.settings)}
    if rules.components:
        doc["component"] = [
            {"name": c.name, "aliases": list(c.aliases), "description": c.description}
            | ({"queue": c.queue} if c.queue is not None else {})
            for c in rules.components
        ]
    if rules.classifier:
        doc["classifier"] = [
            {
                "output": o.output,
                "label": o.label,
                "cues": list(o.cues),
                "weight": o.weight,
                "mode": o.mode,
            }
            for o in rules.classifier
        ]
    if rules.rules:
        doc["rule"] = [_rule(r) for r in rules.rules]
    return tomli_w.dumps(doc)
