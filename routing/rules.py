"""Rules, the component catalogue and routing settings: the config as data.

Everything here is a frozen dataclass that compares by value, so a config read,
written out with `dump_rules` and read again compares equal to the original.
Nothing here imports the rest of routing: the compiled form (regexes, sets) is
made from a `RuleSet` by `routing.engine.compile_rules`, which keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from routing.conditions import Condition
from routing.inputs import FieldValue
from routing.sla.calendar import Calendar

APPLIES_TO = ("new", "replies", "all")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True, kw_only=True)
class Actions:
    """What a rule sets when it hits; None means "leave as it is"."""

    queue: str | None = None
    priority: str | None = None
    type: str | None = None
    category: str | None = None
    component: str | None = None
    tags: tuple[str, ...] = ()  # added to the tags of earlier rules
    fields: tuple[tuple[str, FieldValue], ...] = ()  # custom fields to set
    acknowledge: bool | None = None
    template: str | None = None  # acknowledgement template
    quarantine: bool | None = None  # held for review, never dropped
    escalation: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    name: str
    when: Condition | None = None  # None: always (a catch-all)
    then: Actions = field(default_factory=Actions)
    stop: bool = False
    # Replies threaded onto a request are not re-routed unless a rule says so.
    applies_to: str = "new"
    enabled: bool = True
    description: str = ""

    def applies(self, is_reply: bool) -> bool:
        return self.applies_to == "all" or self.applies_to == ("replies" if is_reply else "new")


@dataclass(frozen=True, slots=True, kw_only=True)
class Component:
    """An entry of the catalogue of what the desk supports."""

    name: str
    aliases: tuple[str, ...] = ()
    queue: str | None = None  # the owning team's queue
    description: str = ""

    @property
    def terms(self) -> tuple[str, ...]:
        # The name is always a cue for itself.
        return tuple(dict.fromkeys((self.name, *self.aliases)))


@dataclass(frozen=True, slots=True, kw_only=True)
class CueOverride:
    """A `[[classifier]]` entry: words that point to a type or a priority."""

    output: str  # "type" or "priority"
    label: str  # e.g. "complaint", "P1"
    cues: tuple[str, ...]
    weight: float = 1.0
    # "add" to the built-in cues of that label, or "replace" them.
    mode: str = "add"


@dataclass(frozen=True, slots=True, kw_only=True)
class BusinessHours:
    timezone: str = "UTC"
    days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")
    start: str = "09:00"  # local time, inclusive
    end: str = "17:00"  # local time, exclusive
    holidays: tuple[str, ...] = ()  # ISO dates, local
    # `calendar = NAME`: the hours are that [[calendar]]'s (one source for rules
    # and service levels); the fields above are then unused.
    calendar: Calendar | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    default_queue: str = "general"
    default_priority: str = "P3"
    default_type: str = "service_request"
    acknowledge: bool = True
    template: str = "default"
    # Matching reads at most this many characters of each text field.
    max_text_chars: int = 65536
    # Language identification reads this much of subject and new text: on the
    # corpus 300 gave the same language as 600 for 124 of 125 texts, at about
    # two thirds of the time (py3langid's cost grows with the sample).
    language_sample_chars: int = 300
    # Restrict language identification to these codes (empty: all it knows).
    languages: tuple[str, ...] = ()
    # Named reference lists of addresses and domains, e.g. vip, blocked.
    lists: tuple[tuple[str, tuple[str, ...]], ...] = ()
    business_hours: BusinessHours | None = None


# weakref_slot: the compiled form is cached by identity while the rule set lives.
@dataclass(frozen=True, slots=True, kw_only=True, weakref_slot=True)
class RuleSet:
    rules: tuple[Rule, ...] = ()
    components: tuple[Component, ...] = ()
    classifier: tuple[CueOverride, ...] = ()
    settings: Settings = field(default_factory=Settings)
    source: str = field(default="<config>", compare=False)
