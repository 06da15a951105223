"""Escalation rules: what to do when a service level is at risk or broken.

Read from `[[escalation]]` tables of the parsed config::

    [[escalation]]
    name = "P1 first response breached"
    when = { breached = "first_response", priority = ["P1", "P2"] }
    then = { queue = "duty-managers", escalation = "+1", notify = true }

    [[escalation]]
    name = "nobody took it"
    when = { unclaimed_for = "30m" }        # wall time since creation, never claimed
    then = { priority = "P2" }              # raises P3/P4 to P2; a P1 stays P1

    [[escalation]]
    name = "reopened too often"
    when = { reopened = 3 }                 # reopened at least this often
    then = { queue = "complaints" }

`when` has exactly one trigger (`warning` or `breached` naming a target,
`unclaimed_for`, `reopened`) and optional filters (`queue`, `priority`,
`type`: a string or a list). `then` sets `queue`, `priority`, `escalation`
(a level, or "+1") and `notify` (an `escalated` event for webhooks and the
broker). An escalation raises priority and never lowers it (P1 is the highest),
unless `then.priority_may_lower = true` says it may. Pure: the scheduler passes
the facts in.

Time-based triggers (`warning`, `breached`, `unclaimed_for`) each have a moment
they become true; the scheduler looks at a request again at the earliest of
them (`unclaimed_due` here, the targets' warning and due times in
routing.sla.clock), whether or not an SLA policy applies.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from domain.errors import ConfigError
from routing.sla.grammar import parse_duration

TARGETS = ("first_response", "resolution")
PRIORITIES = ("P1", "P2", "P3", "P4")


class EscalationConfigError(ConfigError):
    """Every problem of the `[[escalation]]` tables, one `key: what` per line."""

    def __init__(self, issues: list[str]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(issues))


@dataclass(frozen=True, slots=True)
class Escalation:
    name: str
    trigger: str  # "warning", "breached", "unclaimed", "reopened"
    target: str | None = None
    unclaimed_for: timedelta | None = None
    reopened: int | None = None
    queues: tuple[str, ...] = ()
    priorities: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    queue: str | None = None
    priority: str | None = None
    escalation: str | None = None  # "+1" or a level as text
    notify: bool = False
    priority_may_lower: bool = False  # else `priority` only ever raises it

    def applies(self, *, queue: str, priority: str | None, type: str | None) -> bool:
        return ((not self.queues or queue in self.queues)
                and (not self.priorities or priority in self.priorities)
                and (not self.types or type in self.types))

    def changes(self, escalation_level: int, priority: str | None = None) -> dict[str, Any]:
        """Request columns this rule sets, given the current escalation level and
        priority: a priority only when it raises the current one (or may lower it)."""
        out: dict[str, Any] = {}
        if self.queue:
            out["queue"] = self.queue
        if self.priority and self.priority != priority and (
                self.priority_may_lower or raises(self.priority, priority)):
            out["priority"] = self.priority
        if self.escalation == "+1":
            out["escalation_level"] = escalation_level + 1
        elif self.escalation is not None:
            out["escalation_level"] = max(escalation_level, int(self.escalation))
        return out


def raises(new: str, current: str | None) -> bool:
    """Whether priority `new` is higher than `current` (P1 highest; none or an
    unknown one is the lowest)."""
    rank = {name: index for index, name in enumerate(PRIORITIES)}
    return rank.get(new, len(PRIORITIES)) < rank.get(current or "", len(PRIORITIES))


def unclaimed_due(rules: Sequence[Escalation], *, created_at: datetime, queue: str,
                  priority: str | None, type: str | None) -> datetime | None:
    """The earliest moment an `unclaimed_for` rule that applies can fire (None: none)."""
    dues = [created_at + rule.unclaimed_for for rule in rules
            if rule.trigger == "unclaimed" and rule.unclaimed_for is not None
            and rule.applies(queue=queue, priority=priority, type=type)]
    return min(dues, default=None)


def _names(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def load_escalations(data: Mapping[str, Any],
                     queues: Collection[str] | None) -> tuple[Escalation, ...]:
    """The `[[escalation]]` rules of parsed TOML data; raises `EscalationConfigError`.

    `queues` are the known queue names (None: not checked).
    """
    tables = data.get("escalation", [])
    if isinstance(tables, Mapping):
        tables = [tables]
    problems: list[str] = []
    rules: list[Escalation] = []
    if not isinstance(tables, list):
        raise EscalationConfigError(["escalation: must be an array of tables"])
    for index, table in enumerate(tables):
        where = f"escalation[{index}]"
        found = _read(table, where, queues, problems) if isinstance(table, Mapping) else None
        if found is None and isinstance(table, Mapping):
            continue
        if found is None:
            problems.append(f"{where}: must be a table")
            continue
        rules.append(found)
    names = [r.name for r in rules]
    problems += [f"escalation: duplicate name {n!r}" for n in sorted(set(names))
                 if names.count(n) > 1]
    if problems:
        raise EscalationConfigError(problems)
    return tuple(rules)


def _read(table: Mapping[str, Any], where: str, queues: Collection[str] | None,
          problems: list[str]) -> Escalation | None:
    before = len(problems)
    name = table.get("name", where)
    when, then = table.get("when", {}), table.get("then", {})
    extra = sorted(set(table) - {"name", "when", "then", "description"})
    problems += [f"{where}.{k}: unknown key" for k in extra]
    if not isinstance(when, Mapping) or not isinstance(then, Mapping):
        problems.append(f"{where}: when and then must be tables")
        return None
    triggers = [k for k in ("warning", "breached", "unclaimed_for", "reopened") if k in when]
    if len(triggers) != 1:
        problems.append(f"{where}.when: needs exactly one of warning, breached, "
                        "unclaimed_for, reopened")
        return None
    trigger = triggers[0]
    fields: dict[str, Any] = {"name": str(name)}
    if trigger in ("warning", "breached"):
        if when[trigger] not in TARGETS:
            problems.append(f"{where}.when.{trigger}: must be first_response or resolution")
        fields |= {"trigger": trigger, "target": when[trigger]}
    elif trigger == "unclaimed_for":
        try:
            fields |= {"trigger": "unclaimed",
                       "unclaimed_for": parse_duration(str(when[trigger]), None)}
        except ValueError as exc:
            problems.append(f"{where}.when.unclaimed_for: {exc}")
    else:
        count = when[trigger]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            problems.append(f"{where}.when.reopened: must be a whole number from 1")
        fields |= {"trigger": "reopened", "reopened": count}
    for key, attr in (("queue", "queues"), ("priority", "priorities"), ("type", "types")):
        if key in when:
            values = _names(when[key])
            if values is None:
                problems.append(f"{where}.when.{key}: must be a string or a list of strings")
            else:
                fields[attr] = values
    extra_when = sorted(set(when) - {"warning", "breached", "unclaimed_for", "reopened",
                                     "queue", "priority", "type"})
    problems += [f"{where}.when.{k}: unknown key" for k in extra_when]
    _read_then(then, where, queues, problems, fields)
    return Escalation(**fields) if len(problems) == before else None


def _read_then(then: Mapping[str, Any], where: str, queues: Collection[str] | None,
               problems: list[str], fields: dict[str, Any]) -> None:
    if not then:
        problems.append(f"{where}.then: must set at least one of queue, priority, "
                        "escalation, notify")
    for key in sorted(set(then) - {"queue", "priority", "priority_may_lower", "escalation",
                                   "notify"}):
        problems.append(f"{where}.then.{key}: unknown key")
    if "queue" in then:
        if queues is not None and then["queue"] not in queues:
            problems.append(f"{where}.then.queue: unknown queue {then['queue']!r}")
        fields["queue"] = then["queue"]
    if "priority" in then:
        if then["priority"] not in PRIORITIES:
            problems.append(f"{where}.then.priority: must be one of {', '.join(PRIORITIES)}")
        fields["priority"] = then["priority"]
    if "priority_may_lower" in then:
        if not isinstance(then["priority_may_lower"], bool):
            problems.append(f"{where}.then.priority_may_lower: must be true or false")
        elif "priority" not in then:
            problems.append(f"{where}.then.priority_may_lower: needs then.priority")
        fields["priority_may_lower"] = then["priority_may_lower"] is True
    if "escalation" in then:
        level = then["escalation"]
        if level != "+1" and (isinstance(level, bool) or not isinstance(level, int)
                              or not 0 <= level <= 10):
            problems.append(f"{where}.then.escalation: must be \"+1\" or a level 0 to 10")
        fields["escalation"] = str(level)
    if "notify" in then:
        # true, or a target such as "webhook:pager" (the event goes to every subscriber)
        fields["notify"] = bool(then["notify"])


def steps_for(rules: Sequence[Escalation], *, trigger: str, target: str | None, queue: str,
              priority: str | None, type: str | None) -> tuple[Escalation, ...]:
    return tuple(r for r in rules if r.trigger == trigger and r.target == target
                 and r.applies(queue=queue, priority=priority, type=type))
