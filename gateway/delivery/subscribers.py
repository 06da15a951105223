"""Which public events anyone takes: webhooks, the broker, queues' notifications.

The pipeline writes an `event` outbox row only for an event one of them takes.
A row nobody takes was written, claimed and dropped by the outbox worker, two
for every new request: a fifth of PostgreSQL's work per item end to end. The
request's own timeline (the `events` table) records everything either way.
"""

from __future__ import annotations

from domain.lifecycle import PublicEvent
from gateway.config import Config
from gateway.config.webhooks import ALL_EVENTS
from gateway.delivery import notifications

_EVERY: frozenset[str] = frozenset(PublicEvent)


def announced(config: Config) -> frozenset[str]:
    """The public events some subscriber of `config` takes (webhooks and the
    broker need a restart to change; queues' `notify_on` reloads with the rules)."""
    taken: set[str] = set()
    for subscription in config.webhooks:
        taken |= _EVERY if ALL_EVENTS in subscription.events else set(subscription.events)
    if config.broker_url:
        events = config.broker.events
        taken |= _EVERY if ALL_EVENTS in events else set(events)
    if notifications.wanted(config):
        taken |= set(notifications.FROM_EVENTS)
    return frozenset(taken)
