"""Reading and checking the routing part of the config file.

Only the tables routing owns are read: `[routing]`, `[[component]]`,
`[[classifier]]` and `[[rule]]`; the gateway's loader owns the file and the
rest. Every problem is reported, not just the first, each with the file, the
line, the rule's name and what is wrong, so `intake check-config` can list
them all at once. Line numbers come from the text, values from the parsed
document: `read_routing` takes both, so the file is parsed once.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Mapping
from typing import Any

from domain.errors import ConfigError
from routing.config.lines import toml_error_line
from routing.config.reader import ConfigIssue, Reader
from routing.config.rule_tables import read_rules
from routing.config.sections import read_classifier, read_components, read_settings
from routing.engine import compile_rules
from routing.rules import RuleSet

__all__ = [
    "ConfigIssue",
    "InvalidRulesError",
    "check_config",
    "load_rules",
    "read_routing",
]

class InvalidRulesError(ConfigError):
    """The routing config has errors; `issues` lists all of them."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


def load_rules(text: str, path: str = "<config>", queues: Collection[str] | None = None) -> RuleSet:
    """The rules of a config file's text, compiled; raises `InvalidRulesError`.

    `queues` are the known queue names; None takes them from the file's
    `[[queue]]` tables, and checks nothing when it has none.
    """
    rules, issues = _read(text, path, queues)
    if issues or rules is None:
        raise InvalidRulesError(issues)
    compile_rules(rules)  # now, not on the first message
    return rules


def check_config(
    text: str, path: str = "<config>", queues: Collection[str] | None = None
) -> list[ConfigIssue]:
    """Every problem in the routing part of the config; empty when it is fine."""
    return _read(text, path, queues)[1]


def _read(
    text: str, path: str, queues: Collection[str] | None
) -> tuple[RuleSet | None, list[ConfigIssue]]:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [ConfigIssue(path, toml_error_line(str(exc)), None, f"not valid TOML: {exc}")]
    if queues is None and isinstance(doc.get("queue"), list):
        queues = [
            q["name"]
            for q in doc["queue"]
            if isinstance(q, Mapping) and isinstance(q.get("name"), str)
        ]
    return read_routing(doc, text, path, queues)


def read_routing(
    doc: Mapping[str, Any], text: str, path: str, queues: Collection[str] | None
) -> tuple[RuleSet | None, list[ConfigIssue]]:
    """The rules of a parsed config (`text` is its source, for line numbers), or
    every problem with them. `queues` are the known queue names (None: unchecked)."""
    r = Reader(text, path, queues)
    settings = read_settings(r, doc.get("routing", {}), calendars=doc.get("calendar"))
    components = read_components(r, doc)
    overrides = read_classifier(r, doc)
    lists = [name for name, _ in settings.lists] if settings else []
    rules = read_rules(r, doc, lists, {c.name for c in components})
    if r.issues or settings is None:
        return None, r.issues
    return RuleSet(
        rules=tuple(rules),
        components=tuple(components),
        classifier=tuple(overrides),
        settings=settings,
        source=path,
    ), []
