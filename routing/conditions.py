"""Conditions as data: a tree of tests joined by all / any / not.

The TOML form is a table whose keys are fields (ANDed together) or the
combinators `all`, `any` (lists of tables) and `not` (a table):

    when = { to = "billing@example.com" }                  # equals
    when = { to = ["a@example.com", "b@example.com"] }     # one of
    when.any = [{ subject.matches = "(?i)\\bdown\\b" }, { body.contains = "urgent" }]
    when = { header.x-priority.one_of = ["1", "2"], not = { on_list = "vip" } }

`parse_condition` turns that into the tree and reports every problem it sees;
`condition_to_toml` writes the tree back in the explicit form, which parses to
an equal tree.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import re2

from routing.fields import (
    ANY,
    BOOL,
    LIST,
    NAMESPACES,
    NUMBER,
    OPERATORS,
    OPS_BY_KIND,
    TEXT,
    spec_for,
)

Scalar = str | int | float | bool
Operand = Scalar | tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class Check:
    field: str  # canonical: "subject", "header.x-priority", "field.order_id", "class.type"
    op: str
    operand: Operand


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class NotOf:
    item: Condition


Condition = Check | AllOf | AnyOf | NotOf

# Reports a problem: message, and a text to look for to find its line.
Report = Callable[[str, str], None]


def iter_tests(cond: Condition) -> Iterator[Check]:
    if isinstance(cond, Check):
        yield cond
    elif isinstance(cond, NotOf):
        yield from iter_tests(cond.item)
    else:
        for item in cond.items:
            yield from iter_tests(item)


def literal(value: object) -> str:
    """A value spelled as in the config file (TOML and JSON agree on these)."""
    return json.dumps(list(value) if isinstance(value, tuple) else value, ensure_ascii=False)


def describe(test: Check) -> str:
    return f"{test.field} {test.op.replace('_', ' ')} {literal(test.operand)}"


def describe_condition(cond: Condition) -> str:
    if isinstance(cond, Check):
        return describe(cond)
    if isinstance(cond, NotOf):
        return f"not ({describe_condition(cond.item)})"
    joiner = " and " if isinstance(cond, AllOf) else " or "
    return "(" + joiner.join(describe_condition(i) for i in cond.items) + ")"


# --- writing ---------------------------------------------------------------


def condition_to_toml(cond: Condition) -> dict[str, Any]:
    if isinstance(cond, AllOf):
        return {"all": [condition_to_toml(i) for i in cond.items]}
    if isinstance(cond, AnyOf):
        return {"any": [condition_to_toml(i) for i in cond.items]}
    if isinstance(cond, NotOf):
        return {"not": condition_to_toml(cond.item)}
    operand: Any = list(cond.operand) if isinstance(cond.operand, tuple) else cond.operand
    prefix, dot, name = cond.field.partition(".")
    if dot and prefix in NAMESPACES:
        return {prefix: {name: {cond.op: operand}}}
    return {cond.field: {cond.op: operand}}


# --- reading ---------------------------------------------------------------


def parse_condition(raw: object, report: Report, lists: Sequence[str]) -> Condition | None:
    """The tree for a `when` table; None for an empty table (always true)."""
    if not isinstance(raw, Mapping):
        report(f"a condition must be a table, not {_type_name(raw)}", "when")
        return None
    items: list[Condition] = []
    for key, value in raw.items():
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                report(f"'{key}' needs a non-empty list of condition tables", key)
                continue
            parts = [parse_condition(v, report, lists) for v in value]
            kept = tuple(p for p in parts if p is not None)
            if len(kept) == len(parts):
                items.append(AllOf(kept) if key == "all" else AnyOf(kept))
        elif key == "not":
            inner = parse_condition(value, report, lists)
            if inner is not None:
                items.append(NotOf(inner))
        elif key in NAMESPACES:
            if not isinstance(value, Mapping) or not value:
                report(f"'{key}' needs a table of names, e.g. {key}.NAME = ...", key)
                continue
            for name, sub in value.items():
                # Header names are case-insensitive (RFC 5322 section 1.2.2).
                name = name.lower() if key == "header" else name
                items.extend(_parse_field(f"{key}.{name}", sub, report, lists))
        else:
            items.extend(_parse_field(key, value, report, lists))
    if not items:
        return None
    return items[0] if len(items) == 1 else AllOf(tuple(items))


def _parse_field(field: str, raw: object, report: Report, lists: Sequence[str]) -> list[Check]:
    spec = spec_for(field)
    if spec is None:
        report(f"unknown field '{field}'", field.partition(".")[0])
        return []
    if isinstance(raw, Mapping):
        if not raw:
            report(f"'{field}' has an empty table of operators", field)
        pairs = list(raw.items())
    elif isinstance(raw, list):
        pairs = [("one_of", raw)]
    else:
        pairs = [("equals", raw)]
    tests: list[Check] = []
    for op, operand in pairs:
        if op not in OPERATORS:
            report(f"unknown operator '{op}' on '{field}'", op)
            continue
        if op not in OPS_BY_KIND[spec.kind]:
            report(f"operator '{op}' does not apply to {spec.kind} field '{field}'", op)
            continue
        checked = _check_operand(field, spec.kind, spec.choices, op, operand, report, lists)
        if checked is not None:
            tests.append(Check(field, op, checked))
    return tests


def _check_operand(
    field: str,
    kind: str,
    choices: tuple[str, ...],
    op: str,
    operand: object,
    report: Report,
    lists: Sequence[str],
) -> Operand | None:
    where = f"'{field}.{op}'"
    if op == "one_of":
        if not isinstance(operand, list) or not operand:
            report(f"{where} needs a non-empty list, not {_type_name(operand)}", op)
            return None
        values = [_check_operand(field, kind, choices, "equals", v, report, lists) for v in operand]
        if any(v is None or isinstance(v, tuple) for v in values):
            return None
        return tuple(v for v in values if v is not None and not isinstance(v, tuple))
    if op == "exists":
        if not isinstance(operand, bool):
            report(f"{where} needs true or false, not {_type_name(operand)}", op)
            return None
        return operand
    if op in ("greater", "less"):
        if isinstance(operand, bool) or not isinstance(operand, int | float):
            report(f"{where} needs a number, not {_type_name(operand)}", op)
            return None
        return operand
    if op == "equals" and kind == BOOL:
        if not isinstance(operand, bool):
            report(f"{where} needs true or false, not {_type_name(operand)}", field)
            return None
        return operand
    if op == "equals" and kind == NUMBER:
        if isinstance(operand, bool) or not isinstance(operand, int | float):
            report(f"{where} needs a number, not {_type_name(operand)}", field)
            return None
        return operand
    if op == "equals" and kind == ANY:
        if not isinstance(operand, str | int | float | bool):
            report(f"{where} needs a string, number or boolean, not {_type_name(operand)}", field)
            return None
        return operand
    # Text operators on text and list fields (and on custom fields).
    if not isinstance(operand, str):
        report(f"{where} needs a string, not {_type_name(operand)}", field)
        return None
    if op in ("contains", "starts_with", "ends_with") and not operand:
        report(f"{where} needs a non-empty string", op)
        return None
    if op == "matches":
        try:
            re2.compile(operand)
        except re2.error as exc:
            report(f"bad regular expression {operand!r} in {where}: {exc}", op)
            return None
        return operand
    if op == "equals" and kind in (TEXT, LIST):
        if choices and operand not in choices:
            report(f"{where}: {operand!r} is not one of {', '.join(choices)}", field)
            return None
        if field == "on_list" and operand not in lists:
            known = ", ".join(lists) or "none defined"
            report(f"{where}: no list named {operand!r} in [routing.lists] ({known})", field)
            return None
    return operand


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a table"
    return type(value).__name__
