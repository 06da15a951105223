"""Composition root: one process with the SMTP/LMTP listeners, the HTTP API
and the pipeline workers, built in one place and started and stopped in the
right order.

`build()` makes every part and hands each its collaborators; nothing runs yet.
`Gateway.start()` and `Gateway.stop()` own the background tasks, which run
under one `Supervisor` (gateway/supervisor.py): a task that fails is logged and
started again, and /healthz names a task that is down or stalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import heap, loop_lag, metrics
from gateway.config import Config
from gateway.config.sections import parse_listen
from gateway.delivery.worker import OutboxWorker
from gateway.file_limit import descriptors_needed, raise_file_limit
from gateway.health import HEALTH_KEY, INTAKE_TASK, Health
from gateway.http.access_log import LOGGER as ACCESS_LOG
from gateway.http.access_log import AccessLogger
from gateway.http.app import init_app
from gateway.http_connections import GuardedSite, HttpConnections
from gateway.mailbox.fetcher import MailboxFetcher
from gateway.metrics_export import Exporter
from gateway.pipeline.retention import SHARE_OF_TICK, Retention
from gateway.pipeline.scheduler import Scheduler
from gateway.pipeline.worker import Pipeline
from gateway.processes import available_cores
from gateway.rules_in_force import RulesHolder
from gateway.signals import WorkSignals
from gateway.smtp import SmtpListener
from gateway.supervisor import Counter, Supervisor, Watch, without_heartbeat
from gateway.tls import ServerTls
from routing.api import warm_up
from storage.engine import create_engine, is_sqlite
from storage.inbox import InboxWriter
from storage.migrate import upgrade
from storage.notify import PING_SECONDS, listen
from storage.processing import release_claims
from storage.queries import overdue_items

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
    # The HTTP listener's connection caps, deadlines and counts.
    http_connections: HttpConnections
    pipeline_workers: int
    outbox_workers: int
    # Runs the background tasks; at stop the workers are let finish what they hold.
    supervisor: Supervisor
    # Commits by the inbox writer: its progress, as the supervisor sees it.
    commits: Counter
    smtp_port: int = 0
    lmtp_port: int = 0
    http_port: int = 0
    # Worker N of `intake serve`'s processes (gateway/processes.py): it binds the
    # ports with SO_REUSEPORT beside the others and leaves migrations to the
    # supervisor. None: the only process.
    worker: int | None = None
    # GET /metrics on `[metrics] listen` (gateway/metrics_export.py); None: not served.
    metrics: Exporter | None = None
    metrics_port: int | None = None
    # One fetcher per `[[mailbox]]` (processes with workers only); a lease in
    # the database lets one process at a time fetch each mailbox.
    mailboxes: list[MailboxFetcher] = field(default_factory=list)
    # `[smtp.tls]`'s certificate (None: no TLS), reloaded on SIGHUP, and the
    # implicit-TLS listener on `tls_listen` (None: not configured).
    tls: ServerTls | None = None
    smtps: SmtpListener | None = None
    smtps_port: int = 0

    @property
    def http_url(self) -> str:
        return f"http://{self.config.http_address[0]}:{self.http_port}"

    async def start(self) -> None:
        """Prepare the database, start the background tasks, then listen."""
        config, engine = self.config, self.engine
        if config.database.migrate_on_start and self.worker is None:
            await upgrade(engine)
        if is_sqlite(engine):
            # The embedded database serves one process: claims left over are from
            # a crash of this process, so there is no lease to wait out.
            released = await release_claims(engine)
            if released:
                log.info("took back %d inbox items claimed before a crash", released)
        warm_up(self.rules.rules)  # compile and load the language model before traffic

        self._supervise()

        await self.runner.setup()
        host, port = config.http_address
        # Every listener holds a descriptor per connection: first make room.
        raise_file_limit(descriptors_needed(config))
        shared = self.worker is not None
        site = GuardedSite(self.runner, host, port, guard=self.http_connections,
                           reuse_port=shared)
        await site.start()
        self.http_port = self.runner.addresses[0][1]
        self.smtp_port = (await self.smtp.start(*config.smtp_address, reuse_port=shared))[1]
        if self.lmtp is not None and config.lmtp_address:
            self.lmtp_port = (await self.lmtp.start(*config.lmtp_address,
                                                    reuse_port=shared))[1]
        smtps_address = tls_address(config)
        if self.smtps is not None and smtps_address is not None:
            self.smtps_port = (await self.smtps.start(*smtps_address, reuse_port=shared))[1]
        if self.metrics is not None:
            self.metrics_port = await self.metrics.start(self.worker)
        if shared:
            log.info("intake worker %d ready (pid %d): %s", self.worker, os.getpid(),
                     self._ready_parts())
        else:
            log.info("intake ready: %s", self._ready_parts())

    def _ready_parts(self) -> str:
        """Every listener and every service this process talks to (passwords hidden)."""
        config = self.config
        starttls = " (starttls)" if self.tls is not None else ""
        parts = [f"smtp {config.smtp_address[0]}:{self.smtp_port}{starttls}"]
        if config.lmtp_address:
            parts.append(f"lmtp {config.lmtp_address[0]}:{self.lmtp_port}{starttls}")
        smtps_address = tls_address(config)
        if self.smtps is not None and smtps_address is not None:
            parts.append(f"smtps {smtps_address[0]}:{self.smtps_port}")
        parts += [f"http {self.http_url}",
                  f"database {self.engine.url.render_as_string()}"]
        if self.metrics_port is not None:
            parts.append(f"metrics http://{config.metrics.listen.rpartition(':')[0]}"
                         f":{self.metrics_port}/metrics")
        if config.relay_address:
            parts.append("relay {}:{}".format(*config.relay_address))
        if config.broker_url:
            parts.append(f"broker {_without_password(config.broker_url)}")
        return ", ".join(parts)

    def hangup(self) -> None:
        """SIGHUP's handler: reload the rules and the TLS certificate."""
        self.rules.hangup()  # audited as rules.reload
        if self.tls is not None:
            self.tls.reload()

    @property
    def listeners(self) -> list[SmtpListener]:
        """The SMTP edge's listeners: smtp, and lmtp and smtps when configured."""
        return [self.smtp] + [x for x in (self.lmtp, self.smtps) if x is not None]

    async def stop(self, *, grace: float = 10.0) -> None:
        """Stop accepting, finish what is in flight (bounded), drain the workers."""
        listeners = self.listeners
        await asyncio.gather(*(listener.stop(grace) for listener in listeners),
                             self.runner.cleanup())
        self.supervisor.stopping = True  # no restarts from here on
        self.pipeline.stop()
        self.outbox.stop()
        await self.supervisor.stop(grace=grace)
        await self.outbox.close()
        if self.metrics is not None:
            await self.metrics.stop()
        await self.rules.audited()  # a reload's audit event, before the engine goes
        await self.engine.dispose()
        log.info("intake stopped")

    def _supervise(self) -> None:
        """Every background task, under the supervisor: restarted when it fails,
        watched for progress (its own heartbeat, or seen from outside)."""
        config, tasks = self.config, self.supervisor
        # One writer task: while it commits, the next batch gathers, so batches grow
        # with load (measured: one task beats two on PostgreSQL; SQLite has one writer).
        # Its progress is its commits; an idle writer cannot be told from a stuck
        # one from outside, so it is watched for failing, not for stalling.
        tasks.start(INTAKE_TASK, without_heartbeat(self.writer.run),
                    watch=Watch(progress=self.commits.value))
        tasks.start("loop-lag", loop_lag.watch)  # intake_event_loop_lag_seconds
        if self.rules.watchable:
            interval = config.pipeline.reload_poll_seconds
            tasks.start("rules-watch", lambda beat: self.rules.watch(interval, beat),
                        stall_seconds=3 * interval)
        if self.scheduler is not None:
            scheduler = self.scheduler
            tasks.start("scheduler", scheduler.run, stall_seconds=3 * scheduler.interval)
        if not is_sqlite(self.engine):
            # Other processes' new work wakes this process's waiting agents too.
            tasks.start("listen", lambda beat: listen(config.database.url, self.signals.signal,
                                                      on_alive=beat.beat,
                                                      on_fault=beat.failed),
                        stall_seconds=3 * PING_SECONDS)
        # The pipeline's workers share one count of items stored; the pipeline is
        # stalled when that stands still while items wait past the stall time.
        engine = self.engine
        pipeline = Watch(progress=lambda: self.pipeline.processed,
                         backlog=lambda older: overdue_items(engine, older_than=older))
        for number in range(1, self.pipeline_workers + 1):
            tasks.start(f"pipeline-{number}", without_heartbeat(self.pipeline.run_worker),
                        watch=pipeline, drain=True)
        for number in range(1, self.outbox_workers + 1):
            tasks.start(f"outbox-{number}", self.outbox.run, drain=True)
        for fetcher in self.mailboxes:
            section = next(m for m in config.mailbox if m.name == fetcher.name)
            # It beats after every pass, IDLE and retry wait: the longest of those.
            longest = max(section.poll_seconds, section.backoff_max_seconds,
                          section.lease_seconds) + section.timeout_seconds
            tasks.start(f"mailbox-{fetcher.name}", fetcher.run, stall_seconds=3 * longest)


def _without_password(url: str) -> str:
    """A URL for a log line: its password replaced, as SQLAlchemy shows one."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


def tls_address(config: Config) -> tuple[str, int] | None:
    """Where the implicit-TLS listener listens (None: it is not configured)."""
    return parse_listen(config.smtp.tls_listen) if config.smtp.tls_listen else None


def retention(config: Config, engine: AsyncEngine) -> Retention | None:
    """The `[[retention]]` passes the scheduler runs; None without a policy."""
    if not config.retention:
        return None
    return Retention(engine=engine, policies=config.retention_policies,
                     interval=timedelta(minutes=config.pipeline.retention_minutes),
                     batch_size=config.pipeline.retention_batch_size,
                     tick_seconds=config.pipeline.scheduler_seconds * SHARE_OF_TICK)


def build_process(config: Config, worker: int | None) -> bool:
    """Whether the pipeline builds in a child process: as configured, else where
    this is the only process (SQLite's one writer) and a second core is free."""
    chosen = config.pipeline.build_process
    if chosen is not None:
        return chosen
    return worker is None and available_cores() >= 2


def build(config: Config, *, engine: AsyncEngine | None = None,
          workers: bool = True, supervisor: Supervisor | None = None,
          worker: int | None = None) -> Gateway:
    """Every part of one process, each given what it calls; nothing runs yet.
    `supervisor`: one with other stall and backoff times (tests). `worker`: this
    process's number among `intake serve`'s worker processes (None: the only one)."""
    rules = RulesHolder.load(config)  # a bad rule stops start-up before anything listens
    # So does a TLS certificate or key that will not load.
    tls = ServerTls.load(config.smtp.tls) if config.smtp.tls is not None else None
    metrics.configure(enabled=config.metrics.enabled, queues=[q.name for q in config.queue],
                      webhooks=[w.name for w in config.webhooks])
    engine = engine or create_engine(config.database.url, pool_size=config.database.pool_size,
                                     timeout=config.database.timeout_seconds)
    rules.engine = engine  # its reloads are audited
    signals = WorkSignals()
    outbox = OutboxWorker(engine=engine, config=config)
    pipeline = Pipeline(engine=engine, config=config, rules=rules,
                        on_new_work=signals.signal, on_stored=outbox.wake,
                        build_process=build_process(config, worker))
    commits = Counter()

    def committed() -> None:
        commits.add()
        pipeline.wake()

    writer = InboxWriter(engine=engine, timeout=config.database.timeout_seconds,
                         on_commit=committed)
    app = init_app(config, engine=engine, writer=writer, rules=rules, signals=signals)
    http_connections = HttpConnections(config)
    app.middlewares.append(http_connections.middleware)  # the innermost: sees the handler
    if config.metrics.enabled:
        # The outermost: the time and status the client gets, whatever answered.
        app.middlewares.insert(0, metrics.HttpTimer().middleware)
    supervisor = supervisor or Supervisor()
    app[HEALTH_KEY] = Health(supervisor=supervisor)
    gateway = Gateway(
        config=config, engine=engine, rules=rules, signals=signals, writer=writer,
        pipeline=pipeline, outbox=outbox, supervisor=supervisor, commits=commits,
        scheduler=(Scheduler(engine=engine, rules=rules,
                             interval=config.pipeline.scheduler_seconds,
                             retention=retention(config, engine)) if workers else None),
        smtp=SmtpListener(config=config, submit=writer.submit, tls=tls),
        lmtp=(SmtpListener(config=config, submit=writer.submit, lmtp=True, tls=tls)
              if config.lmtp_address else None),
        tls=tls,
        smtps=(SmtpListener(config=config, submit=writer.submit, implicit_tls=True, tls=tls)
               if tls is not None and tls_address(config) is not None else None),
        runner=web.AppRunner(app, shutdown_timeout=config.http.shutdown_seconds,
                             access_log=ACCESS_LOG if config.log.access else None,
                             access_log_class=AccessLogger,
                             **http_connections.runner_options()),
        http_connections=http_connections,
        pipeline_workers=config.pipeline.workers if workers else 0,
        # With nothing to deliver to, rows wait in the outbox (visible) until configured.
        outbox_workers=config.outbound.workers if workers and outbox.has_work else 0,
        worker=worker,
    )
    if workers:
        gateway.mailboxes = [MailboxFetcher(engine=engine, config=config, section=section,
                                            on_commit=committed)
                             for section in config.mailbox]
    if config.metrics.enabled:
        listeners = [(x.name, x.connections) for x in gateway.listeners]
        listeners.append(("http", http_connections.connections))
        gateway.metrics = Exporter(config=config, engine=engine, listeners=listeners,
                                   processed=lambda: pipeline.processed)
    return gateway


async def start(config: Config, *, engine: AsyncEngine | None = None,
                workers: bool = True, supervisor: Supervisor | None = None,
                worker: int | None = None) -> Gateway:
    gateway = build(config, engine=engine, workers=workers, supervisor=supervisor,
                    worker=worker)
    await gateway.start()
    return gateway


async def stop(gateway: Gateway, *, grace: float = 10.0) -> None:
    await gateway.stop(grace=grace)


async def serve(config: Config, *, worker: int | None = None) -> None:
    """Run until SIGTERM or SIGINT. `worker`: see `Gateway.worker`."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Handlers first: the listeners open inside start(), and a signal that came
    # as soon as they answered (a deploy's reload) must not find the default
    # action, which ends the process. A SIGHUP before the gateway is up is
    # kept and taken once it is; SIGTERM then stops it at once.
    early_hangups: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, early_hangups.append, signal.SIGHUP)
    try:
        gateway = await start(config, worker=worker)
    except BaseException:
        _remove_handlers(loop)
        raise
    loop.add_signal_handler(signal.SIGHUP, gateway.hangup)
    if early_hangups:
        gateway.hangup()
    heap.settle()  # what start-up made is not walked again (gateway/heap.py)
    try:
        await stopping.wait()
        log.info("shutting down")
    finally:
        _remove_handlers(loop)
        await stop(gateway, grace=config.http.shutdown_seconds)


def _remove_handlers(loop: asyncio.AbstractEventLoop) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(signum)
