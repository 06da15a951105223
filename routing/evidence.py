"""Evidence for reasons: the value a test read, quoted short.

Used when a decision is explained (`Decision.rule_results`), never on the
hot path: a thousand rules on the same field show the same short value.
"""

from __future__ import annotations

from routing.conditions import Check, literal
from routing.facts import Facts, Value
from routing.regex import compile_regex

# Values quoted in reasons are cut to this many characters.
EVIDENCE_CHARS = 80
_AROUND = 30


def _short(text: str, limit: int = EVIDENCE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _window(text: str, start: int, end: int) -> str:
    left, right = max(0, start - _AROUND), min(len(text), end + _AROUND)
    snippet = ("…" if left else "") + text[left:right] + ("…" if right < len(text) else "")
    return literal(_short(snippet, EVIDENCE_CHARS + 2))


def _show(value: Value) -> str:
    if value is None:
        return "nothing (absent)"
    if isinstance(value, tuple):
        shown = literal([_short(v) for v in value[:5]])
        return shown[:-1] + (", …]" if len(value) > 5 else "]")
    if isinstance(value, str):
        return literal(_short(value))
    return literal(value)


def evidence(test: Check, facts: Facts, held: bool, shown_values: dict[str, str]) -> str:
    """The value a test read, cut short, around the match when there is one.

    `shown_values` keeps each field's short form for the whole explanation:
    a thousand rules on the same field show the same value.
    """
    value = facts.get(test.field)
    shown = f"{test.field} = "
    if held and isinstance(value, str) and len(value) > EVIDENCE_CHARS:
        if test.op == "matches" and isinstance(test.operand, str):
            found = compile_regex(test.operand).search(value)
            if found is not None:
                return shown + _window(value, found.start(), found.end())
        elif test.op == "contains" and isinstance(test.operand, str):
            lowered = facts.lower(test.field)
            # Positions hold only when lowercasing kept the length (it nearly always does).
            if isinstance(lowered, str) and len(lowered) == len(value):
                at = lowered.find(test.operand.lower())
                if at >= 0:
                    return shown + _window(value, at, at + len(test.operand))
    text = shown_values.get(test.field)
    if text is None:
        text = shown_values[test.field] = shown + _show(value)
    return text
