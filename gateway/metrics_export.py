"""GET /metrics on `[metrics] listen`: one process's figures in Prometheus's format.

The listener is its own (not the HTTP API's): no token, no rate limit, bound
where only the monitoring network reaches (127.0.0.1 by default in examples).
Worker N of `intake serve` listens on the configured port + N - 1, so each
worker is a scrape target of its own and a scrape never lands on a random one
(the API's port is shared with SO_REUSEPORT). Port 0: each picks a free one and
logs it.

What a scrape returns: the counters of gateway/metrics.py; the library's process,
platform and GC collectors; figures read at the scrape from what the process
keeps anyway (connections open and refused, items stored); and the database's
figures (backlogs, lag, queues, IMAP mailboxes), which one process per database reads at most
once per `[metrics] database_seconds` and serves from memory in between
(storage.monitoring.Lead); the other processes export none of them, so summing
them over instances counts each once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Sequence

from aiohttp import web
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import metrics
from gateway.config import Config
from gateway.config.sections import parse_listen
from gateway.connections import Connections, Refusal
from storage.errors import described
from storage.monitoring import Figures, Lead

log = logging.getLogger("intake.metrics")


class _Collector(Collector):
    """The figures read when scraped: this process's listeners and pipeline, and
    the database's (when this process leads)."""

    def __init__(self, exporter: Exporter) -> None:
        self._exporter = exporter

    def describe(self) -> list[Metric]:
        return []  # collected only when scraped, never at registration

    def collect(self) -> Iterator[Metric]:
        exporter = self._exporter
        sessions = GaugeMetricFamily("intake_smtp_sessions_open",
                                     "SMTP and LMTP sessions open", labels=["listener"])
        refused = CounterMetricFamily(
            "intake_connections_refused", "Connections refused at connect by a cap: total "
            "(max_connections) or per_client (max_connections_per_client)",
            labels=["listener", "limit"])
        for name, connections in exporter.listeners:
            if name != "http":
                sessions.add_metric([name], connections.open)
            for refusal, limit in ((Refusal.TOTAL, "total"), (Refusal.PER_CLIENT, "per_client")):
                refused.add_metric([name, limit], connections.refused[refusal])
        yield sessions
        yield refused
        if exporter.processed is not None:
            yield CounterMetricFamily("intake_pipeline_items_processed",
                                      "Inbox items the pipeline stored (requests, replies)",
                                      value=exporter.processed())
        lead = GaugeMetricFamily("intake_metrics_database_lead",
                                 "1 if this process exports the database's figures")
        lead.add_metric([], 1 if exporter.figures is not None else 0)
        yield lead
        if exporter.figures is not None:
            yield from _database(exporter.figures, time.time() - exporter.figures_age())
            yield from _mailboxes(exporter.figures, [m.name for m in exporter.config.mailbox])


def _mailboxes(figures: Figures, names: Sequence[str]) -> Iterator[Metric]:
    """Per configured mailbox (a bounded label: names from the configuration); one
    not fetched yet (no row) is 0, and has no last fetch time."""
    if not names:
        return
    connected = GaugeMetricFamily("intake_mailbox_connected", "1 while a process holds "
                                  "the mailbox, logged in, and its last pass worked",
                                  labels=["mailbox"])
    behind = GaugeMetricFamily("intake_mailbox_behind", "Messages left on the server for "
                               "the next pass (max_per_run reached)", labels=["mailbox"])
    failing = GaugeMetricFamily("intake_mailbox_failing", "1 while the fetcher's attempts "
                                "fail (the health check's mailbox_failing)", labels=["mailbox"])
    last = GaugeMetricFamily("intake_mailbox_last_fetch_timestamp_seconds", "When mail was "
                             "last stored from the mailbox (Unix time)", labels=["mailbox"])
    # The database's running count, exported as the counter it is (it only grows).
    fetched = CounterMetricFamily("intake_mailbox_fetched", "Messages fetched from the "
                                  "mailbox into the inbox", labels=["mailbox"])
    for name in names:
        row = figures.mailboxes.get(name)
        # A holder that died left `connected` set: its lease has run out since.
        connected.add_metric([name], 1 if row is not None and row.connected
                             and row.held(figures.at) else 0)
        behind.add_metric([name], row.behind if row is not None else 0)
        failing.add_metric([name], 1 if row is not None and row.failing_since else 0)
        fetched.add_metric([name], row.fetched if row is not None else 0)
        if row is not None and row.last_fetch_at is not None:
            last.add_metric([name], row.last_fetch_at.timestamp())
    yield from (connected, behind, failing, last, fetched)


def _database(figures: Figures, taken: float) -> Iterator[Metric]:
    """The database's figures as gauges (one process per database exports them)."""
    yield GaugeMetricFamily("intake_database_figures_timestamp_seconds",
                            "When the database's figures below were read (Unix time)",
                            value=taken)
    items = GaugeMetricFamily("intake_pipeline_items", "Inbox items by state (pending, "
                              "processing, dead)", labels=["state"])
    for state in ("pending", "processing", "dead"):
        items.add_metric([state], figures.inbox.get(state, 0))
    yield items
    yield GaugeMetricFamily("intake_pipeline_lag_seconds", "How long the oldest inbox "
                            "item due has waited for the pipeline", value=figures.lag_seconds)
    rows = GaugeMetricFamily("intake_outbox_rows", "Outbox rows by kind and state (pending, "
                             "failing: pending after a failed attempt, sending, dead)",
                             labels=["kind", "state"])
    for (kind, state), count in sorted(figures.outbox.items()):
        rows.add_metric([kind, state], count)
    yield rows
    yield GaugeMetricFamily("intake_scheduler_late_seconds", "How long the oldest "
                            "service-level check due has waited for a scheduler",
                            value=figures.scheduler_late_seconds)
    gauges = {
        "open": ("intake_queue_open_requests", "Workable requests (new, open, reopened)"),
        "unclaimed": ("intake_queue_unclaimed_requests",
                      "Workable requests no agent holds (never claimed, or the lease ran out)"),
        "oldest_waiting_seconds": ("intake_queue_oldest_waiting_seconds",
                                   "Age of the oldest unclaimed workable request"),
        "past_due": ("intake_queue_past_due_requests",
                     "Workable requests past their service-level deadline"),
        "expired_claims": ("intake_queue_expired_claims",
                           "Claims whose lease ran out and no agent took over yet"),
    }
    for field, (name, text) in gauges.items():
        family = GaugeMetricFamily(name, text, labels=["queue"])
        for queue in figures.queues:
            family.add_metric([queue.name], getattr(queue, field))
        yield family


class Exporter:
    """The registry and listener of one process's /metrics."""

    def __init__(self, *, config: Config, engine: AsyncEngine,
                 listeners: Sequence[tuple[str, Connections]],
                 processed: Callable[[], int] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.listeners = listeners
        self.processed = processed
        self.figures: Figures | None = None
        self._figures_at = -float("inf")
        self._clock = clock
        self._lead = Lead(engine)
        self._refreshing = asyncio.Lock()
        self.registry = CollectorRegistry(auto_describe=False)
        for family in metrics.FAMILIES:
            self.registry.register(family)
        for default in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(default)
        self.registry.register(_Collector(self))
        self._runner: web.AppRunner | None = None
        self.port = 0

    def figures_age(self) -> float:
        return max(0.0, self._clock() - self._figures_at)

    async def refresh(self) -> None:
        """Read the database's figures if they are older than `database_seconds`
        and this process leads; concurrent scrapes share one read."""
        async with self._refreshing:
            if self._clock() - self._figures_at < self.config.metrics.database_seconds:
                return
            try:
                self.figures = await self._lead.figures(
                    [q.name for q in self.config.queue], [m.name for m in self.config.mailbox])
            except Exception as exc:  # noqa: BLE001 - a scrape still gets the rest
                log.warning("reading the database's figures for /metrics failed: %s",
                            described(exc))
                self.figures = None
            # Tried or not, not again within the interval (a follower tries the lead
            # at most that often too).
            self._figures_at = self._clock()

    async def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The body and its content type: the format the scraper's Accept asks
        for (OpenMetrics, text 1.0.0), else Prometheus text 0.0.4."""
        await self.refresh()
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type

    async def _serve(self, request: web.Request) -> web.Response:
        body, content_type = await self.exposition(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def start(self, worker: int | None) -> int | None:
        """Listen on `[metrics] listen` (port + worker - 1); the port, or None."""
        listen = self.config.metrics.listen
        if listen is None or not self.config.metrics.enabled:
            return None
        host, port = parse_listen(listen)
        if port and worker is not None:
            port += worker - 1
        app = web.Application()
        app.router.add_get("/metrics", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self._lead.close()
