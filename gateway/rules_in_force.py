"""The routing rules in force, and their reloading.

Rules come from the same TOML file as the rest of the configuration. They are
reloaded on SIGHUP and when the file changes: a valid file is swapped in as a
whole (one attribute assignment, between two batches), an invalid one leaves
the old rules running, with the error logged and kept for the admin endpoint.
Settings other than rules, components, classifier cues and queues need a
restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from domain.errors import ConfigError
from gateway.config import Config, build_config
from routing.api import InvalidRulesError, RuleSet, load_rules, warm_up
from routing.sla import SlaConfig, load_sla_config
from routing.sla.escalation import Escalation, load_escalations
from storage.engine import utcnow

log = logging.getLogger("intake.rules")


@dataclass(frozen=True, slots=True)
class ReloadResult:
    at: datetime
    ok: bool
    errors: tuple[str, ...] = ()
    changed: bool = False


def _read(config: Config) -> str:
    if config.source.startswith("<"):
        return ""  # the embedded default: no rules, everything to the first queue
    return Path(config.source).read_text(encoding="utf-8")


def rules_from(config: Config, text: str | None = None) -> RuleSet:
    """The rules of a validated config; InvalidRulesError lists every problem."""
    text = _read(config) if text is None else text
    return load_rules(text, config.source, queues=[q.name for q in config.queue])


def service_levels_from(config: Config, text: str) -> tuple[SlaConfig | None,
                                                          tuple[Escalation, ...]]:
    """`[[calendar]]`, `[[sla]]` and `[[escalation]]`; ConfigError names the key."""
    data = tomllib.loads(text) if text else {}
    problems: list[str] = []
    sla: SlaConfig | None = None
    escalations: tuple[Escalation, ...] = ()
    try:
        sla = load_sla_config(data) if data.get("sla") else None
    except ValueError as exc:  # SlaConfigError
        problems += str(exc).splitlines()
    try:
        escalations = load_escalations(data, [q.name for q in config.queue])
    except ValueError as exc:  # EscalationConfigError
        problems += str(exc).splitlines()
    if problems:
        raise ConfigError("\n".join(f"{config.source}: key {line}" for line in problems))
    return sla, escalations


@dataclass
class RulesHolder:
    config: Config
    rules: RuleSet
    sla: SlaConfig | None = None
    escalations: tuple[Escalation, ...] = ()
    loaded_at: datetime = field(default_factory=utcnow)
    last_reload: ReloadResult | None = None
    _digest: str = ""

    @classmethod
    def load(cls, config: Config) -> RulesHolder:
        text = _read(config)
        sla, escalations = service_levels_from(config, text)
        holder = cls(config, rules_from(config, text), sla, escalations)
        holder._digest = hashlib.sha256(text.encode()).hexdigest()
        return holder

    @property
    def queues(self) -> list[str]:
        return [q.name for q in self.config.queue]

    def reload(self, text: str | None = None) -> ReloadResult:
        """Read the file again (or take `text`); swap in its rules only if all of it
        is valid."""
        try:
            text = _read(self.config) if text is None else text
            digest = hashlib.sha256(text.encode()).hexdigest()
            new_config = build_config(tomllib.loads(text), self.config.source, os.environ)
            rules = rules_from(new_config, text)
            sla, escalations = service_levels_from(new_config, text)
            warm_up(rules)
        except InvalidRulesError as exc:
            errors = tuple(str(issue) for issue in exc.issues)
        except (ConfigError, tomllib.TOMLDecodeError, OSError) as exc:
            errors = (f"{self.config.source}: {exc}",)
        else:
            changed = digest != self._digest
            # Only what routing reads is taken over; listeners and database stay.
            self.config = self.config.model_copy(update={"queue": new_config.queue})
            self.rules, self.loaded_at, self._digest = rules, utcnow(), digest
            self.sla, self.escalations = sla, escalations
            self.last_reload = ReloadResult(utcnow(), True, changed=changed)
            log.info("rules reloaded from %s (%d rules)", self.config.source,
                     len(rules.rules))
            return self.last_reload
        self.last_reload = ReloadResult(utcnow(), False, errors)
        for line in errors:
            log.error("rules not reloaded, the old ones stay: %s", line)
        return self.last_reload

    async def watch(self, interval: float) -> None:
        """Reload when the file's content changes (checked every `interval` s)."""
        if self.config.source.startswith("<"):
            return  # the embedded default has no file to watch
        failed_digest = ""
        while True:
            await asyncio.sleep(interval)
            try:
                text = _read(self.config)
            except OSError:
                continue  # being replaced, or gone for a moment: look again later
            digest = hashlib.sha256(text.encode()).hexdigest()
            if digest in (self._digest, failed_digest):
                continue  # unchanged, or the same broken file reported once already
            result = self.reload(text)
            failed_digest = "" if result.ok else digest

    def status(self) -> dict[str, object]:
        last = self.last_reload
        return {
            "source": self.config.source,
            "loaded_at": self.loaded_at,
            "rules": len(self.rules.rules),
            "components": len(self.rules.components),
            "queues": self.queues,
            "default_queue": self.rules.settings.default_queue,
            "last_reload": None if last is None else {
                "at": last.at, "ok": last.ok, "errors": list(last.errors),
                "changed": last.changed},
        }
