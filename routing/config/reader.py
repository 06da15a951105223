"""Shared by the config readers: issues, and a reader that knows the lines."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from routing.config.lines import Lines

Report = Callable[[str, str], None]


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    file: str
    line: int  # 1-based; 0 when unknown
    rule: str | None  # the rule's (or component's) name, when the issue is in one
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return f"{where}: {self.rule}: {self.message}" if self.rule else f"{where}: {self.message}"


class Reader:
    def __init__(self, text: str, path: str, queues: Collection[str] | None) -> None:
        self.path = path
        self.lines = Lines(text)
        self.queues = queues
        self.issues: list[ConfigIssue] = []

    def add(self, line: int, owner: str | None, message: str) -> None:
        issue = ConfigIssue(self.path, line, owner, message)
        if issue not in self.issues:  # e.g. the same mistake in each item of a list
            self.issues.append(issue)

    def reporter(self, span: tuple[int, int], owner: str | None) -> Report:
        return lambda message, hint: self.add(self.lines.find(span, hint), owner, message)

    def entries(self, doc: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
        raw = doc.get(name, [])
        if not isinstance(raw, list) or not all(isinstance(e, Mapping) for e in raw):
            self.add(
                self.lines.table(name), None, f"'{name}' must be an array of tables [[{name}]]"
            )
            return []
        return raw

    def known_queue(self, value: object, where: str, report: Report) -> bool:
        if not isinstance(value, str) or not value:
            report(f"{where} must be a queue name (a string)", where.rpartition(".")[2])
            return False
        if self.queues is not None and value not in self.queues:
            report(
                f"unknown queue {value!r} in {where} (known: {', '.join(sorted(self.queues))})",
                f'"{value}"',
            )
            return False
        return True


def unknown_keys(
    r: Reader,
    raw: Mapping[str, Any],
    known: set[str],
    what: str,
    report: Report,
) -> None:
    for key in raw:
        if key not in known:
            report(f"unknown key '{key}' in {what} (known: {', '.join(sorted(known))})", key)


def strings(value: object) -> tuple[str, ...] | None:
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    return None
