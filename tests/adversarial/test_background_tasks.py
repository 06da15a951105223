"""Background work that dies or tells the wrong story (issue 12, class 10).

Every background task survives any exception: it is logged at once and
started again with backoff. /healthz names a task that is down or has made no
progress with work waiting; /readyz says whether the inbox takes a write now
(not `SELECT 1`), with one shared check a second. The outbox keeps delivering
when recording an outcome fails, and events are fanned out in batches.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiosmtpd.smtp import SMTP
from sqlalchemy import event, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

import gateway.delivery.worker as delivery_worker
import gateway.health as health_module
import storage.notify as notify_module
from domain.lifecycle import DeliveryState
from gateway.app import Gateway, start, stop
from gateway.config import Config
from gateway.delivery.worker import OutboxWorker
from gateway.pipeline.worker import Pipeline
from gateway.rules_in_force import RulesHolder
from gateway.supervisor import Heartbeat, Supervisor, TaskState
from storage.errors import StorageUnavailable
from storage.models import outbox
from storage.outbox import enqueue, rows_for
from tests.helpers import AppClient, auth, make_config, wait_for

BODY = {"requester": {"email": "bg@example.com"}, "subject": "background", "body": "x"}


async def _true_within(predicate: Callable[[], Awaitable[bool]], seconds: float) -> None:
    await wait_for(predicate, timeout=seconds)


# -- the supervisor alone ---------------------------------------------------


async def test_supervisor__restarts_a_task_that_raises_and_logs_it_at_once(
        caplog: pytest.LogCaptureFixture) -> None:
    runs: list[float] = []

    async def flaky(beat: Heartbeat) -> None:
        runs.append(time.monotonic())
        if len(runs) < 3:
            raise RuntimeError(f"boom {len(runs)}")
        beat.beat()
        await asyncio.Event().wait()

    supervisor = Supervisor(backoff_initial=0.01, backoff_max=0.05)
    with caplog.at_level(logging.ERROR, logger="intake.tasks"):
        supervisor.start("flaky", flaky)

        async def third_run() -> bool:
            return len(runs) >= 3

        await _true_within(third_run, 5)
        await asyncio.sleep(0.05)
        (report,) = supervisor.report()
        assert (report.state, report.restarts, report.last_error) == (
            TaskState.RUNNING, 2, "RuntimeError")
        await supervisor.stop(grace=1)
    died = [r for r in caplog.records if "died" in r.getMessage()]
    assert [r.exc_info[1].args[0] for r in died if r.exc_info] == ["boom 1", "boom 2"]


@pytest.mark.parametrize("how", ["returns", "cancelled", "raises"])
async def test_supervisor__restarts_a_task_that_ends_unasked(how: str) -> None:
    runs = 0

    async def ends(beat: Heartbeat) -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            if how == "returns":
                return
            if how == "cancelled":
                raise asyncio.CancelledError  # e.g. a stray cancel inside a library
            raise KeyError("x")
        await asyncio.Event().wait()

    supervisor = Supervisor(backoff_initial=0.01, backoff_max=0.05)
    supervisor.start("ends", ends)

    async def restarted() -> bool:
        return runs == 2 and supervisor.state_of("ends") == TaskState.RUNNING

    await _true_within(restarted, 5)
    await supervisor.stop(grace=1)
    assert supervisor.state_of("ends") == TaskState.FINISHED


async def test_supervisor__a_task_that_cannot_even_start_is_retried() -> None:
    calls = 0

    def starts(beat: Heartbeat) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TypeError("not even a coroutine")
        return asyncio.Event().wait()

    supervisor = Supervisor(backoff_initial=0.01, backoff_max=0.05)
    supervisor.start("starts", starts)

    async def second() -> bool:
        return calls == 2 and supervisor.state_of("starts") == TaskState.RUNNING

    await _true_within(second, 5)
    await supervisor.stop(grace=1)


async def test_supervisor__a_task_killed_from_outside_is_restarted() -> None:
    started = 0

    async def loop(beat: Heartbeat) -> None:
        nonlocal started
        started += 1
        while True:
            beat.beat()
            await asyncio.sleep(0.01)

    supervisor = Supervisor(backoff_initial=0.3, backoff_max=0.3)
    supervisor.start("loop", loop)
    await asyncio.sleep(0.05)
    task = supervisor.running_task("loop")
    assert task is not None
    task.cancel()
    await asyncio.sleep(0.05)
    assert supervisor.state_of("loop") == TaskState.RESTARTING  # down, and shown so

    async def back() -> bool:
        return started == 2 and supervisor.state_of("loop") == TaskState.RUNNING

    await _true_within(back, 5)
    await supervisor.stop(grace=1)


async def test_supervisor__no_progress_is_stalled_unless_storage_is_at_fault() -> None:
    stuck_beat: list[Heartbeat] = []

    async def stuck(beat: Heartbeat) -> None:
        stuck_beat.append(beat)
        await asyncio.Event().wait()

    async def storage_down(beat: Heartbeat) -> None:
        while True:
            beat.failed(StorageUnavailable("database down"))
            await asyncio.sleep(0.02)

    supervisor = Supervisor(stall_seconds=0.3)
    supervisor.start("stuck", stuck)
    supervisor.start("storage-down", storage_down)
    await asyncio.sleep(0.5)
    states = {t.name: t for t in supervisor.report()}
    assert states["stuck"].state == TaskState.STALLED and not states["stuck"].healthy
    # Restarting the process would not bring the database back: shown, not failing.
    assert states["storage-down"].state == TaskState.WAITING
    assert states["storage-down"].healthy
    assert states["storage-down"].last_error == "StorageUnavailable"
    stuck_beat[0].beat()
    assert supervisor.state_of("stuck") == TaskState.RUNNING
    await supervisor.stop(grace=1)


# -- the gateway's own tasks ------------------------------------------------


@pytest.fixture
async def supervised(config: Config) -> AsyncIterator[Gateway]:
    """A gateway whose restarts wait long enough to be seen, and that stalls fast."""
    gateway = await start(config, supervisor=Supervisor(stall_seconds=1.0,
                                                        backoff_initial=1.5,
                                                        backoff_max=1.5))
    yield gateway
    await stop(gateway, grace=3)


async def test_healthz__names_a_killed_task_while_it_is_down(
        supervised: Gateway, engine: AsyncEngine) -> None:
    gateway = supervised
    names = {t.name for t in gateway.supervisor.report()}
    assert {"inbox-writer", "pipeline-1", "outbox-1", "scheduler"} <= names
    async with aiohttp.ClientSession(base_url=gateway.http_url) as http:
        async with http.get("/healthz") as resp:
            assert resp.status == 200
            assert (await resp.json())["tasks"]["outbox-1"]["state"] == "running"
        task = gateway.supervisor.running_task("outbox-1")
        assert task is not None
        task.cancel()  # killed
        await asyncio.sleep(0.05)
        async with http.get("/healthz") as resp:
            assert resp.status == 503
            assert resp.content_type == "application/problem+json"
            body = await resp.json()
        assert body["unhealthy"] == ["outbox-1"]
        assert body["tasks"]["outbox-1"]["state"] == "restarting"
        assert "outbox-1" in body["detail"]

        async def healthy() -> bool:
            async with http.get("/healthz") as resp:
                return resp.status == 200

        await wait_for(healthy, timeout=10)
        assert (await _health(http))["tasks"]["outbox-1"]["restarts"] == 1

    # ...and the restarted worker works: an event is fanned out.
    async with engine.begin() as conn:
        await enqueue(conn, "event", {"event": "created", "reference": "X", "at": "now",
                                      "data": {}})

    async def fanned_out() -> bool:
        rows = await rows_for(engine)
        return bool(rows) and all(r["state"] == DeliveryState.DONE for r in rows)

    await wait_for(fanned_out, timeout=10)


async def _health(http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get("/healthz") as resp:
        return dict(await resp.json())


async def test_healthz__names_a_stalled_pipeline_then_recovers(
        config: Config, admin_token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = asyncio.Event()
    original = Pipeline.process_batch

    async def hangs(self: Pipeline, items: Any) -> None:
        await gate.wait()  # a worker stuck inside a batch, holding no database lock
        await original(self, items)

    monkeypatch.setattr(Pipeline, "process_batch", hangs)
    gateway = await start(config, supervisor=Supervisor(stall_seconds=1.0))
    try:
        async with aiohttp.ClientSession(base_url=gateway.http_url) as http:
            headers = auth(admin_token)
            async with http.post("/v1/requests", json=BODY, headers=headers) as resp:
                assert resp.status == 201  # claimed by the one worker, which hangs
            await asyncio.sleep(0.3)
            async with http.post("/v1/requests", json=BODY, headers=headers) as resp:
                assert resp.status == 201  # waits behind it

            async def stalled() -> bool:
                async with http.get("/healthz") as resp:
                    return resp.status == 503

            await wait_for(stalled, timeout=10)
            body = await _health(http)
            assert body["unhealthy"] == ["pipeline-1"]
            assert body["tasks"]["pipeline-1"]["state"] == "stalled"
            assert body["tasks"]["outbox-1"]["state"] == "running"
            gate.set()

            async def recovered() -> bool:
                async with http.get("/healthz") as resp:
                    return resp.status == 200

            await wait_for(recovered, timeout=10)
    finally:
        gate.set()
        await stop(gateway, grace=3)


# -- readiness ---------------------------------------------------------------


class InboxLock:
    """Another connection holding the inbox table so that no write gets through."""

    def __init__(self, db_url: str) -> None:
        self.url = make_url(db_url)
        self._pg: asyncpg.Connection | None = None
        self._sqlite: sqlite3.Connection | None = None

    async def take(self) -> None:
        if self.url.get_backend_name() == "postgresql":
            dsn = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._pg = await asyncpg.connect(dsn)
            await self._pg.execute("BEGIN")
            await self._pg.execute("LOCK TABLE inbox_items IN ACCESS EXCLUSIVE MODE")
        else:
            def lock() -> sqlite3.Connection:
                conn = sqlite3.connect(str(self.url.database), timeout=10,
                                       isolation_level=None, check_same_thread=False)
                conn.execute("BEGIN IMMEDIATE")  # the write lock; readers go on (WAL)
                return conn

            self._sqlite = await asyncio.to_thread(lock)

    async def release(self) -> None:
        if self._pg is not None:
            await self._pg.execute("ROLLBACK")
            await self._pg.close()
        if self._sqlite is not None:
            self._sqlite.execute("ROLLBACK")
            self._sqlite.close()


async def test_readyz__503_while_the_inbox_table_is_locked_then_200(
        gateway: Gateway, http: aiohttp.ClientSession, db_url: str) -> None:
    async with http.get("/readyz") as resp:
        assert resp.status == 200
        before = await resp.json()
    lock = InboxLock(db_url)
    await lock.take()
    try:
        await asyncio.sleep(health_module.READY_CACHE_SECONDS + 0.1)  # past the cached answer
        started = time.monotonic()
        async with http.get("/readyz") as resp:
            elapsed = time.monotonic() - started
            assert resp.status == 503  # PostgreSQL: SELECT 1 answered 200 here
            assert resp.headers["Retry-After"].isdigit()
            body = await resp.json()
        assert before["checks"] == {"inbox-writer": "running", "database": "writable"}
        assert body["failing"] == ["database"]
        assert "lock" in body["checks"]["database"]
        # Bounded by the check's own short timeout, not by the database's 3 s one.
        assert elapsed < health_module.READY_TIMEOUT_SECONDS + 1.5
    finally:
        await lock.release()

    async def ready() -> bool:
        async with http.get("/readyz") as resp:
            return resp.status == 200

    await wait_for(ready, timeout=10)


async def test_readyz__concurrent_probes_share_one_check_a_second(
        app_client: AppClient, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    original = health_module.writable

    async def counted(engine: AsyncEngine) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        await original(engine)

    monkeypatch.setattr(health_module, "writable", counted)

    async def probe() -> int:
        async with app_client.get("/readyz") as resp:
            return resp.status

    assert await asyncio.gather(*(probe() for _ in range(50))) == [200] * 50
    assert calls == 1
    await asyncio.sleep(health_module.READY_CACHE_SECONDS + 0.1)
    assert await probe() == 200
    assert calls == 2


# -- the outbox worker ----------------------------------------------------------


class Sink:
    """An SMTP relay on 127.0.0.1 in this event loop that keeps what it is sent."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(envelope.original_content)
        return "250 OK"

    async def up(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: SMTP(self, hostname="sink"),
                                                "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


def mail(i: int) -> dict[str, Any]:
    return {"purpose": "test", "message": {
        "subject": f"[#T-{i}] Re: yours", "text": "We have it.\n",
        "from_address": "support@localhost", "from_name": "Support",
        "to": [{"name": "", "address": f"c{i}@example.com"}], "cc": [],
        "message_id": f"t-{i}@localhost", "in_reply_to": None, "references": [],
        "auto_submitted": "auto-replied"}}


@pytest.mark.parametrize("failure", [StorageUnavailable("connection reset"),
                                     RuntimeError("a bug, once")])
async def test_outbox__keeps_delivering_when_recording_an_outcome_fails(
        db_url: str, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch,
        failure: Exception) -> None:
    sink = Sink()
    await sink.up()
    config = make_config(db_url, outbound={"relay": f"127.0.0.1:{sink.port}"})
    async with engine.begin() as conn:
        for i in range(5):
            await enqueue(conn, "email", mail(i))
    original = delivery_worker.mark_done
    failures = [failure]

    async def fails_once(*args: Any, **kwargs: Any) -> None:
        if failures:
            raise failures.pop()  # the database cut just after the first send
        await original(*args, **kwargs)

    monkeypatch.setattr(delivery_worker, "mark_done", fails_once)
    worker = OutboxWorker(engine=engine, config=config)
    task = asyncio.create_task(worker.run())
    try:
        async def all_done() -> bool:
            rows = await rows_for(engine)
            return all(r["state"] == DeliveryState.DONE for r in rows) or task.done()

        await wait_for(all_done, timeout=15)
        assert not task.done(), "the outbox worker died"
        assert len(sink.received) == 5  # each once: the first was not sent again
    finally:
        worker.stop()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)
        await worker.close()
        sink.close()


async def test_fan_out__a_burst_of_events_goes_in_batches(
        db_url: str, engine: AsyncEngine) -> None:
    events = 1000
    async with engine.begin() as conn:
        for i in range(events):
            await enqueue(conn, "event", {"event": "created", "reference": f"R{i}",
                                          "at": "now", "data": {"n": i}})
    commits = 0

    def on_commit(_conn: Any) -> None:
        nonlocal commits
        commits += 1

    event.listen(engine.sync_engine, "commit", on_commit)
    worker = OutboxWorker(engine=engine, config=make_config(db_url))
    started = time.monotonic()
    task = asyncio.create_task(worker.run())
    try:
        async def all_done() -> bool:
            async with engine.connect() as conn:
                pending = (await conn.execute(select(outbox.c.id).where(
                    outbox.c.state != DeliveryState.DONE).limit(1))).first()
            return pending is None

        await wait_for(all_done, timeout=60)
        seconds = time.monotonic() - started
    finally:
        worker.stop()
        await asyncio.wait_for(task, 5)
        event.remove(engine.sync_engine, "commit", on_commit)
    # One claim and one fan-out transaction per batch, a few idle polls; one
    # transaction per event (the old way) made more than 1,000.
    assert commits <= 20, commits
    print(f"fanned out {events} events in {seconds:.2f} s ({events / seconds:.0f} rows/s) "
          f"with {commits} commits")


async def test_fan_out__each_event_becomes_one_row_per_target_once(
        db_url: str, engine: AsyncEngine) -> None:
    config = make_config(db_url, webhook=[
        {"name": "crm", "url": "https://crm.example.com/hook", "events": ["created"],
         "secret": "s" * 32},
        {"name": "all", "url": "https://all.example.com/hook", "events": ["*"],
         "secret": "t" * 32}])
    async with engine.begin() as conn:
        for i, name in enumerate(["created", "escalated", "created"]):
            await enqueue(conn, "event", {"event": name, "reference": f"R{i}",
                                          "at": "now", "data": {"n": i}})
    worker = OutboxWorker(engine=engine, config=config)
    assert await worker.fan_out_events() == 3
    assert await worker.fan_out_events() == 0
    rows = await rows_for(engine)
    made = sorted((r["kind"], r["payload"]["target"], r["payload"]["body"]["reference"],
                   r["dedupe_key"]) for r in rows if r["kind"] != "event")
    assert made == [("webhook", "all", "R0", "1:webhook:all"),
                    ("webhook", "all", "R1", "2:webhook:all"),
                    ("webhook", "all", "R2", "3:webhook:all"),
                    ("webhook", "crm", "R0", "1:webhook:crm"),
                    ("webhook", "crm", "R2", "3:webhook:crm")]
    assert {r["state"] for r in rows if r["kind"] == "event"} == {DeliveryState.DONE}
    await worker.close()


# -- the other loops ------------------------------------------------------------


async def test_rules_watch__survives_a_pass_that_raises(
        tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "intake.toml"
    path.write_text('[[queue]]\nname = "general"\n')
    holder = RulesHolder.load(make_config(db_url).model_copy(update={"source": str(path)}))
    calls = 0
    original = RulesHolder.reload

    def reload(self: RulesHolder, text: str | None = None) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in one pass")
        return original(self, text)

    monkeypatch.setattr(RulesHolder, "reload", reload)
    task = asyncio.create_task(holder.watch(0.02))
    try:
        path.write_text('[[queue]]\nname = "general"\n[[queue]]\nname = "one"\n')

        async def first() -> bool:
            return calls >= 1

        await wait_for(first, timeout=5)
        path.write_text('[[queue]]\nname = "general"\n[[queue]]\nname = "two"\n')

        async def reloaded() -> bool:
            return holder.queues == ["general", "two"] or task.done()

        await wait_for(reloaded, timeout=5)
        assert not task.done(), "the rules watcher died"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_listen__survives_any_exception(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real_connect = asyncpg.connect
    failures = [RuntimeError("not an OSError"), ValueError("nor a PostgresError")]

    async def flaky_connect(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real_connect(*args, **kwargs)

    monkeypatch.setattr(notify_module.asyncpg, "connect", flaky_connect)
    monkeypatch.setattr(notify_module, "RECONNECT_INITIAL_SECONDS", 0.01, raising=False)
    heard: list[str] = []
    task = asyncio.create_task(notify_module.listen(pg_url, heard.append))
    try:
        dsn = make_url(pg_url).set(drivername="postgresql").render_as_string(
            hide_password=False)

        async def heard_it() -> bool:
            if task.done():
                return True
            conn = await real_connect(dsn)
            try:
                await conn.execute(f"NOTIFY {notify_module.CHANNEL}, 'general'")
            finally:
                await conn.close()
            return bool(heard)

        await wait_for(heard_it, timeout=10, interval=0.2)
        assert not task.done(), "the LISTEN loop died"
        assert heard[0] == "general"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
