"""Reading `[[rule]]` tables: names, conditions, actions and flags."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from routing.conditions import parse_condition
from routing.config.reader import Reader, Report, strings, unknown_keys
from routing.fields import PRIORITIES, TYPES
from routing.inputs import FieldValue
from routing.rules import APPLIES_TO, Actions, Rule

_RULE_KEYS = {"name", "description", "when", "then", "stop", "applies_to", "enabled"}
_THEN_KEYS = {
    "queue", "priority", "type", "category", "component", "tags", "fields",
    "acknowledge", "template", "quarantine", "escalation",
}  # fmt: skip


def read_rules(
    r: Reader, doc: Mapping[str, Any], lists: list[str], components: set[str]
) -> list[Rule]:
    entries = r.entries(doc, "rule")
    spans = r.lines.spans("rule", len(entries))
    found: list[Rule] = []
    names: set[str] = set()
    # Which kinds of input ("new", "replies") an earlier catch-all with stop takes.
    stopped: dict[str, tuple[str, int]] = {}
    for number, (raw, span) in enumerate(zip(entries, spans, strict=True), 1):
        name = raw.get("name")
        owner = name if isinstance(name, str) and name else f"rule #{number}"
        report = r.reporter(span, owner)
        before = len(r.issues)
        unknown_keys(r, raw, _RULE_KEYS, "[[rule]]", report)
        if not isinstance(name, str) or not name:
            report("a rule needs a name", "name")
        elif name in names:
            report(f"duplicate rule name {name!r}", "name")
        names.add(owner)
        when = parse_condition(raw["when"], report, lists) if "when" in raw else None
        then = _actions(r, raw.get("then", {}), report, components)
        flags: dict[str, Any] = {}
        for key, default in (("stop", False), ("enabled", True)):
            value = raw.get(key, default)
            if not isinstance(value, bool):
                report(f"{key} must be true or false", key)
            flags[key] = value
        applies_to = raw.get("applies_to", "new")
        if applies_to not in APPLIES_TO:
            report(f"applies_to must be one of {', '.join(APPLIES_TO)}", "applies_to")
        description = raw.get("description", "")
        if not isinstance(description, str):
            report("description must be a string", "description")
        if len(r.issues) > before or then is None:
            continue
        rule = Rule(
            name=owner,
            when=when,
            then=then,
            stop=flags["stop"],
            applies_to=applies_to,
            enabled=flags["enabled"],
            description=description,
        )
        kinds = {"new", "replies"} if applies_to == "all" else {applies_to}
        blockers = [stopped[k] for k in sorted(kinds) if k in stopped]
        if rule.enabled and len(blockers) == len(kinds):
            catch, line = blockers[0]
            report(
                f"can never be reached: rule {catch!r} (line {line}) matches every input "
                "before it and stops",
                "name",
            )
            continue
        if rule.enabled and rule.stop and when is None:
            for kind in kinds:
                stopped.setdefault(kind, (owner, span[0]))
        found.append(rule)
    return found


def _actions(r: Reader, raw: object, report: Report, components: set[str]) -> Actions | None:
    if not isinstance(raw, Mapping):
        report("then must be a table of actions", "then")
        return None
    before = len(r.issues)
    unknown_keys(r, raw, _THEN_KEYS, "then", report)
    values: dict[str, Any] = {}
    if "queue" in raw and r.known_queue(raw["queue"], "then.queue", report):
        values["queue"] = raw["queue"]
    for key, choices in (("priority", PRIORITIES), ("type", TYPES)):
        if key in raw:
            if raw[key] not in choices:
                report(f"then.{key} must be one of {', '.join(choices)}, not {raw[key]!r}", key)
            values[key] = raw[key]
    for key in ("category", "template"):
        if key in raw:
            if not isinstance(raw[key], str) or not raw[key]:
                report(f"then.{key} must be a non-empty string", key)
            values[key] = raw[key]
    if "component" in raw:
        if raw["component"] not in components:
            report(
                f"then.component: no component named {raw['component']!r} in the catalogue",
                "component",
            )
        values["component"] = raw["component"]
    for key in ("acknowledge", "quarantine"):
        if key in raw:
            if not isinstance(raw[key], bool):
                report(f"then.{key} must be true or false", key)
            values[key] = raw[key]
    if "escalation" in raw:
        level = raw["escalation"]
        if isinstance(level, bool) or not isinstance(level, int) or level < 0:
            report("then.escalation must be a whole number, 0 or more", "escalation")
        values["escalation"] = level
    if "tags" in raw:
        tags = strings(raw["tags"])
        if tags is None:
            report("then.tags must be a list of non-empty strings", "tags")
        values["tags"] = tags or ()
    if "fields" in raw:
        fields = raw["fields"]
        pairs: list[tuple[str, FieldValue]] = []
        if not isinstance(fields, Mapping):
            report("then.fields must be a table of name = value", "fields")
        else:
            for key, value in fields.items():
                if not isinstance(value, str | int | float | bool):
                    report(f"then.fields.{key} must be a string, number or boolean", key)
                else:
                    pairs.append((key, value))
        values["fields"] = tuple(pairs)
    if len(r.issues) > before:
        return None
    return Actions(**values)
