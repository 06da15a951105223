"""The OpenAPI document's `webhooks`: every event sent to `[[webhook]]`
subscribers (and, with the same body, to the broker), and each one's body.

One entry per `domain.lifecycle.PublicEvent`; the body is an envelope (event,
reference, when, the requester, a delivery id) around the event's own `data`.
"""

from __future__ import annotations

from domain.lifecycle import Status
from gateway.http.openapi_schema import (
    DATE_TIME,
    OPT_STR,
    STR,
    Schema,
    nullable,
    obj,
    ref,
)

STATUSES = [s.value for s in Status if s != Status.RECEIVED]
STATUS: Schema = {"type": "string", "enum": STATUSES}
ACTOR: Schema = {"type": "string", "description": "who did it: an agent (as the timeline "
                 "names them), `requester`, `rule`, `scheduler` or `system`"}

# What each event says in `data`, and when it is sent.
EVENTS: dict[str, tuple[str, Schema]] = {
    "created": ("A new request was stored (any channel).", obj({
        "queue": STR, "status": STATUS, "priority": OPT_STR, "type": OPT_STR,
        "channel": STR, "subject": STR,
        "linked_from": {**OPT_STR, "description": "the finished request this one follows "
                        "up (a customer's reply after its reopen window), else null"}})),
    "routed": ("Where a new request was routed (sent with `created`).", obj({
        "queue": STR, "priority": OPT_STR, "type": OPT_STR, "component": OPT_STR,
        "tags": {"type": "array", "items": STR}})),
    "status_changed": ("The status changed: by an agent (PATCH, or a reply that sets "
                       "one), a customer's reply (waiting → open; resolved or closed → "
                       "reopened), a merge, or a release from quarantine.", obj({
                           "from": nullable(STATUS), "status": STATUS, "actor": ACTOR})),
    "replied": ("An agent answered the requester.", obj({
        "message_id": STR, "actor": ACTOR, "status": nullable(STATUS)})),
    "escalated": ("Escalated by hand or by an escalation rule of the scheduler; `data` "
                  "holds what changed and why.", obj({
                      "changes": {"type": "object"}}, closed=False)),
    "message_received": ("A message joined an existing request (a customer's reply; "
                         "`automatic` for an auto-reply).", obj({
                             "message_id": OPT_STR, "channel": STR, "subject": STR,
                             "from": obj({"email": OPT_STR, "name": OPT_STR}),
                             "automatic": {"type": "boolean"}})),
    "bounced": ("A delivery report on one of our messages arrived.", obj({
        "message_id": OPT_STR,
        "bounced_message_id": {**STR, "description": "our message that bounced"},
        "report": {"type": "object", "description": "the delivery report as parsed"}})),
    "merged": ("This request was merged into another (a `status_changed` to `merged` "
               "follows).", obj({"into": STR, "actor": ACTOR})),
    "note_added": ("An agent added an internal note.", obj({
        "actor": ACTOR, "body": OPT_STR})),
    "sla_warning": ("A service-level target reached its warning time.", obj({
        "target": {"type": "string", "enum": ["first_response", "resolution"]},
        "due_at": DATE_TIME, "policy": STR})),
    "sla_breached": ("A service-level target was missed (an `escalated` event follows "
                     "when a rule acts on it).", obj({
                         "target": {"type": "string", "enum": ["first_response",
                                                               "resolution"]},
                         "due_at": DATE_TIME, "policy": STR})),
    "reopened": ("A resolved or closed request was reopened: by a customer's reply within "
                 "its queue's `reopen_days`, by a merge, or by hand.", obj({
                     "from": nullable(STATUS),
                     "by": {"type": "string", "enum": ["customer reply", "merge", "hand"]}},
                     required=["from", "by"], closed=False)),
}


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def webhook_schemas() -> dict[str, Schema]:
    """A body schema per event, named `Webhook<Event>`."""
    return {f"Webhook{_camel(name)}": obj({
        "event": {"const": name},
        "reference": STR,
        "at": DATE_TIME,
        "data": data,
        "requester": obj({"email": OPT_STR, "name": OPT_STR},
                         description="who the request is for"),
        "delivery": {**STR, "description": "the same on every retry of one event"},
    }) for name, (_, data) in EVENTS.items()}


def _header(name: str, description: str) -> Schema:
    return {"name": name, "in": "header", "required": True, "description": description,
            "schema": STR}


def webhooks() -> dict[str, Schema]:
    """The document's `webhooks`: a POST to each subscriber per event it wants."""
    headers = [
        _header("X-Intake-Event", "the event name"),
        _header("X-Intake-Delivery", "the delivery id, the same on every retry"),
        _header("X-Intake-Timestamp", "Unix time of the attempt"),
        _header("X-Intake-Signature", "`v1=<hex>`: HMAC-SHA256 with the subscription's "
                "secret over `<timestamp>.` followed by the body's bytes"),
    ]
    return {name: {"post": {
        "operationId": f"webhook{_camel(name)}",
        "summary": summary,
        "parameters": headers,
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": ref(f"Webhook{_camel(name)}")}}},
        "responses": {"2XX": {"description": "received; any other answer is retried "
                              "with backoff (a 4xx other than 408 and 429 is not)"}},
    }} for name, (summary, _) in EVENTS.items()}
