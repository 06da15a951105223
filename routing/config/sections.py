"""Reading `[routing]`, `[[component]]` and `[[classifier]]`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from routing.config.reader import Reader, Report, strings, unknown_keys
from routing.fields import PRIORITIES, TYPES
from routing.hours import hours_errors
from routing.language import KNOWN_LANGUAGES
from routing.rules import BusinessHours, Component, CueOverride, Settings
from routing.sla.config_calendar import read_calendar
from routing.sla.grammar import Issues

_ROUTING_KEYS = {
    "default_queue", "default_priority", "default_type", "acknowledge", "template",
    "max_text_chars", "language_sample_chars", "languages", "lists", "business_hours",
}  # fmt: skip
_HOURS_KEYS = {"timezone", "days", "start", "end", "holidays", "calendar"}
_COMPONENT_KEYS = {"name", "aliases", "queue", "description"}
_CLASSIFIER_KEYS = {"output", "label", "cues", "weight", "mode"}


def read_settings(r: Reader, raw: object, *, calendars: object = None) -> Settings | None:
    """`[routing]`; `calendars`: the `[[calendar]]` tables, which
    `[routing.business_hours] calendar = NAME` refers to."""
    span = r.lines.section("routing")
    line = span[0]
    report = r.reporter(span, None)
    if not isinstance(raw, Mapping):
        report("[routing] must be a table", "")
        return None
    unknown_keys(r, raw, _ROUTING_KEYS, "[routing]", report)
    ok = True
    values: dict[str, Any] = {}
    for key, kind in (("template", str), ("acknowledge", bool)):
        if key in raw:
            if not isinstance(raw[key], kind):
                report(f"[routing] {key} must be a {kind.__name__}", key)
                ok = False
            else:
                values[key] = raw[key]
    if "default_queue" in raw:
        ok &= r.known_queue(raw["default_queue"], "[routing] default_queue", report)
        values["default_queue"] = raw["default_queue"]
    elif r.queues is not None and Settings().default_queue not in r.queues:
        # Without a default named here, the first queue the caller lists is it.
        first = next(iter(r.queues), None)
        if first is None:
            report("[routing] default_queue is needed: there are no queues", "")
            ok = False
        else:
            values["default_queue"] = first
    for key, choices in (("default_priority", PRIORITIES), ("default_type", TYPES)):
        if key in raw:
            if raw[key] not in choices:
                report(f"[routing] {key} must be one of {', '.join(choices)}", key)
                ok = False
            values[key] = raw[key]
    for key in ("max_text_chars", "language_sample_chars"):
        if key in raw:
            v = raw[key]
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                report(f"[routing] {key} must be a positive integer", key)
                ok = False
            values[key] = v
    if "languages" in raw:
        langs = strings(raw["languages"])
        unknown = sorted(set(langs or ()) - KNOWN_LANGUAGES)
        if langs is None or unknown:
            known = f"unknown: {', '.join(unknown)}" if unknown else "not a list of strings"
            report(f"[routing] languages must be known ISO 639-1 codes ({known})", "languages")
            ok = False
        values["languages"] = langs or ()
    lists = raw.get("lists", {})
    lists_span = r.lines.section("routing.lists")
    lists_line = lists_span[0] or line
    if not isinstance(lists, Mapping):
        r.add(lists_line, None, "[routing.lists] must be a table of name = [addresses or domains]")
        ok = False
    else:
        pairs = []
        for name, entries in lists.items():
            checked = strings(entries) if isinstance(entries, list) else None
            if checked is None:
                r.add(
                    r.lines.find(lists_span, f"{name} ") or lists_line,
                    None,
                    f"list {name!r} must be a list of addresses or domains",
                )
                ok = False
            else:
                pairs.append((name, checked))
        values["lists"] = tuple(pairs)
    if "business_hours" in raw:
        values["business_hours"] = _read_hours(r, raw["business_hours"], calendars)
        ok &= values["business_hours"] is not None
    if not ok:
        return None
    return Settings(**values)


def _read_hours(r: Reader, raw: object, calendars: object) -> BusinessHours | None:
    span = r.lines.section("routing.business_hours")
    report = r.reporter(span if span[0] else r.lines.section("routing"), None)
    if not isinstance(raw, Mapping):
        report("[routing.business_hours] must be a table", "")
        return None
    unknown_keys(r, raw, _HOURS_KEYS, "[routing.business_hours]", report)
    if "calendar" in raw:
        return _calendar_hours(raw, calendars, report)
    values: dict[str, Any] = {}
    for key in ("timezone", "start", "end"):
        if key in raw:
            if not isinstance(raw[key], str):
                report(f"business_hours.{key} must be a string", key)
                return None
            values[key] = raw[key]
    for key in ("days", "holidays"):
        if key in raw:
            # TOML dates (holidays = [2026-12-25]) are accepted and kept as text.
            items = (
                [v.isoformat() if hasattr(v, "isoformat") else v for v in raw[key]]
                if isinstance(raw[key], list)
                else None
            )
            checked = strings(items)
            if checked is None and items != []:
                report(f"business_hours.{key} must be a list of strings", key)
                return None
            values[key] = checked or ()
    hours = BusinessHours(**values)
    problems = hours_errors(hours)
    for problem in problems:
        report(f"business_hours: {problem}", "")
    return None if problems else hours


def _calendar_hours(raw: Mapping[str, Any], calendars: object,
                    report: Report) -> BusinessHours | None:
    """`calendar = NAME`: the hours of that `[[calendar]]`, the one place business
    hours are defined for rules and service levels alike."""
    own = sorted(set(raw) - {"calendar"})
    if own:
        report("business_hours: give either calendar = NAME or your own "
               f"{', '.join(own)}, not both (the calendar's hours would be ignored)",
               own[0])
        return None
    name = raw["calendar"]
    tables = calendars if isinstance(calendars, list) else []
    table = next((t for t in tables if isinstance(t, Mapping) and t.get("name") == name),
                 None)
    if table is None:
        known = [t.get("name") for t in tables if isinstance(t, Mapping)]
        report(f"business_hours: unknown calendar {name!r} (the [[calendar]] tables: "
               f"{', '.join(map(str, known)) or 'none'})", "calendar")
        return None
    issues = Issues()
    calendar = read_calendar(table, "calendar", set(), issues)
    if calendar is None:
        # Its own problems are reported where [[calendar]] is read.
        report(f"business_hours: calendar {name!r} is not valid", "calendar")
        return None
    return BusinessHours(timezone=calendar.timezone, calendar=calendar)


def read_components(r: Reader, doc: Mapping[str, Any]) -> list[Component]:
    entries = r.entries(doc, "component")
    spans = r.lines.spans("component", len(entries))
    found: list[Component] = []
    owner_of: dict[str, str] = {}
    for raw, span in zip(entries, spans, strict=True):
        name = raw.get("name")
        report = r.reporter(span, name if isinstance(name, str) else None)
        unknown_keys(r, raw, _COMPONENT_KEYS, "[[component]]", report)
        if not isinstance(name, str) or not name:
            report("a component needs a name", "name")
            continue
        if name in {c.name for c in found}:
            report(f"duplicate component name {name!r}", "name")
        aliases = strings(raw.get("aliases", []))
        if aliases is None:
            report("aliases must be a list of non-empty strings", "aliases")
            aliases = ()
        queue = raw.get("queue")
        if queue is not None:
            r.known_queue(queue, "component.queue", report)
        description = raw.get("description", "")
        if not isinstance(description, str):
            report("description must be a string", "description")
            description = ""
        component = Component(name=name, aliases=aliases, queue=queue, description=description)
        for term in component.terms:
            other = owner_of.setdefault(term.lower(), name)
            if other != name:
                report(f"alias {term!r} is also a cue of component {other!r}", term)
        found.append(component)
    return found


def read_classifier(r: Reader, doc: Mapping[str, Any]) -> list[CueOverride]:
    entries = r.entries(doc, "classifier")
    spans = r.lines.spans("classifier", len(entries))
    found: list[CueOverride] = []
    for raw, span in zip(entries, spans, strict=True):
        label = raw.get("label")
        report = r.reporter(span, f"classifier {label}" if isinstance(label, str) else None)
        unknown_keys(r, raw, _CLASSIFIER_KEYS, "[[classifier]]", report)
        output = str(raw.get("output"))
        choices = {"type": TYPES, "priority": PRIORITIES}.get(output)
        if choices is None:
            report("output must be 'type' or 'priority'", "output")
            continue
        if label not in choices:
            report(f"label must be one of {', '.join(choices)} for output {output!r}", "label")
            continue
        cues = strings(raw.get("cues"))
        weight = raw.get("weight", 1.0)
        mode = raw.get("mode", "add")
        if not cues:
            cues = None
            report("cues must be a non-empty list of non-empty strings", "cues")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
            report("weight must be a positive number", "weight")
        if mode not in ("add", "replace"):
            report("mode must be 'add' or 'replace'", "mode")
        if (
            cues is not None
            and mode in ("add", "replace")
            and isinstance(weight, int | float)
            and not isinstance(weight, bool)
            and weight > 0
        ):
            found.append(
                CueOverride(
                    output=output, label=str(label), cues=cues, weight=float(weight), mode=mode
                )
            )
    return found
