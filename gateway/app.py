"""Composition root: one process with the SMTP/LMTP listeners, the HTTP API
and the pipeline workers, built in one place and started and stopped in the
right order.

`build()` makes every part and hands each its collaborators; nothing runs yet.
`Gateway.start()` and `Gateway.stop()` own the background tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Config
from gateway.delivery.worker import OutboxWorker
from gateway.http.app import init_app
from gateway.pipeline.scheduler import Scheduler
from gateway.pipeline.worker import Pipeline
from gateway.rules_in_force import RulesHolder
from gateway.signals import WorkSignals
from gateway.smtp import SmtpListener
from routing.api import warm_up
from storage.engine import create_engine, is_sqlite
from storage.inbox import InboxWriter
from storage.migrate import upgrade
from storage.notify import listen
from storage.processing import release_claims

log = logging.getLogger("intake")


@dataclass(kw_only=True)
class Gateway:
    """The parts of one process, made by `build()`; its tasks are its own."""

    config: Config
    engine: AsyncEngine
    rules: RulesHolder
    signals: WorkSignals
    writer: InboxWriter
    pipeline: Pipeline
    outbox: OutboxWorker
    scheduler: Scheduler | None  # None: this process runs no workers
    smtp: SmtpListener
    lmtp: SmtpListener | None
    runner: web.AppRunner
    pipeline_workers: int
    outbox_workers: int
    smtp_port: int = 0
    lmtp_port: int = 0
    http_port: int = 0
    # Cancelled at stop; the workers are first let finish what they hold.
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, init=False, repr=False)
    _workers: list[asyncio.Task[None]] = field(default_factory=list, init=False, repr=False)

    @property
    def http_url(self) -> str:
        return f"http://{self.config.http_address[0]}:{self.http_port}"

    async def start(self) -> None:
        """Prepare the database, start the background tasks, then listen."""
        config, engine = self.config, self.engine
        if config.database.migrate_on_start:
            await upgrade(engine)
        if is_sqlite(engine):
            # The embedded database serves one process: claims left over are from
            # a crash of this process, so there is no lease to wait out.
            released = await release_claims(engine)
            if released:
                log.info("took back %d inbox items claimed before a crash", released)
        warm_up(self.rules.rules)  # compile and load the language model before traffic

        # One writer task: while it commits, the next batch gathers, so batches grow
        # with load (measured: one task beats two on PostgreSQL; SQLite has one writer).
        self._task(self.writer.run())
        self._task(self.rules.watch(config.pipeline.reload_poll_seconds))
        if self.scheduler is not None:
            self._task(self.scheduler.run())
        # Other processes' new work wakes this process's waiting agents too.
        self._task(listen(config.database.url, self.signals.signal))
        for _ in range(self.pipeline_workers):
            self._workers.append(asyncio.create_task(self.pipeline.run_worker()))
        for _ in range(self.outbox_workers):
            self._workers.append(asyncio.create_task(self.outbox.run()))

        await self.runner.setup()
        host, port = config.http_address
        site = web.TCPSite(self.runner, host, port)
        await site.start()
        self.http_port = self.runner.addresses[0][1]
        self.smtp_port = (await self.smtp.start(*config.smtp_address))[1]
        if self.lmtp is not None and config.lmtp_address:
            self.lmtp_port = (await self.lmtp.start(*config.lmtp_address))[1]
        log.info("intake ready: smtp %s:%d, http %s, database %s", config.smtp_address[0],
                 self.smtp_port, self.http_url, engine.url.render_as_string())

    async def stop(self, *, grace: float = 10.0) -> None:
        """Stop accepting, finish what is in flight (bounded), drain the workers."""
        listeners = [self.smtp] + ([self.lmtp] if self.lmtp else [])
        await asyncio.gather(*(listener.stop(grace) for listener in listeners),
                             self.runner.cleanup())
        self.pipeline.stop()
        self.outbox.stop()
        if self._workers:
            done, pending = await asyncio.wait(self._workers, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.outbox.close()
        await self.engine.dispose()
        log.info("intake stopped")

    def _task(self, work: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.create_task(work))


def build(config: Config, *, engine: AsyncEngine | None = None,
          workers: bool = True) -> Gateway:
    """Every part of one process, each given what it calls; nothing runs yet."""
    rules = RulesHolder.load(config)  # a bad rule stops start-up before anything listens
    engine = engine or create_engine(config.database.url, pool_size=config.database.pool_size,
                                     timeout=config.database.timeout_seconds)
    signals = WorkSignals()
    outbox = OutboxWorker(engine=engine, config=config)
    pipeline = Pipeline(engine=engine, config=config, rules=rules,
                        on_new_work=signals.signal, on_stored=outbox.wake)
    writer = InboxWriter(engine=engine, timeout=config.database.timeout_seconds,
                         on_commit=pipeline.wake)
    app = init_app(config, engine=engine, writer=writer, rules=rules, signals=signals)
    return Gateway(
        config=config, engine=engine, rules=rules, signals=signals, writer=writer,
        pipeline=pipeline, outbox=outbox,
        scheduler=(Scheduler(engine=engine, rules=rules,
                             interval=config.pipeline.scheduler_seconds) if workers else None),
        smtp=SmtpListener(config=config, submit=writer.submit),
        lmtp=(SmtpListener(config=config, submit=writer.submit, lmtp=True)
              if config.lmtp_address else None),
        runner=web.AppRunner(app, shutdown_timeout=config.http.shutdown_seconds,
                             access_log=None),
        pipeline_workers=config.pipeline.workers if workers else 0,
        # With nothing to deliver to, rows wait in the outbox (visible) until configured.
        outbox_workers=config.outbound.workers if workers and outbox.has_work else 0,
    )


async def start(config: Config, *, engine: AsyncEngine | None = None,
                workers: bool = True) -> Gateway:
    gateway = build(config, engine=engine, workers=workers)
    await gateway.start()
    return gateway


async def stop(gateway: Gateway, *, grace: float = 10.0) -> None:
    await gateway.stop(grace=grace)


async def serve(config: Config) -> None:
    """Run until SIGTERM or SIGINT."""
    gateway = await start(config)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, gateway.rules.reload)
    try:
        await stopping.wait()
        log.info("shutting down")
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
        await stop(gateway, grace=config.http.shutdown_seconds)
