"""Service levels in the gateway: deadlines when a request is routed, and the
scheduler's view of a request (what is due, which steps to take).

The arithmetic is pure (`routing.sla`, `routing.sla.escalation`); this module
turns stored columns into its inputs and its answers into columns and marks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from domain.lifecycle import EventKind, Status
from routing.sla import Policy, SlaConfig, TargetState, sla_state
from routing.sla.escalation import Escalation, steps_for, unclaimed_due
from storage.rows import SLA_COLUMNS


def deadlines(sla: SlaConfig | None, *, queue: str, priority: str | None, type: str | None,
              created_at: datetime, escalations: Sequence[Escalation] = ()) -> dict[str, Any]:
    """The service-level columns of a new request, with its first check at the
    earliest moment a time-based condition can become true: a target's warning
    time or an `unclaimed_for` rule, with or without an SLA policy."""
    # All of them, None when nothing applies (storage.rows.SLA_COLUMNS).
    columns: dict[str, Any] = dict.fromkeys(SLA_COLUMNS)
    upcoming: list[datetime] = []
    unclaimed = unclaimed_due(escalations, created_at=created_at, queue=queue,
                              priority=priority, type=type)
    if unclaimed is not None:
        upcoming.append(unclaimed)
    policy = sla.select(queue, priority, type) if sla is not None else None
    if policy is not None:
        state = sla_state(policy, created_at, created_at)
        first = state.first_response.due_at if state.first_response else None
        resolution = state.resolution.due_at if state.resolution else None
        upcoming += [t.warn_at for t in (state.first_response, state.resolution)
                     if t is not None]
        columns |= {"sla_policy": policy.name, "first_response_due_at": first,
                    "resolution_due_at": resolution, "due_at": first or resolution}
    columns["next_check_at"] = min(upcoming, default=None)
    return columns


# The timeline event of a target reaching its warning time or its deadline.
_SLA_EVENTS = {"warning": EventKind.SLA_WARNING, "breached": EventKind.SLA_BREACHED}


@dataclass(frozen=True, slots=True)
class Review:
    """What the scheduler found for one request."""

    columns: dict[str, Any]
    # (mark, event kind, rules to apply, facts for the timeline)
    steps: list[tuple[str, EventKind, tuple[Escalation, ...], dict[str, Any]]]


def _pause_events(row: dict[str, Any]) -> list[tuple[datetime, str]]:
    out: list[tuple[datetime, str]] = []
    for start, end in row.get("sla_pauses") or []:
        out += [(datetime.fromisoformat(start), "pause"), (datetime.fromisoformat(end),
                                                           "resume")]
    if row.get("sla_paused_at") is not None:
        out.append((row["sla_paused_at"], "pause"))
    return out


def _clock_start(row: dict[str, Any]) -> datetime:
    """When the request's clocks started: when it was created, or, if it was held
    in quarantine from then, when it was released (the end of that pause)."""
    created: datetime = row["created_at"]
    for start, end in row.get("sla_pauses") or []:
        if datetime.fromisoformat(start) == created:
            return datetime.fromisoformat(end)
    return created


def review(row: dict[str, Any], sla: SlaConfig | None, rules: tuple[Escalation, ...],
           now: datetime, *, check_seconds: float) -> Review:
    """The steps due at `now` and the columns to store, `next_check_at` the
    earliest moment another time-based condition can become true."""
    if row["status"] == Status.QUARANTINED:
        # Held for review: no checks, warnings, breaches or escalations until it is
        # released (actions.release checks it again then; its clocks start there).
        return Review({"next_check_at": None}, [])
    policy: Policy | None = None
    if sla is not None and row.get("sla_policy"):
        policy = next((p for p in sla.policies if p.name == row["sla_policy"]), None)
    steps: list[tuple[str, EventKind, tuple[Escalation, ...], dict[str, Any]]] = []
    columns: dict[str, Any] = {}
    upcoming: list[datetime] = []
    facts = {"queue": row["queue"], "priority": row["priority"], "type": row["type"]}
    if policy is not None:
        state = sla_state(policy, row["created_at"], now, events=_pause_events(row),
                          first_response_at=row["first_response_at"],
                          resolved_at=row["resolved_at"])
        targets: dict[str, TargetState | None] = {"first_response": state.first_response,
                                                  "resolution": state.resolution}
        columns = {"first_response_due_at": state.first_response.due_at
                   if state.first_response else None,
                   "resolution_due_at": state.resolution.due_at if state.resolution else None}
        open_dues = [t.due_at for t in targets.values() if t is not None
                     and t.status in ("ok", "warning", "breached") and t.met_at is None]
        columns["due_at"] = min(open_dues) if open_dues else None
        for name, target in targets.items():
            if target is None or target.met_at is not None or target.paused:
                continue
            for status in ("warning", "breached"):
                if target.status == status or (status == "warning"
                                               and target.status == "breached"):
                    fired = steps_for(rules, trigger=status, target=name, **facts)
                    steps.append((f"{name}:{status}", _SLA_EVENTS[status], fired,
                                  {"target": name, "due_at": target.due_at.isoformat(),
                                   "policy": policy.name}))
            if target.status == "ok":
                upcoming.append(target.warn_at)
            elif target.status == "warning":
                upcoming.append(target.due_at)
    for rule in rules:
        if rule.trigger == "unclaimed" and rule.unclaimed_for is not None and rule.applies(
                **facts):
            since = _clock_start(row)
            due = since + rule.unclaimed_for
            if row["status"] == Status.NEW and row["claimed_by"] is None:
                if now >= due:
                    steps.append((f"unclaimed:{rule.name}", EventKind.ESCALATED, (rule,),
                                  {"unclaimed_since": since.isoformat()}))
                else:
                    upcoming.append(due)
        if rule.trigger == "reopened" and rule.reopened is not None and rule.applies(**facts) \
                and row["reopened_count"] >= rule.reopened:
            steps.append((f"reopened:{rule.name}:{row['reopened_count']}", EventKind.ESCALATED,
                          (rule,), {"reopened": row["reopened_count"]}))
    # Look again at the next moment something can change, at least once a while
    # (a pause may end, a rule may be added).
    columns["next_check_at"] = min([*upcoming, now + timedelta(seconds=check_seconds * 60)])
    return Review(columns, steps)


def describe(request: dict[str, Any], sla: SlaConfig | None,
             now: datetime) -> dict[str, Any] | None:
    """The request's service levels as the API shows them: each target's due
    time, warning time and status now; None when no policy applies."""
    name = request.get("sla_policy")
    policy = next((p for p in sla.policies if p.name == name), None) if sla and name else None
    if policy is None or request.get("created_at") is None:
        return None
    state = sla_state(policy, request["created_at"], now, events=_pause_events(request),
                      first_response_at=request.get("first_response_at"),
                      resolved_at=request.get("resolved_at"))

    def target(t: TargetState | None) -> dict[str, Any] | None:
        if t is None:
            return None
        return {"target_seconds": int(t.target.total_seconds()), "due_at": t.due_at,
                "warn_at": t.warn_at, "status": t.status, "met_at": t.met_at,
                "paused": t.paused}

    return {"policy": policy.name, "warn_at_fraction": policy.warn_at,
            "first_response": target(state.first_response),
            "resolution": target(state.resolution)}
