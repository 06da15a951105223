"""The health check that says what is wrong: GET /v1/admin/health and `intake health`.

Not the load balancer's check (that is /readyz, gateway/health.py): a report for
an operator or a Nagios-style monitor, a list of issues each with a
machine-readable code and a severity, and the exit code such monitors read
(0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN). What it looks at:

database unreachable, dead letters, pipeline lag, a scheduler that does not
run, outbox rows failing, the relay or our own SMTP/LMTP listener not greeting,
a failed rules reload, a background task down, and an IMAP mailbox failing or
fetched by nobody (the codes and severities are `Code` and the README's table).

Database figures come from storage/monitoring.py (indexed statements only), and
the whole report is kept for `CACHE_SECONDS`, so a monitor polling often costs
the database and the relay little.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Config
from gateway.proxies import TrustedProxies
from gateway.supervisor import TaskHealth
from storage.engine import utcnow
from storage.errors import described
from storage.monitoring import Figures, MailboxFigures, figures

# A report is reused this long: probes cannot load the database or the relay.
CACHE_SECONDS = 5.0
# When this process started (its import, near enough): a mailbox that has no
# row yet counts as stalled only once this is `mailbox_stale_seconds` old.
STARTED = utcnow()


class Severity(IntEnum):
    """Nagios plugin exit codes."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


class Code(StrEnum):
    DATABASE_UNREACHABLE = "database_unreachable"
    DEAD_LETTERS = "dead_letters"
    PIPELINE_LAG = "pipeline_lag"
    SCHEDULER_LATE = "scheduler_late"
    OUTBOX_FAILING = "outbox_failing"
    RELAY_UNREACHABLE = "relay_unreachable"
    LISTENER_UNREACHABLE = "listener_unreachable"
    RULES_RELOAD_FAILED = "rules_reload_failed"
    TASK_DOWN = "task_down"
    MAILBOX_FAILING = "mailbox_failing"
    # Not "idle": IMAP's IDLE is the healthy wait between passes.
    MAILBOX_STALLED = "mailbox_stalled"


@dataclass(frozen=True, slots=True, kw_only=True)
class Issue:
    code: Code
    severity: Severity
    message: str
    value: float | None = None  # the measured figure, when there is one

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity.name.lower(),
                "message": self.message, "value": self.value}


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    issues: tuple[Issue, ...]
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def severity(self) -> Severity:
        return max((issue.severity for issue in self.issues), default=Severity.OK)

    @property
    def status(self) -> str:
        return "healthy" if self.severity == Severity.OK else self.severity.name.lower()

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "exit_code": int(self.severity),
                "issues": [issue.to_dict() for issue in self.issues],
                "figures": self.figures}

    def nagios(self) -> str:
        """One line as Nagios plugins print it: state, what is wrong, performance data."""
        # Messages may quote a relay's or a rule file's error: a `|` would start
        # the performance data, a line break end the plugin's one line.
        text = "; ".join(f"{i.code}: {_one_line(i.message)}" for i in self.issues) or "no issues"
        perf = " ".join(f"{key}={value:g}" for key, value in self.figures.items())
        return f"INTAKE {self.severity.name} - {text}" + (f" | {perf}" if perf else "")


def _one_line(message: str, limit: int = 300) -> str:
    return re.sub(r"[|\x00-\x1f\x7f]+", " ", message)[:limit]


def _database_issues(config: Config, found: Figures) -> list[Issue]:
    health, issues = config.health, []
    dead_inbox = found.inbox.get("dead", 0)
    if found.dead:
        issues.append(Issue(code=Code.DEAD_LETTERS, severity=Severity.WARNING, value=found.dead,
                            message=f"{found.dead} dead letters ({dead_inbox} inbox, "
                                    f"{found.dead - dead_inbox} outbox)"))
    lag = found.lag_seconds
    if lag > health.pipeline_lag_seconds:
        critical = lag > health.pipeline_lag_critical_seconds
        limit = (health.pipeline_lag_critical_seconds if critical
                 else health.pipeline_lag_seconds)
        issues.append(Issue(code=Code.PIPELINE_LAG, value=round(lag, 1),
                            severity=Severity.CRITICAL if critical else Severity.WARNING,
                            message=f"the oldest inbox item due has waited {lag:.0f} s "
                                    f"(over {limit:g} s)"))
    late = found.scheduler_late_seconds
    if late > health.scheduler_late_seconds:
        issues.append(Issue(code=Code.SCHEDULER_LATE, severity=Severity.CRITICAL,
                            value=round(late, 1),
                            message=f"a service-level check has been due for {late:.0f} s "
                                    f"(over {health.scheduler_late_seconds:g} s): is a "
                                    "scheduler running?"))
    failing = found.outbox_failing()
    if failing:
        kinds = sorted({kind for (kind, state) in found.outbox if state == "failing"})
        error = (found.outbox_failing_error or "").splitlines()[0][:200] if (
            found.outbox_failing_error) else ""
        issues.append(Issue(code=Code.OUTBOX_FAILING, severity=Severity.WARNING,
                            value=failing,
                            message=f"{failing} outbox rows ({', '.join(kinds)}) wait for "
                                    f"another attempt" + (f"; last error: {error}"
                                                          if error else "")))
    return issues


def _mailbox_issues(config: Config, rows: Mapping[str, MailboxFigures], now: datetime,
                    started: datetime) -> list[Issue]:
    """Per configured mailbox: failing (the fetcher's last attempt failed), else
    stalled: nobody holds it, or its holder has not finished a pass, for too long."""
    issues = []
    for section in config.mailbox:
        name, row = section.name, rows.get(section.name)
        # A pass comes at least every poll_seconds (IDLE ends by then too): a
        # longer poll than the threshold is not a stall.
        limit = max(config.health.mailbox_stale_seconds, 2 * section.poll_seconds)
        if row is not None and row.failing_since is not None:
            failing = _seconds(now, row.failing_since)
            error = _one_line(row.last_error or "no error recorded", 200)
            issues.append(Issue(code=Code.MAILBOX_FAILING, severity=Severity.CRITICAL,
                                value=round(failing, 1),
                                message=f"mailbox {name} has failed since "
                                        f"{_when(row.failing_since)} ({failing:.0f} s): {error}"))
            continue
        if row is None or row.last_pass_at is None:
            waited = _seconds(now, started)
            if waited > limit:
                issues.append(_stalled(name, waited, f"has not been fetched yet, "
                                       f"{waited:.0f} s after this process started"))
            continue
        if not row.held(now):
            # Free since its lease ran out, or (released) since its last pass.
            since = max(t for t in (row.lease_until, row.last_pass_at) if t is not None)
            free = _seconds(now, since)
            if free > limit:
                issues.append(_stalled(name, free, f"is fetched by no process: none has "
                                       f"held it since {_when(since)} ({free:.0f} s)"))
            continue
        late = _seconds(now, row.last_pass_at)
        if late > limit:
            issues.append(_stalled(name, late, f"is held by {_one_line(row.holder or '', 80)} "
                                   f"but its last pass was at {_when(row.last_pass_at)} "
                                   f"({late:.0f} s ago)"))
    return issues


def _stalled(name: str, seconds: float, what: str) -> Issue:
    return Issue(code=Code.MAILBOX_STALLED, severity=Severity.WARNING, value=round(seconds, 1),
                 message=f"mailbox {name} {what}")


def _seconds(now: datetime, then: datetime) -> float:
    return max(0.0, (now - then).total_seconds())


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


async def greets(host: str, port: int, seconds: float, *, proxied: bool = False) -> str | None:
    """None if an SMTP server at host:port greets with 220 within `seconds`;
    else what went wrong. `proxied`: our listener takes this host for a trusted
    proxy (smtp.proxy_protocol_from), so a PROXY header comes first; UNKNOWN
    keeps the connection's own address, as a load balancer's check does."""
    try:
        async with asyncio.timeout(seconds):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                if proxied:
                    writer.write(b"PROXY UNKNOWN\r\n")
                line = await reader.readline()
                if not line.startswith(b"220"):
                    return f"greeted with {line[:60].decode('ascii', 'replace').strip()!r}"
                writer.write(b"QUIT\r\n")
                await writer.drain()
            finally:
                writer.close()
    except TimeoutError:
        return f"no greeting within {seconds:g} s"
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def _task_issues(tasks: Sequence[TaskHealth]) -> list[Issue]:
    return [Issue(code=Code.TASK_DOWN, severity=Severity.CRITICAL,
                  message=f"background task {t.name} is {t.state}"
                          + (f" ({t.last_error})" if t.last_error else ""))
            for t in tasks if not t.healthy]


def _rules_issues(status: dict[str, Any] | None) -> list[Issue]:
    last = (status or {}).get("last_reload")
    if not last or last.get("ok"):
        return []
    errors = list(last.get("errors") or [])
    return [Issue(code=Code.RULES_RELOAD_FAILED, severity=Severity.WARNING,
                  message=f"the last reload of the rules failed ({len(errors)} problems; the "
                          f"previous rules stay in force): {errors[0] if errors else ''}")]


async def build_report(*, config: Config, engine: AsyncEngine,
                       tasks: Sequence[TaskHealth] = (),
                       rules_status: dict[str, Any] | None = None,
                       listeners: Sequence[tuple[str, tuple[str, int]]] = (),
                       started: datetime | None = None) -> Report:
    """Every check, now. `tasks` and `rules_status`: this process's, when it runs
    them; `listeners`: our own SMTP/LMTP listeners to try (name, address);
    `started`: when the gateway started (default: this process's start)."""
    issues: list[Issue] = []
    values: dict[str, float] = {}
    names = [m.name for m in config.mailbox]
    try:
        found = await figures(engine, [q.name for q in config.queue], mailboxes=names)
    except Exception as exc:  # noqa: BLE001 - any failure to read is the issue
        issues.append(Issue(code=Code.DATABASE_UNREACHABLE, severity=Severity.CRITICAL,
                            message=f"the database's figures cannot be read: {described(exc)}"))
    else:
        issues += _database_issues(config, found)
        issues += _mailbox_issues(config, found.mailboxes, found.at, started or STARTED)
        rows = [found.mailboxes[n] for n in names if n in found.mailboxes]
        values = {"dead_letters": found.dead, "pipeline_lag_seconds": round(found.lag_seconds, 1),
                  "pending": found.inbox.get("pending", 0),
                  "scheduler_late_seconds": round(found.scheduler_late_seconds, 1),
                  "outbox_failing": found.outbox_failing(),
                  "mailboxes_failing": sum(r.failing_since is not None for r in rows),
                  "mailboxes_behind": sum(r.behind for r in rows)}
    timeout = config.health.relay_timeout_seconds
    checks = [("relay", config.relay_address, Code.RELAY_UNREACHABLE)] if (
        config.relay_address) else []
    checks += [(name, address, Code.LISTENER_UNREACHABLE) for name, address in listeners]
    ours = TrustedProxies(config.smtp.proxy_protocol_from)
    answers = await asyncio.gather(*(
        greets(*address, timeout, proxied=code == Code.LISTENER_UNREACHABLE
               and ours.trusts(address[0]))
        for _, address, code in checks))
    for (name, (host, port), code), problem in zip(checks, answers, strict=True):
        if problem is not None:
            issues.append(Issue(code=code, severity=Severity.CRITICAL,
                                message=f"{name} {host}:{port}: {problem}"))
    issues += _rules_issues(rules_status) + _task_issues(tasks)
    return Report(issues=tuple(issues), figures=values)


class Reporter:
    """One process's health reports, each kept `CACHE_SECONDS`; concurrent
    callers share one report."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: tuple[float, Report] | None = None
        self._lock = asyncio.Lock()

    async def report(self, **kwargs: Any) -> Report:
        async with self._lock:
            if self._last is not None and self._clock() - self._last[0] < CACHE_SECONDS:
                return self._last[1]
            report = await build_report(**kwargs)
            self._last = (self._clock(), report)
            return report
