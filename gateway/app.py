"""Composition root: one process with the SMTP/LMTP listeners, the HTTP API
and the pipeline workers, started and stopped in the right order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Config
from gateway.delivery.worker import OutboxWorker
from gateway.http.app import build_app
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


@dataclass
class Gateway:
    config: Config
    engine: AsyncEngine
    writer: InboxWriter
    pipeline: Pipeline
    smtp: SmtpListener
    lmtp: SmtpListener | None
    runner: web.AppRunner
    outbox: OutboxWorker | None = None
    smtp_port: int = 0
    lmtp_port: int = 0
    http_port: int = 0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _workers: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def http_url(self) -> str:
        return f"http://{self.config.http_address[0]}:{self.http_port}"


async def start(config: Config, *, engine: AsyncEngine | None = None,
                workers: bool = True) -> Gateway:
    rules = RulesHolder.load(config)  # a bad rule stops start-up before anything listens
    engine = engine or create_engine(config.database.url, pool_size=config.database.pool_size,
                                     timeout=config.database.timeout_seconds)
    if config.database.migrate_on_start:
        await upgrade(engine)
    if is_sqlite(engine):
        # The embedded database serves one process: claims left over are from
        # a crash of this process, so there is no lease to wait out.
        released = await release_claims(engine)
        if released:
            log.info("took back %d inbox items claimed before a crash", released)
    warm_up(rules.rules)  # compile and load the language model before traffic
    pipeline = Pipeline(engine, config, rules)
    writer = InboxWriter(engine, timeout=config.database.timeout_seconds,
                         on_commit=pipeline.wake)
    smtp = SmtpListener(config, writer.submit)
    lmtp = SmtpListener(config, writer.submit, lmtp=True) if config.lmtp_address else None
    signals = WorkSignals()
    pipeline.on_new_work = signals.signal
    outbox = OutboxWorker(engine, config)
    pipeline.on_stored = outbox.wake
    runner = web.AppRunner(build_app(config, engine, writer, rules, signals),
                           shutdown_timeout=config.http.shutdown_seconds, access_log=None)
    gateway = Gateway(config, engine, writer, pipeline, smtp, lmtp, runner, outbox=outbox)

    # One writer task: while it commits, the next batch gathers, so batches grow
    # with load (measured: one task beats two on PostgreSQL; SQLite has one writer).
    gateway._tasks.append(asyncio.create_task(writer.run()))
    gateway._tasks.append(asyncio.create_task(rules.watch(config.pipeline.reload_poll_seconds)))
    if workers:
        scheduler = Scheduler(engine, rules, interval=config.pipeline.scheduler_seconds)
        gateway._tasks.append(asyncio.create_task(scheduler.run()))
    # Other processes' new work wakes this process's waiting agents too.
    gateway._tasks.append(asyncio.create_task(listen(config.database.url, signals.signal)))
    if workers:
        for _ in range(config.pipeline.workers):
            gateway._workers.append(asyncio.create_task(pipeline.run_worker()))
        # With nothing to deliver to, rows wait in the outbox (visible) until configured.
        if outbox.has_work:
            for _ in range(config.outbound.workers):
                gateway._workers.append(asyncio.create_task(outbox.run()))

    await runner.setup()
    host, port = config.http_address
    site = web.TCPSite(runner, host, port)
    await site.start()
    gateway.http_port = runner.addresses[0][1]
    gateway.smtp_port = (await smtp.start(*config.smtp_address))[1]
    if lmtp is not None and config.lmtp_address:
        gateway.lmtp_port = (await lmtp.start(*config.lmtp_address))[1]
    log.info("intake ready: smtp %s:%d, http %s, database %s", config.smtp_address[0],
             gateway.smtp_port, gateway.http_url, engine.url.render_as_string())
    return gateway


async def stop(gateway: Gateway, *, grace: float = 10.0) -> None:
    """Stop accepting, finish what is in flight (bounded), drain the workers."""
    listeners = [gateway.smtp] + ([gateway.lmtp] if gateway.lmtp else [])
    await asyncio.gather(*(listener.stop(grace) for listener in listeners),
                         gateway.runner.cleanup())
    gateway.pipeline.stop()
    if gateway.outbox is not None:
        gateway.outbox.stop()
    if gateway._workers:
        done, pending = await asyncio.wait(gateway._workers, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    for task in gateway._tasks:
        task.cancel()
    await asyncio.gather(*gateway._tasks, return_exceptions=True)
    if gateway.outbox is not None:
        await gateway.outbox.close()
    await gateway.engine.dispose()
    log.info("intake stopped")


async def serve(config: Config) -> None:
    """Run until SIGTERM or SIGINT."""
    gateway = await start(config)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, gateway.pipeline.rules.reload)
    try:
        await stopping.wait()
        log.info("shutting down")
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
        await stop(gateway, grace=config.http.shutdown_seconds)
