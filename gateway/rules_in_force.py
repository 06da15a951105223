"""The routing rules in force, and their reloading.

Rules come from the same TOML file as the rest of the configuration, and are
read with it (`gateway.config`). They are reloaded on SIGHUP and when the file
changes: the whole file is checked again by the same loader, and a valid one
is swapped in as a whole (one attribute assignment, between two batches); an
invalid one leaves the old rules running, with every problem logged and kept
for the admin endpoint. Settings other than rules, components, classifier
cues, service levels, escalations, queues and outbound templates need a restart.

Each reload, good or bad, is an audit event (`rules.reload`, actor `system`,
with what triggered it) once the holder has an `engine`: written right after
the swap, in the background (a reload is no database transaction to join),
and logged if it cannot be.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from domain.errors import ConfigError
from gateway.config import Config, InvalidConfigError, config_from_text
from gateway.config.loader import reloaded
from gateway.supervisor import Heartbeat
from routing.api import RuleSet, warm_up
from routing.sla import SlaConfig
from routing.sla.escalation import Escalation
from storage import audit
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


@dataclass
class RulesHolder:
    """The config whose rules are in force: the one started with, then each good reload."""

    config: Config
    loaded_at: datetime = field(default_factory=utcnow)
    last_reload: ReloadResult | None = None
    # Where reloads are audited (None: not audited, as in tests of the rules alone).
    engine: AsyncEngine | None = None
    _audits: set[asyncio.Task[None]] = field(default_factory=set)

    @classmethod
    def load(cls, config: Config) -> RulesHolder:
        """Hold a checked config's rules; the loader read and compiled them already."""
        return cls(config)

    @property
    def rules(self) -> RuleSet:
        return self.config.rules

    @property
    def sla(self) -> SlaConfig | None:
        return self.config.sla

    @property
    def escalations(self) -> tuple[Escalation, ...]:
        return self.config.escalations

    @property
    def queues(self) -> list[str]:
        return [q.name for q in self.config.queue]

    def reload(self, text: str | None = None, *, trigger: str | None = None) -> ReloadResult:
        """Read the file again (or take `text`, the watcher's: "file changed"); swap
        in its rules only if all of it is valid. `trigger` goes into the audit event."""
        result = self._reload(text)
        self._audit(result, trigger or ("file changed" if text is not None else "reload"))
        return result

    def hangup(self) -> None:
        """SIGHUP's handler: reload now."""
        self.reload(trigger="SIGHUP")

    def _audit(self, result: ReloadResult, trigger: str) -> None:
        if self.engine is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: nothing to write with (a reload from a script)
        task = loop.create_task(self._record(self.engine, result, trigger))
        self._audits.add(task)
        task.add_done_callback(self._audits.discard)

    async def _record(self, engine: AsyncEngine, result: ReloadResult, trigger: str) -> None:
        try:
            await audit.record(engine, actor="system", action="rules.reload",
                               target=self.config.source, data={
                                   "trigger": trigger, "ok": result.ok,
                                   "changed": result.changed, "errors": list(result.errors),
                                   "pid": os.getpid()})
        except Exception:  # noqa: BLE001 - the reload stands; say the audit missed it
            log.exception("the rules reload at %s was not written to the audit", result.at)

    async def audited(self) -> None:
        """Wait for the audit events of the reloads so far to be written."""
        while self._audits:
            await asyncio.gather(*self._audits, return_exceptions=True)

    def _reload(self, text: str | None) -> ReloadResult:
        try:
            text = _read(self.config) if text is None else text
            new = config_from_text(text, self.config.source, os.environ)
            warm_up(new.rules)
        except InvalidConfigError as exc:
            errors = exc.problems
        except ConfigError as exc:
            errors = tuple(str(exc).splitlines())
        except OSError as exc:
            errors = (f"{self.config.source}: cannot read: {exc.strerror}",)
        else:
            changed = new.digest != self.config.digest
            self.config = reloaded(self.config, new)
            self.loaded_at = utcnow()
            self.last_reload = ReloadResult(self.loaded_at, True, changed=changed)
            log.info("rules reloaded from %s (%d rules)", self.config.source,
                     len(new.rules.rules))
            return self.last_reload
        self.last_reload = ReloadResult(utcnow(), False, errors)
        for line in errors:
            log.error("rules not reloaded, the old ones stay: %s", line)
        return self.last_reload

    @property
    def watchable(self) -> bool:
        """Whether there is a file to watch (the embedded default has none)."""
        return not self.config.source.startswith("<")

    async def watch(self, interval: float, heartbeat: Heartbeat | None = None) -> None:
        """Reload when the file's content changes (checked every `interval` s).

        No failure ends it: a pass that fails is logged and the next one comes."""
        if not self.watchable:
            return
        beat = heartbeat or Heartbeat()
        failed_digest = ""
        while True:
            await asyncio.sleep(interval)
            try:
                failed_digest = self._check_file(failed_digest)
            except Exception as exc:  # noqa: BLE001 - a bad pass must not stop the next
                log.exception("checking %s for new rules failed", self.config.source)
                beat.failed(exc)
            else:
                beat.beat()

    def _check_file(self, failed_digest: str) -> str:
        """One pass of `watch`: reload if changed; the digest of a broken file."""
        try:
            text = _read(self.config)
        except OSError:
            return failed_digest  # being replaced, or gone for a moment: look again later
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest in (self.config.digest, failed_digest):
            return failed_digest  # unchanged, or the same broken file reported once already
        result = self.reload(text)
        return "" if result.ok else digest

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
