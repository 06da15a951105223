"""The health report (GET /v1/admin/health, `intake health`): each issue's code and
severity from a real database on both backends, the relay and listener checks
against real sockets, and the Nagios exit codes of the command."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.lifecycle import DeliveryState, ItemState
from gateway import cli
from gateway.health_report import Code, Severity, build_report
from gateway.pipeline.worker import Pipeline
from storage.engine import transaction, utcnow
from storage.inbox import NewItem, accept_many
from storage.models import inbox_items, outbox, requests
from storage.outbox import enqueue
from tests.helpers import AppClient, auth, make_config
from tests.process import free_port

MAIL = (b"From: Ann <ann@example.com>\r\nTo: support@localhost\r\nSubject: Printer\r\n"
        b"Message-ID: <%d@example.com>\r\n\r\nIt is on fire.\r\n")


async def _accept(engine: AsyncEngine, count: int = 1) -> list[int]:
    return await accept_many(engine, [NewItem("smtp", MAIL % n, {"rcpt_tos": ["support@localhost"]})
                                      for n in range(count)])


async def _codes(engine: AsyncEngine, db_url: str, **sections: dict[str, object]
                 ) -> dict[Code, Severity]:
    report = await build_report(config=make_config(db_url, **sections), engine=engine)
    return {issue.code: issue.severity for issue in report.issues}


async def test_health__an_empty_gateway_is_healthy(engine: AsyncEngine, db_url: str) -> None:
    report = await build_report(config=make_config(db_url), engine=engine)
    assert report.issues == ()
    assert (report.severity, report.status) == (Severity.OK, "healthy")
    assert report.nagios().startswith("INTAKE OK - no issues | dead_letters=0")


async def test_health__dead_letters_warn(engine: AsyncEngine, db_url: str) -> None:
    ids = await _accept(engine, 3)
    async with transaction(engine) as conn:
        await conn.execute(update(inbox_items).where(inbox_items.c.id.in_(ids[:2]))
                           .values(state=ItemState.DEAD, last_error="boom"))
    report = await build_report(config=make_config(db_url), engine=engine)
    assert [(i.code, i.severity, i.value) for i in report.issues] == [
        (Code.DEAD_LETTERS, Severity.WARNING, 2)]
    assert report.to_dict()["exit_code"] == 1
    assert "2 dead letters (2 inbox, 0 outbox)" in report.issues[0].message


async def test_health__pipeline_lag_warns_then_is_critical(engine: AsyncEngine,
                                                          db_url: str) -> None:
    [item] = await _accept(engine)
    # Just accepted: no lag worth reporting.
    assert Code.PIPELINE_LAG not in await _codes(engine, db_url)
    for waited, severity in ((400, Severity.WARNING), (2000, Severity.CRITICAL)):
        async with transaction(engine) as conn:
            await conn.execute(update(inbox_items).where(inbox_items.c.id == item).values(
                next_attempt_at=utcnow() - timedelta(seconds=waited)))
        assert (await _codes(engine, db_url))[Code.PIPELINE_LAG] == severity
    # An item due later (a retry's backoff) is not lag.
    async with transaction(engine) as conn:
        await conn.execute(update(inbox_items).where(inbox_items.c.id == item).values(
            next_attempt_at=utcnow() + timedelta(seconds=60)))
    assert Code.PIPELINE_LAG not in await _codes(engine, db_url)
    # Thresholds come from [health].
    async with transaction(engine) as conn:
        await conn.execute(update(inbox_items).where(inbox_items.c.id == item).values(
            next_attempt_at=utcnow() - timedelta(seconds=30)))
    assert (await _codes(engine, db_url, health={"pipeline_lag_seconds": 10})
            )[Code.PIPELINE_LAG] == Severity.WARNING


async def test_health__a_stranded_batch_is_lag(engine: AsyncEngine, db_url: str) -> None:
    """Items held by a worker whose lease ran out long ago (its process died)."""
    ids = await _accept(engine, 2)
    async with transaction(engine) as conn:
        await conn.execute(update(inbox_items).where(inbox_items.c.id.in_(ids)).values(
            state=ItemState.PROCESSING, lease_until=utcnow() - timedelta(seconds=500)))
    assert (await _codes(engine, db_url))[Code.PIPELINE_LAG] == Severity.WARNING


async def test_health__a_check_long_due_means_no_scheduler(engine: AsyncEngine,
                                                           db_url: str) -> None:
    config = make_config(db_url)
    await _accept(engine)
    assert await Pipeline(engine=engine, config=config).drain() == 1
    async with transaction(engine) as conn:
        await conn.execute(update(requests).values(
            next_check_at=utcnow() - timedelta(seconds=10)))
    assert Code.SCHEDULER_LATE not in await _codes(engine, db_url)
    async with transaction(engine) as conn:
        await conn.execute(update(requests).values(
            next_check_at=utcnow() - timedelta(seconds=900)))
    assert (await _codes(engine, db_url))[Code.SCHEDULER_LATE] == Severity.CRITICAL
    # A finished request's stale check is nobody's work.
    async with transaction(engine) as conn:
        await conn.execute(update(requests).values(status="resolved"))
    assert Code.SCHEDULER_LATE not in await _codes(engine, db_url)


async def test_health__failing_outbox_rows_warn(engine: AsyncEngine, db_url: str) -> None:
    async with transaction(engine) as conn:
        await enqueue(conn, "webhook", {"target": "crm"})
        await enqueue(conn, "webhook", {"target": "crm"})
    assert Code.OUTBOX_FAILING not in await _codes(engine, db_url)  # pending, not failing
    async with transaction(engine) as conn:
        await conn.execute(update(outbox).values(
            attempts=2, last_error="HTTP 502\nbody", next_attempt_at=utcnow()))
    report = await build_report(config=make_config(db_url), engine=engine)
    [issue] = report.issues
    assert (issue.code, issue.severity, issue.value) == (Code.OUTBOX_FAILING,
                                                         Severity.WARNING, 2)
    assert issue.message.endswith("last error: HTTP 502")
    async with transaction(engine) as conn:
        await conn.execute(update(outbox).values(state=DeliveryState.DEAD))
    assert await _codes(engine, db_url) == {Code.DEAD_LETTERS: Severity.WARNING}


@pytest.fixture
async def greeter() -> AsyncIterator[int]:
    """A port where something greets like an SMTP server."""
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 relay ESMTP\r\n")
        await writer.drain()
        await reader.readline()
        writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_health__the_relay_is_tried(engine: AsyncEngine, db_url: str,
                                          greeter: int) -> None:
    assert await _codes(engine, db_url, outbound={"relay": f"127.0.0.1:{greeter}"}) == {}
    closed = free_port()
    report = await build_report(config=make_config(db_url, outbound={
        "relay": f"127.0.0.1:{closed}"}), engine=engine)
    [issue] = report.issues
    assert (issue.code, issue.severity) == (Code.RELAY_UNREACHABLE, Severity.CRITICAL)
    assert f"relay 127.0.0.1:{closed}" in issue.message


async def test_health__a_reload_that_failed_and_a_task_down(engine: AsyncEngine,
                                                            db_url: str) -> None:
    from gateway.supervisor import TaskHealth, TaskState

    status = {"last_reload": {"ok": False, "errors": ["rules.toml:3: rule x: bad"]}}
    down = TaskHealth(name="scheduler", state=TaskState.RESTARTING, restarts=2,
                      progress_seconds_ago=40.0, last_error="OSError",
                      last_error_seconds_ago=1.0)
    report = await build_report(config=make_config(db_url), engine=engine,
                                rules_status=status, tasks=[down])
    assert {(i.code, i.severity) for i in report.issues} == {
        (Code.RULES_RELOAD_FAILED, Severity.WARNING), (Code.TASK_DOWN, Severity.CRITICAL)}
    assert report.severity == Severity.CRITICAL
    assert "rules.toml:3: rule x: bad" in report.nagios()


async def test_health__the_database_down_is_critical(db_url: str, tmp_path: Path) -> None:
    from storage.engine import create_engine

    broken = tmp_path / "broken.db"
    broken.write_bytes(b"not a database at all" * 100)
    url = ("postgresql+asyncpg://postgres@127.0.0.1:1/none" if "postgresql" in db_url
           else f"sqlite+aiosqlite:///{broken}")
    engine = create_engine(url, timeout=2.0)
    try:
        report = await build_report(config=make_config(url), engine=engine)
    finally:
        await engine.dispose()
    assert [i.code for i in report.issues] == [Code.DATABASE_UNREACHABLE]
    assert report.severity == Severity.CRITICAL


async def test_health__the_admin_endpoint(app_client: AppClient, admin_token: str,
                                          engine: AsyncEngine) -> None:
    ids = await _accept(engine)
    async with transaction(engine) as conn:
        await conn.execute(update(inbox_items).where(inbox_items.c.id.in_(ids))
                           .values(state=ItemState.DEAD))
    assert (await app_client.get("/v1/admin/health")).status == 401
    answer = await app_client.get("/v1/admin/health", headers=auth(admin_token))
    assert answer.status == 200
    body = await answer.json()
    assert (body["status"], body["exit_code"]) == ("warning", 1)
    assert [i["code"] for i in body["issues"]] == ["dead_letters"]
    assert body["figures"]["dead_letters"] == 1


def _config_file(tmp_path: Path, db_url: str, smtp_port: int, extra: str = "") -> Path:
    path = tmp_path / "intake.toml"
    path.write_text(f'[database]\nurl = "{db_url}"\n[smtp]\nlisten = "127.0.0.1:{smtp_port}"\n'
                    f"{extra}")
    return path


async def _command(*args: str) -> int:
    return await asyncio.to_thread(cli.main, list(args))  # it runs its own event loop


async def test_health__the_command_exit_codes(db_url: str, tmp_path: Path, engine: AsyncEngine,
                                              greeter: int,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Nagios: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; one line, or --json."""
    path = _config_file(tmp_path, db_url, greeter)
    assert await _command("--config", str(path), "health") == 0
    assert capsys.readouterr().out.startswith("INTAKE OK - no issues | ")
    ids = await _accept(engine)
    async with transaction(engine) as conn:
        await conn.execute(update(inbox_items).where(inbox_items.c.id.in_(ids))
                           .values(state=ItemState.DEAD))
    assert await _command("--config", str(path), "health", "--json") == 1
    body = json.loads(capsys.readouterr().out)
    assert (body["status"], [i["code"] for i in body["issues"]]) == ("warning", ["dead_letters"])
    # Nothing listens on the SMTP port: our own listener is down.
    path = _config_file(tmp_path, db_url, free_port())
    assert await _command("--config", str(path), "health") == 2
    assert "INTAKE CRITICAL - dead_letters: 1 dead letters" in capsys.readouterr().out
    # Without its configuration it cannot check.
    path = _config_file(tmp_path, db_url, greeter, "[health]\nno_such_key = 1\n")
    assert await _command("--config", str(path), "health") == 3


def test_health__nagios_line_stays_one_line_whatever_an_error_quotes() -> None:
    from gateway.health_report import Issue, Report
    report = Report(issues=(Issue(code=Code.RELAY_UNREACHABLE, severity=Severity.CRITICAL,
                                  message="relay said: 554 no | way\r\nX-Injected: 1"),),
                    figures={"pending": 3})
    line = report.nagios()
    assert "\n" not in line and "\r" not in line
    assert line.count("|") == 1 and line.endswith("| pending=3")


async def test_health__own_listener_greets_through_a_trusted_local_proxy(db_url: str) -> None:
    """With 127.0.0.1 a trusted proxy, the listener waits for a PROXY header:
    the check sends PROXY UNKNOWN first, as a load balancer's check does."""
    from gateway.health_report import greets
    from tests.helpers import running
    async with running(db_url, smtp={"proxy_protocol_from": ["127.0.0.1/32"],
                                     "command_timeout_seconds": 5}) as gateway:
        assert await greets("127.0.0.1", gateway.smtp_port, 3.0, proxied=True) is None
        assert await greets("127.0.0.1", gateway.smtp_port, 1.0) is not None
