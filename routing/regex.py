"""RE2 in one place: every regex in routing runs in linear time on hostile text.

Python's `re` backtracks, so a rule like `(a+)+$` could hang intake on one
crafted message; RE2 cannot. Lookarounds and backreferences are therefore not
available, and a config using them fails validation with RE2's message.
"""

from __future__ import annotations

from typing import cast

import re2

# RE2's default 8 MiB can be too small for a set of a few thousand literals.
SET_MAX_MEM = 64 << 20


def _options(max_mem: int | None = None) -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # errors are reported to the caller, not to stderr
    if max_mem is not None:
        options.max_mem = max_mem
    return options


def compile_regex(pattern: str) -> re2._Regexp[str]:
    """Compile with RE2; raises `re2.error`."""
    return re2.compile(pattern, _options())


def regex_error(pattern: str) -> str | None:
    """RE2's complaint about a pattern, or None when it compiles."""
    try:
        compile_regex(pattern)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        return detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
    return None


def literal_pattern(text: str) -> str:
    """A case-insensitive pattern finding `text` anywhere."""
    return "(?i)" + re2.escape(text)


def word_pattern(phrase: str) -> str:
    """A case-insensitive pattern finding `phrase` as whole words.

    RE2's \\b knows ASCII word characters only, so an edge of the phrase that
    is a non-ASCII letter ("accès") gets no boundary rather than a wrong one.
    (Unicode-aware boundaries, [^\\pL\\pN_], cost 100x more to compile.)
    Any run of white space matches a space in the phrase.
    """
    words = [re2.escape(w) for w in phrase.split()]
    body = r"\s+".join(words)
    first, last = phrase.strip()[:1], phrase.strip()[-1:]
    left = r"\b" if first.isascii() and (first.isalnum() or first == "_") else ""
    right = r"\b" if last.isascii() and (last.isalnum() or last == "_") else ""
    return f"(?i){left}{body}{right}"


class LiteralSet:
    """Many patterns, one scan: which of them occur somewhere in a text.

    Only fixed strings and word cues go here: their automaton stays small, so
    RE2's set search cannot run out of memory and silently report no match
    (it says nothing else in that case). Real regexes run one by one.
    """

    __slots__ = ("_patterns", "_set")

    def __init__(self) -> None:
        self._patterns: dict[str, int] = {}
        self._set: re2.Set | None = None

    def add(self, pattern: str) -> int:
        """Register a pattern and return its index in `match` results."""
        index = self._patterns.get(pattern)
        if index is None:
            self._set = None
            index = self._patterns[pattern] = len(self._patterns)
        return index

    def __len__(self) -> int:
        return len(self._patterns)

    def compile(self) -> re2.Set:
        if self._set is None:
            compiled = re2.Set.SearchSet(_options(SET_MAX_MEM))
            for pattern in self._patterns:
                compiled.Add(pattern)
            compiled.Compile()
            self._set = compiled
        return self._set

    def match(self, text: bytes) -> frozenset[int]:
        if not self._patterns:
            return frozenset()
        # The stubs say bool | None; the binding returns the matching indices.
        found = cast("list[int] | None", self.compile().Match(text))
        return frozenset(found or ())
