"""Operators: each test compiles once into a predicate over `Facts`.

Text comparisons are case-insensitive (`equals`, `one_of`, `contains`,
`starts_with`, `ends_with`); `matches` is an RE2 search, case-sensitive unless
the pattern says `(?i)`. On list fields a test holds when any element passes.
A missing value fails every test except `exists = false`.
Custom fields come as strings from forms, so numeric tests read numbers out
of strings, and `equals = 42` holds for "42".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from routing.conditions import Check, Scalar
from routing.facts import Facts, Value
from routing.fields import ANY, SCANNED_FIELDS, spec_for
from routing.regex import compile_regex, literal_pattern

if TYPE_CHECKING:
    from routing.regex import LiteralSet

Pred = Callable[[Facts], bool]


def number(value: Value) -> float | None:
    if isinstance(value, bool) or value is None or isinstance(value, tuple):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value.strip())
    except ValueError:
        return None


def present(value: Value) -> bool:
    return value is not None and value != "" and value != ()


def _as_text(value: str | bool | int | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value.lower() if isinstance(value, str) else str(value)


def equal(value: Value, operand: Scalar) -> bool:
    """Loose equality for custom fields and other untyped values."""
    if isinstance(value, tuple):
        return any(equal(v, operand) for v in value)
    if value is None:
        return False
    if isinstance(operand, bool):
        return isinstance(value, bool | str) and _as_text(value) == _as_text(operand)
    if isinstance(operand, int | float):
        n = number(value)
        return n is not None and n == operand
    return _as_text(value) == operand.lower()


def _text_test(kind: str, needle: str) -> Callable[[str], bool]:
    if kind == "contains":
        return lambda s: needle in s
    if kind == "starts_with":
        return lambda s: s.startswith(needle)
    return lambda s: s.endswith(needle)


def compile_test(test: Check, sets: dict[str, LiteralSet]) -> Pred:
    """The predicate for one test. Literal `contains` on the long text fields
    registers its needle in that field's set, so all of them cost one scan."""
    field, op, operand = test.field, test.op, test.operand
    spec = spec_for(field)
    untyped = spec is None or spec.kind == ANY

    if op == "exists":
        want = bool(operand)
        return lambda f: present(f.get(field)) is want

    if op in ("greater", "less"):
        limit = float(operand) if isinstance(operand, int | float) else 0.0
        above = op == "greater"

        def compare(f: Facts) -> bool:
            raw = f.get(field)
            values = raw if isinstance(raw, tuple) else (raw,)
            for v in values:
                n = number(v)
                if n is not None and (n > limit if above else n < limit):
                    return True
            return False

        return compare

    if op == "matches":
        rx = compile_regex(str(operand))
        if field in SCANNED_FIELDS:
            return lambda f: rx.search(f.encoded(field)) is not None

        def search(f: Facts) -> bool:
            raw = f.get(field)
            values = raw if isinstance(raw, tuple) else (raw,)
            return any(
                rx.search(_as_text(v) if not isinstance(v, str) else v) is not None
                for v in values
                if v is not None
            )

        return search

    if op in ("equals", "one_of"):
        options = operand if isinstance(operand, tuple) else (operand,)
        if untyped or not all(isinstance(o, str) for o in options):
            return lambda f: any(equal(f.get(field), o) for o in options)
        wanted = frozenset(str(o).lower() for o in options)
        if len(wanted) == 1:
            (single,) = wanted

            def equals_one(f: Facts) -> bool:
                v = f.lower(field)
                if isinstance(v, str):
                    return v == single
                return isinstance(v, tuple) and single in v

            return equals_one

        def one_of(f: Facts) -> bool:
            v = f.lower(field)
            if isinstance(v, str):
                return v in wanted
            return isinstance(v, tuple) and not wanted.isdisjoint(v)

        return one_of

    # contains, starts_with, ends_with
    needle = str(operand).lower()
    if op == "contains" and field in SCANNED_FIELDS:
        index = sets[field].add(literal_pattern(str(operand)))
        return lambda f: index in f.hits(field)
    check = _text_test(op, needle)

    def text_op(f: Facts) -> bool:
        v = f.lower(field)
        if isinstance(v, str):
            return check(v)
        if isinstance(v, tuple):
            return any(check(e) for e in v)
        return v is not None and check(_as_text(v))

    return text_op
