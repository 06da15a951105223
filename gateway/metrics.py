"""The process's Prometheus counters and histograms, and the calls that count.

Names follow Prometheus practice: the `intake_` prefix, base units (seconds,
bytes), `_total` on counters (prometheus-client adds it), and labels whose
values are bounded: channels, outcomes and reasons named here, status classes,
route templates, and queue and webhook names from the configuration (anything
else is `other`). The README's metrics reference lists every one.

What is counted where it happens goes through the small objects below
(`intake(channel)`, `PIPELINE`, `OUTBOX`, `DESK`), whose label children are
bound once, at `configure()`: on the intake path a count is one `.inc()`, never
a label look-up. With `[metrics] enabled = false` they are `_Off`, which counts
nothing (the baseline of benchmarks/metrics_cost.py). Figures that exist
anyway (connections open and refused, items stored, the database's backlogs,
the IMAP mailboxes' state and fetched count) are read when scraped instead
(gateway/metrics_export.py).

Each process counts its own: with `intake serve`'s worker processes every one
is a scrape target of its own (`[metrics] listen`, port + N - 1), and a total
is `sum without (instance) (rate(intake_received_total[5m]))`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any

from aiohttp import web
from prometheus_client import Counter, Histogram

from domain.lifecycle import EventKind
from parsers.auth_results import ARC_RESULTS, DKIM_RESULTS, DMARC_RESULTS, SPF_RESULTS
from storage.engine import as_utc, utcnow

OTHER = "other"

# Why a message or post was refused: SMTP replies and HTTP statuses, by name.
SMTP_REASONS = ("unknown_recipient", "bare_line_ending", "too_large", "unstorable")
HTTP_REASONS = {400: "bad_request", 401: "unauthorised", 403: "forbidden",
                404: "not_found", 413: "too_large", 415: "unsupported_media_type",
                422: "invalid", 429: "rate_limited"}
# A mailbox's message is never refused to the server; it may be too large to
# fetch (its header is stored) or unstorable.
IMAP_REASONS = ("too_large", "unstorable")
CHANNELS = {"smtp": SMTP_REASONS, "lmtp": SMTP_REASONS, "imap": IMAP_REASONS,
            "api": tuple(HTTP_REASONS.values()), "form": tuple(HTTP_REASONS.values())}

RECEIVED = Counter(
    "intake_received", "Messages and posts received, by channel and outcome (accepted, "
    "refused, temporary_failure) and reason",
    ["channel", "outcome", "reason"], registry=None)
RECEIVED_BYTES = Counter(
    "intake_received_bytes", "Bytes accepted: message data, request bodies (replays not "
    "counted)",
    ["channel"], registry=None)

BATCH_ITEMS = Histogram(
    "intake_pipeline_batch_items", "Inbox items per batch the pipeline stores",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=None)
BATCH_SECONDS = Histogram(
    "intake_pipeline_batch_duration_seconds", "Time to parse, route and store one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=None)
RETRIES = Counter("intake_pipeline_retries", "Inbox item attempts that failed and were "
                  "scheduled again", registry=None)
DEAD_LETTERED = Counter("intake_pipeline_dead_lettered", "Inbox items dead-lettered",
                        registry=None)

DELIVERIES = Counter(
    "intake_outbox_deliveries", "Outbox delivery attempts by kind and outcome "
    "(delivered, retried, dead)", ["kind", "outcome"], registry=None)
DELIVERY_LATENCY = Histogram(
    "intake_outbox_delivery_latency_seconds", "From the outbox row's commit to its delivery",
    ["kind"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900,
                       3600), registry=None)
TARGET_ERRORS = Counter(
    "intake_outbox_target_errors", "Failed deliveries by target: the relay (mail), a "
    "webhook by its configured name, the broker", ["kind", "target"], registry=None)

SLA_WARNINGS = Counter("intake_sla_warnings", "Service-level warnings taken", ["queue"],
                       registry=None)
SLA_BREACHES = Counter("intake_sla_breaches", "Service-level breaches taken", ["queue"],
                       registry=None)
ESCALATIONS = Counter("intake_escalations", "Escalations taken by the scheduler", ["queue"],
                      registry=None)
CLAIMS = Counter("intake_claims", "Requests claimed by agents", ["queue"], registry=None)

HTTP_SECONDS = Histogram(
    "intake_http_request_duration_seconds", "HTTP API requests by route template and "
    "status class", ["route", "status_class"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=None)

# How late the event loop ran a timer (gateway/loop_lag.py): work holding the
# loop (parsing, a blocking call) delays every connection the process serves.
LOOP_LAG = Histogram(
    "intake_event_loop_lag_seconds", "How late the event loop woke a periodic timer",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=None)

# Sender authentication's verdicts, by check (spf, dkim, dmarc, arc) and result
# (RFC 8601's values, a bounded set: parsers/auth_results.py).
AUTH_CHECKS = ("spf", "dkim", "dmarc", "arc")
AUTH_RESULTS = frozenset(SPF_RESULTS + DKIM_RESULTS + DMARC_RESULTS + ARC_RESULTS)
SENDER_AUTH = Counter(
    "intake_sender_auth_results", "Sender authentication verdicts, by check and result",
    ["check", "result"], registry=None)

# Every family above, for each exporter's registry.
FAMILIES = (RECEIVED, RECEIVED_BYTES, BATCH_ITEMS, BATCH_SECONDS, RETRIES, DEAD_LETTERED,
            DELIVERIES, DELIVERY_LATENCY, TARGET_ERRORS, SLA_WARNINGS, SLA_BREACHES,
            ESCALATIONS, CLAIMS, HTTP_SECONDS, LOOP_LAG, SENDER_AUTH)


def _nothing(*args: Any, **kwargs: Any) -> None:
    return None


class _Off:
    """Counts nothing: `[metrics] enabled = false`."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return _nothing


class Intake:
    """One channel's intake counts, each label child bound once."""

    __slots__ = ("_accepted", "_replayed", "_bytes", "_failed", "_refused")

    def __init__(self, channel: str) -> None:
        self._accepted = RECEIVED.labels(channel, "accepted", "new")
        self._replayed = RECEIVED.labels(channel, "accepted", "replayed")
        self._bytes = RECEIVED_BYTES.labels(channel)
        self._failed = RECEIVED.labels(channel, "temporary_failure", "storage")
        self._refused = {reason: RECEIVED.labels(channel, "refused", reason)
                         for reason in (*CHANNELS[channel], OTHER)}

    def accepted(self, size: int, *, replayed: bool = False) -> None:
        if replayed:
            self._replayed.inc()
            return
        self._accepted.inc()
        self._bytes.inc(size)

    def refused(self, reason: str) -> None:
        (self._refused.get(reason) or self._refused[OTHER]).inc()

    def failed(self) -> None:
        """A fault of ours (451, 503): the sender is to try again."""
        self._failed.inc()

    def answered(self, status: int) -> None:
        """An HTTP refusal by its status: 503 is ours, the rest the client's."""
        if status == 503:
            self._failed.inc()
        else:
            self.refused(HTTP_REASONS.get(status, OTHER))


class PipelineCounts:
    __slots__ = ()

    def batch(self, items: int, started: float) -> None:
        BATCH_ITEMS.observe(items)
        BATCH_SECONDS.observe(time.perf_counter() - started)

    def retried(self) -> None:
        RETRIES.inc()

    def dead_lettered(self) -> None:
        DEAD_LETTERED.inc()

    def authenticated(self, verdicts: dict[str, Any]) -> None:
        """A stored message's sender authentication (`Verdicts.as_json()`)."""
        for check in AUTH_CHECKS:
            result = verdicts.get(check)
            SENDER_AUTH.labels(check, result if result in AUTH_RESULTS else OTHER).inc()


class _Named:
    """Label children by a configured name; any other name counts as `other`."""

    def __init__(self, counter: Counter, names: Iterable[str]) -> None:
        self._children = {name: counter.labels(name) for name in (*names, OTHER)}

    def __call__(self, name: str | None) -> Any:
        return self._children.get(name or OTHER) or self._children[OTHER]


class OutboxCounts:
    _OUTCOMES = {"done": "delivered", "failed": "retried", "dead": "dead"}

    def __init__(self, webhooks: Iterable[str]) -> None:
        self._webhooks = frozenset(webhooks)

    def recorded(self, item: Any, outcome: str) -> None:
        """An outbox row's attempt recorded as `outcome` (done, failed, dead)."""
        kind = item.kind
        DELIVERIES.labels(kind, self._OUTCOMES.get(outcome, OTHER)).inc()
        if outcome == "done":
            created = as_utc(item.created_at)
            if isinstance(created, datetime):
                DELIVERY_LATENCY.labels(kind).observe(
                    max(0.0, (utcnow() - created).total_seconds()))
            return
        if kind == "email":
            target = "relay"
        elif kind == "webhook":
            name = (item.payload or {}).get("target")
            target = name if name in self._webhooks else OTHER
        else:
            target = kind
        TARGET_ERRORS.labels(kind, target).inc()


class DeskCounts:
    def __init__(self, queues: Iterable[str]) -> None:
        names = tuple(queues)
        self._steps = {EventKind.SLA_WARNING: _Named(SLA_WARNINGS, names),
                       EventKind.SLA_BREACHED: _Named(SLA_BREACHES, names),
                       EventKind.ESCALATED: _Named(ESCALATIONS, names)}
        self._claims = _Named(CLAIMS, names)

    def step(self, kind: str, queue: str | None) -> None:
        """A service-level step the scheduler took (warning, breach, escalation)."""
        named = self._steps.get(kind)  # type: ignore[call-overload]
        if named is not None:
            named(queue).inc()

    def claimed(self, queue: str, count: int) -> None:
        if count:
            self._claims(queue).inc(count)


_INTAKE: dict[str, Intake | _Off] = {}
PIPELINE: PipelineCounts | _Off = PipelineCounts()
OUTBOX: OutboxCounts | _Off = OutboxCounts(())
DESK: DeskCounts | _Off = DeskCounts(())


def configure(*, enabled: bool, queues: Iterable[str] = (),
              webhooks: Iterable[str] = ()) -> None:
    """Bind the counting objects for this process's configuration (at build())."""
    global PIPELINE, OUTBOX, DESK
    off = _Off()
    for channel in CHANNELS:
        _INTAKE[channel] = Intake(channel) if enabled else off
    PIPELINE = PipelineCounts() if enabled else off
    OUTBOX = OutboxCounts(webhooks) if enabled else off
    DESK = DeskCounts(queues) if enabled else off


def intake(channel: str) -> Intake:
    """The counts of `channel` (smtp, lmtp, imap, api, form); kept by its handler."""
    return _INTAKE[channel]  # type: ignore[return-value]


configure(enabled=True)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpTimer:
    """Middleware: each HTTP request's duration by its route's template and
    status class (a path that matched no route is `unmatched`)."""

    def __init__(self) -> None:
        self._children: dict[tuple[str, int], Any] = {}

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self._child(request, status).observe(time.perf_counter() - started)

    def _child(self, request: web.Request, status: int) -> Any:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        key = (route, status // 100)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = HTTP_SECONDS.labels(route, f"{status // 100}xx")
        return child
