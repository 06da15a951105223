"""Hostile text cannot hang intake: catastrophic patterns run in linear time.

`(a+)+$` and `(x+x+)+y` take exponential time in a backtracking engine on a
long run of the repeated letter without the ending; RE2 scans once.
Timing is checked as a ratio between 250 KB and 1 MB (linear is 4x; quadratic
would be 16x) as well as by a generous absolute bound.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from routing.api import RoutingInput, decide, load_rules

CONFIG = r"""
[routing]
max_text_chars = 2000000

[[rule]]
name = "nested quantifier"
when = { body.matches = "(a+)+$" }
then = { queue = "ops" }

[[rule]]
name = "overlapping alternation"
[rule.when]
any = [
  { body.matches = "(x+x+)+y" },
  { subject.matches = "(a|aa)+$" },
  { text.matches = "(.*a){20}b" },
]
[rule.then]
queue = "ops"
"""


class Fixed:
    name = "fixed"

    def detect(self, text: str) -> tuple[str, float]:
        return "en", 0.9


def _seconds(size: int) -> float:
    rules = load_rules(CONFIG, "redos.toml", ["general", "ops"])
    body = "a" * (size // 2) + "!" + "x" * (size // 2 - 1)
    item = RoutingInput(
        received_at=datetime(2026, 11, 30, tzinfo=UTC),
        subject="a" * 200 + "!",
        new_text=body,
        text=body,
    )
    best = float("inf")
    for _ in range(5):
        # CPU time, not wall time: other processes on a shared machine do not count.
        started = time.process_time()
        decision = decide(rules, item, detector=Fixed())
        best = min(best, time.process_time() - started)
    assert decision.matched == ()
    # The explanation reads the same text with the same patterns.
    assert "failed" in decision.rule_results[0].reason
    return best


def test_regex__pathological_patterns_on_1mb_body_are_linear() -> None:
    small = _seconds(250_000)
    large = _seconds(2_000_000)
    assert large < 4.0, f"2 MB took {large:.2f} s"
    # Eight times the text: linear is 8x, quadratic 64x. The gap leaves room for
    # caches (250 KB fits in them, 2 MB does not) and a busy machine.
    assert large / small < 24, f"250 KB {small * 1000:.1f} ms, 2 MB {large * 1000:.1f} ms"


def test_regex__lookaround_and_backreferences_are_refused() -> None:
    from routing.api import InvalidRulesError

    for pattern in ("(?=a)a", "(a)\\\\1"):
        text = f'[[rule]]\nname = "r"\nwhen = {{ body.matches = "{pattern}" }}\n'
        with pytest.raises(InvalidRulesError, match="bad regular expression"):
            load_rules(text, "t.toml", ["general"])
