"""Line numbers for config errors.

tomllib gives none, so the n-th `[[rule]]` table is found by scanning the text
for the n-th `[[rule]]` header. Tables written inline (`rule = [{...}, ...]`)
all point at the line where the array starts. Line 0 means "somewhere".
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"""^\s*\[\[\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_.\-\s]+?))\s*\]\]""")
_TABLE = re.compile(r"""^\s*\[\s*([A-Za-z0-9_.\-"' ]+?)\s*\]""")
_TOML_LINE = re.compile(r"line (\d+)")


class Lines:
    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def headers(self, name: str) -> list[int]:
        """1-based line of each `[[name]]` header, in order."""
        found = []
        for number, line in enumerate(self.lines, 1):
            m = _HEADER.match(line)
            if m and (m.group(1) or m.group(2) or (m.group(3) or "").strip()) == name:
                found.append(number)
        return found

    def table(self, name: str) -> int:
        """Line of a `[name]` header, or of `name = ...` at the top, else 0."""
        for number, line in enumerate(self.lines, 1):
            m = _TABLE.match(line)
            if m and not line.lstrip().startswith("[[") and m.group(1).strip() == name:
                return number
        inline = re.compile(rf"^\s*{re.escape(name)}\s*=")
        return next((n for n, line in enumerate(self.lines, 1) if inline.match(line)), 0)

    def section(self, name: str) -> tuple[int, int]:
        """(first, last) line of the `[name]` table, or (0, 0)."""
        start = self.table(name)
        if not start:
            return (0, 0)
        end = start
        for number in range(start + 1, len(self.lines) + 1):
            if self.lines[number - 1].lstrip().startswith("["):
                break
            end = number
        return (start, end)

    def spans(self, name: str, count: int) -> list[tuple[int, int]]:
        """(first, last) line of each of `count` array entries named `name`."""
        starts = self.headers(name)
        spans: list[tuple[int, int]] = []
        for start in starts:
            end = start
            for number in range(start + 1, len(self.lines) + 1):
                line = self.lines[number - 1].lstrip()
                # Sub-tables such as [rule.when] still belong to this entry.
                if line.startswith("[") and not re.match(rf"\[\[?\s*{re.escape(name)}\.", line):
                    break
                end = number
            spans.append((start, end))
        inline = self.table(name) if len(starts) < count else 0
        spans += [(inline, inline)] * (count - len(spans))
        return spans[:count]

    def find(self, span: tuple[int, int], hint: str) -> int:
        """The first line of the span mentioning `hint`, else the span's first line."""
        start, end = span
        if start and hint:
            for number in range(start, end + 1):
                if hint in self.lines[number - 1]:
                    return number
        return start


def toml_error_line(message: str) -> int:
    m = _TOML_LINE.search(message)
    return int(m.group(1)) if m else 0
