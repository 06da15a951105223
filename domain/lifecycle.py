"""A request's life: its statuses, the events on its timeline, the outcomes of
an action on it, and the rules that follow from a change of status.

Pure: no I/O and no clock (the caller passes `now`). Storage and the gateway
ask it and store what it says, so each rule lives here once.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Where a request stands. `received` is never stored on a request: it is
    what the API shows for an inbox item the pipeline has not processed yet."""

    RECEIVED = "received"
    NEW = "new"
    OPEN = "open"
    WAITING = "waiting"  # on the customer: the service-level clock pauses
    REOPENED = "reopened"
    RESOLVED = "resolved"
    CLOSED = "closed"
    QUARANTINED = "quarantined"  # held for review by a rule, never dropped
    MERGED = "merged"


# What an agent may set by hand.
SETTABLE = (Status.NEW, Status.OPEN, Status.WAITING, Status.RESOLVED, Status.CLOSED,
            Status.REOPENED)
# Waiting for an agent: listed in a queue, claimable, announced to waiting agents.
WORKABLE = (Status.NEW, Status.OPEN, Status.REOPENED)
# Still open: the current rules may route it again.
OPEN = (Status.NEW, Status.OPEN, Status.WAITING, Status.REOPENED, Status.QUARANTINED)
# Finished: the service-level scheduler no longer looks at it.
DONE = (Status.RESOLVED, Status.CLOSED, Status.MERGED)


class EventKind(StrEnum):
    """The kinds of entry on a request's timeline."""

    RECEIVED = "received"
    PARSED = "parsed"
    THREADED = "threaded"
    CLASSIFIED = "classified"
    ROUTED = "routed"
    ACKNOWLEDGEMENT = "acknowledgement"  # the decision: send one or not, and why
    ACKNOWLEDGEMENT_QUEUED = "acknowledgement_queued"
    ACKNOWLEDGEMENT_SKIPPED = "acknowledgement_skipped"
    MESSAGE_RECEIVED = "message_received"
    DUPLICATE_DELIVERY = "duplicate_delivery"
    MESSAGE_SENT = "message_sent"
    STATUS_CHANGED = "status_changed"
    REROUTED = "rerouted"
    RELEASED = "released"  # from quarantine
    UPDATED = "updated"
    NOTE = "note"
    REPLIED = "replied"
    ESCALATED = "escalated"
    MERGED = "merged"
    MERGED_FROM = "merged_from"
    CLAIMED = "claimed"
    RELEASED_CLAIM = "released_claim"
    SLA_WARNING = "sla_warning"
    SLA_BREACHED = "sla_breached"


class Actor(StrEnum):
    """Who did something, when it was not an agent's token (`token:ID`)."""

    SYSTEM = "system"
    RULE = "rule"
    REQUESTER = "requester"
    SCHEDULER = "scheduler"


class Outcome(StrEnum):
    """What became of an action on a stored request."""

    OK = "ok"
    MISSING = "missing"  # no such request
    STALE = "stale"  # changed since the caller read it (If-Match)
    SAME = "same"  # merging a request into itself
    MERGED = "merged"  # merged already
