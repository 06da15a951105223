"""IMAP mailboxes in the health report and /metrics, on both backends: the rows
are written as the fetcher writes them (storage.mailboxes.hold/report), then a
lease or a pass is aged by hand to stand for the time that went by."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Config
from gateway.health_report import Code, Report, Severity, build_report
from gateway.metrics_export import Exporter
from storage import mailboxes as store
from storage.engine import transaction, utcnow
from storage.models import mailboxes
from tests.helpers import make_config

HOLDER = "host:123:cafe"


def _mailbox(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "host": "127.0.0.1", "port": 1143, "tls": "none",
            "user": f"{name}@localhost", "password_env": "IMAP_PASSWORD", "after": "keep",
            **extra}


def _config(db_url: str, **health: float) -> Config:
    return make_config(db_url, mailbox=[_mailbox("support"), _mailbox("billing")],
                       health=dict(health))


async def _report(engine: AsyncEngine, config: Config, **kwargs: Any) -> Report:
    # `started`: now, unless a test says otherwise (a row-less mailbox is not late yet).
    return await build_report(config=config, engine=engine,
                              **{"started": utcnow(), **kwargs})


def _mailbox_issues(report: Report) -> list[tuple[Code, Severity, str]]:
    return [(i.code, i.severity, i.message) for i in report.issues
            if i.code in (Code.MAILBOX_FAILING, Code.MAILBOX_STALLED)]


async def _age(engine: AsyncEngine, name: str, **seconds_ago: float) -> None:
    """Move the row's times into the past: `lease_until`, `updated_at`, ..."""
    now = utcnow()
    async with transaction(engine) as conn:
        await conn.execute(update(mailboxes).where(mailboxes.c.name == name).values(
            {column: now - timedelta(seconds=ago) for column, ago in seconds_ago.items()}))


async def _working(engine: AsyncEngine, *names: str, behind: int = 0) -> None:
    for name in names:
        assert await store.hold(engine, name, HOLDER, 30)
        await store.report(engine, name, connected=True, behind=behind)


async def test_mailbox_health__failing_is_critical_then_clears(engine: AsyncEngine,
                                                                db_url: str) -> None:
    config = _config(db_url)
    await _working(engine, "support", "billing")
    report = await _report(engine, config)
    assert _mailbox_issues(report) == []
    assert report.severity == Severity.OK
    assert (report.figures["mailboxes_failing"], report.figures["mailboxes_behind"]) == (0, 0)

    # A server's words, hostile: a line break, a `|` and a terminal escape.
    error = "NO [AUTHENTICATIONFAILED] Authentication failed | x\r\nX-Injected: 1\x1b[2J"
    await store.report(engine, "support", connected=False, error=error)
    await store.report(engine, "support", connected=False, error="ConnectionRefusedError: "
                       "Connect call failed ('127.0.0.1', 1143)")
    report = await _report(engine, config)
    [(code, severity, message)] = _mailbox_issues(report)
    assert (code, severity, report.severity) == (
        Code.MAILBOX_FAILING, Severity.CRITICAL, Severity.CRITICAL)
    assert message.startswith("mailbox support has failed since ")
    assert message.endswith("ConnectionRefusedError: Connect call failed ('127.0.0.1', 1143)")
    assert report.figures["mailboxes_failing"] == 1
    assert report.to_dict()["exit_code"] == 2

    # The first failure's time stays while the failures go on.
    await _age(engine, "support", failing_since=600)
    await store.report(engine, "support", connected=False, error=error)
    report = await _report(engine, config)
    [issue] = [i for i in report.issues if i.code == Code.MAILBOX_FAILING]
    assert issue.value is not None and 599 <= issue.value < 700
    assert "Authentication failed" in issue.message
    line = report.nagios()
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert line.count("|") == 1 and "mailbox_failing: mailbox support" in line

    # A pass that works clears it, and says how far behind the mailbox is.
    await store.report(engine, "support", connected=True, behind=7)
    await store.report(engine, "billing", connected=True, behind=5)
    report = await _report(engine, config)
    assert _mailbox_issues(report) == []
    assert (report.figures["mailboxes_failing"], report.figures["mailboxes_behind"]) == (0, 12)


async def test_mailbox_health__fetched_by_nobody_is_stalled(engine: AsyncEngine,
                                                            db_url: str) -> None:
    config = _config(db_url)
    await _working(engine, "support", "billing")
    # The holder died 10 minutes ago: under the 15 minutes' threshold.
    await _age(engine, "support", lease_until=600, updated_at=610)
    assert _mailbox_issues(await _report(engine, config)) == []
    # Past it: a warning naming the mailbox; the other one is fine.
    await _age(engine, "support", lease_until=1000, updated_at=1010)
    report = await _report(engine, config)
    [(code, severity, message)] = _mailbox_issues(report)
    assert (code, severity, report.severity) == (
        Code.MAILBOX_STALLED, Severity.WARNING, Severity.WARNING)
    assert message.startswith("mailbox support is fetched by no process: none has held it "
                              "since ")
    # The threshold is [health] mailbox_stale_seconds.
    await _age(engine, "support", lease_until=120, updated_at=130)
    assert _mailbox_issues(await _report(engine, config)) == []
    assert [c for c, _, _ in _mailbox_issues(
        await _report(engine, _config(db_url, mailbox_stale_seconds=60)))] == [
        Code.MAILBOX_STALLED]
    # A clean stop (released, no lease at all) counts from the last pass.
    await store.release(engine, "support", HOLDER)
    await _age(engine, "support", updated_at=1000)
    [(code, _, message)] = _mailbox_issues(await _report(engine, config))
    assert code == Code.MAILBOX_STALLED and "fetched by no process" in message
    # Taken over and a pass done: nothing to say.
    await _working(engine, "support")
    assert _mailbox_issues(await _report(engine, config)) == []


async def test_mailbox_health__held_without_a_pass_is_stalled(engine: AsyncEngine,
                                                              db_url: str) -> None:
    """A holder that renews its lease but finishes no pass (stuck somewhere)."""
    config = _config(db_url)
    await _working(engine, "support", "billing")
    await _age(engine, "billing", updated_at=2000)
    assert await store.hold(engine, "billing", HOLDER, 30)  # the lease still renewed
    [(code, severity, message)] = _mailbox_issues(await _report(engine, config))
    assert (code, severity) == (Code.MAILBOX_STALLED, Severity.WARNING)
    assert message.startswith(f"mailbox billing is held by {HOLDER} but its last pass was at ")
    # A poll longer than the threshold is no stall: a pass comes every poll_seconds.
    slow = make_config(db_url, mailbox=[_mailbox("support"),
                                        _mailbox("billing", poll_seconds=1800)])
    assert _mailbox_issues(await _report(engine, slow)) == []


async def test_mailbox_health__never_fetched_counts_from_the_start(engine: AsyncEngine,
                                                                   db_url: str) -> None:
    config = _config(db_url)
    await _working(engine, "billing")
    # No row for `support` yet: not late just after the start...
    assert _mailbox_issues(await _report(engine, config)) == []
    # ...but after the threshold since the process started.
    report = await _report(engine, config, started=utcnow() - timedelta(seconds=1000))
    [(code, severity, message)] = _mailbox_issues(report)
    assert (code, severity) == (Code.MAILBOX_STALLED, Severity.WARNING)
    assert message.startswith("mailbox support has not been fetched yet")
    # Held (the row made by hold()) but no pass reported yet: the same.
    assert await store.hold(engine, "support", HOLDER, 30)
    report = await _report(engine, config, started=utcnow() - timedelta(seconds=1000))
    assert [c for c, _, _ in _mailbox_issues(report)] == [Code.MAILBOX_STALLED]
    # A mailbox no longer configured is nobody's concern.
    await store.report(engine, "gone", connected=False, error="boom")
    only_billing = make_config(db_url, mailbox=[_mailbox("billing")])
    report = await _report(engine, only_billing)
    assert _mailbox_issues(report) == [] and report.figures["mailboxes_failing"] == 0


def _samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples}


async def test_mailbox_metrics__gauges_per_mailbox(engine: AsyncEngine, db_url: str) -> None:
    config = make_config(db_url, mailbox=[_mailbox("support"), _mailbox("billing"),
                                          _mailbox("archive")],
                         metrics={"database_seconds": 0.01})
    await _working(engine, "support", behind=4)
    async with transaction(engine) as conn:
        await conn.execute(update(mailboxes).where(mailboxes.c.name == "support").values(
            fetched=42, last_fetch_at=utcnow() - timedelta(seconds=30)))
    assert await store.hold(engine, "billing", HOLDER, 30)
    await store.report(engine, "billing", connected=False, error="NO LOGIN failed")
    exporter = Exporter(config=config, engine=engine, listeners=[])
    try:
        body, _ = await exporter.exposition()
    finally:
        await exporter.stop()
    samples = _samples(body)

    def value(name: str, mailbox: str) -> float | None:
        return samples.get((name, (("mailbox", mailbox),)))

    assert [value("intake_mailbox_connected", m) for m in ("support", "billing", "archive")
            ] == [1, 0, 0]
    assert [value("intake_mailbox_failing", m) for m in ("support", "billing", "archive")
            ] == [0, 1, 0]
    assert [value("intake_mailbox_behind", m) for m in ("support", "billing", "archive")
            ] == [4, 0, 0]
    assert [value("intake_mailbox_fetched_total", m) for m in ("support", "billing", "archive")
            ] == [42, 0, 0]
    fetched_at = value("intake_mailbox_last_fetch_timestamp_seconds", "support")
    assert fetched_at is not None
    assert abs(fetched_at - (utcnow().timestamp() - 30)) < 10
    # Never fetched: no time at all rather than 1970.
    assert value("intake_mailbox_last_fetch_timestamp_seconds", "billing") is None

    # The holder dies: its `connected` stays in the row, the lease runs out.
    await _age(engine, "support", lease_until=5)
    exporter = Exporter(config=config, engine=engine, listeners=[])
    try:
        samples = _samples((await exporter.exposition())[0])
    finally:
        await exporter.stop()
    assert value("intake_mailbox_connected", "support") == 0


async def test_report__an_error_quoting_a_nul_is_stored(engine: AsyncEngine) -> None:
    from storage import mailboxes as store

    await store.report(engine, "nul", connected=False,
                       error='token endpoint refused (400 bad\x00grant\r\nX: y)')
    [state] = await store.states(engine, ["nul"])
    assert state.last_error == "token endpoint refused (400 bad grant\r\nX: y)"
    assert state.failing_since is not None
