"""The OpenAPI document's component schemas: every JSON shape the API takes or
sends. Enumerations and limits come from the code that enforces them.
"""

from __future__ import annotations

from collections.abc import Sequence

from domain.lifecycle import SETTABLE, Status
from gateway.http.bodies import (
    DEFAULT_LEASE_SECONDS,
    MAX_CLAIM,
    MAX_ESCALATION,
    MAX_LEASE_SECONDS,
    MAX_TOKEN_NAME,
    MAX_WAIT_SECONDS,
)
from gateway.http.openapi_schema import (
    DATE_TIME,
    EMAIL,
    INT,
    NOT_BLANK,
    OPT_STR,
    SIMPLE_VALUE,
    STR,
    URL,
    WHOLE,
    Schema,
    nullable,
    obj,
    ref,
)
from parsers.api_request import MAX_BODY, MAX_CUSTOM_FIELDS, MAX_NAME, MAX_SUBJECT
from routing.fields import PRIORITIES
from storage.tokens import ROLES

SETTABLE_STATUSES = [s.value for s in SETTABLE]
REQUEST_STATUSES = [*SETTABLE_STATUSES, Status.QUARANTINED.value, Status.MERGED.value]
LEASE_SECONDS: Schema = {"type": "integer", "minimum": 1, "maximum": MAX_LEASE_SECONDS,
                         "default": DEFAULT_LEASE_SECONDS, "description": WHOLE}


def component_schemas(queues: Sequence[str]) -> dict[str, Schema]:
    queue_name: Schema = {"type": "string", "enum": list(queues)} if queues else STR
    return {
        "Problem": obj({
            "type": {"type": "string", "format": "uri-reference",
                     "description": "always `about:blank`: the status code says it all"},
            "title": STR,
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": STR,
            "errors": {"type": "array", "items": ref("ProblemItem"),
                       "description": "one entry per invalid field or parameter"},
        }, required=["type", "title", "status"], closed=False,
            description="RFC 9457 problem document (application/problem+json)"),
        "ProblemItem": {
            "type": "object",
            "properties": {
                "pointer": {"type": "string",
                            "description": "JSON Pointer (RFC 6901) into the request body"},
                "parameter": {"type": "string", "description": "name of a query parameter"},
                "detail": STR,
            },
            "required": ["detail"],
            "oneOf": [{"required": ["pointer"]}, {"required": ["parameter"]}],
        },
        "NewRequest": obj({
            "requester": {
                "type": "object",
                "properties": {
                    "email": {"type": "string", "maxLength": 254, "pattern": EMAIL,
                              "description": "one address (an addr-spec): no name, list, "
                                             "group, quoting or comment; a public domain"},
                    "name": {"type": ["string", "null"], "maxLength": MAX_NAME},
                },
                "required": ["email"],
                "description": "other keys are ignored",
            },
            "subject": {"type": "string", "maxLength": MAX_SUBJECT, "pattern": NOT_BLANK,
                        "description": "not blank; runs of white space become one space"},
            "body": {"type": "string", "maxLength": MAX_BODY},
            "custom_fields": {"type": "object", "maxProperties": MAX_CUSTOM_FIELDS,
                              "additionalProperties": SIMPLE_VALUE},
        }, required=["requester", "subject", "body"]),
        "Accepted": obj({
            "reference": STR, "url": URL,
            "status": {"const": Status.RECEIVED.value,
                       "description": "stored; processing follows (read it by reference)"},
        }),
        "Person": obj({"email": OPT_STR, "name": OPT_STR}),
        "Address": {"type": "object",
                    "properties": {"address": OPT_STR, "name": OPT_STR}},
        "AttachmentInfo": obj({
            "id": INT, "filename": OPT_STR, "content_type": STR, "size": INT,
            "sha256": STR, "content_id": OPT_STR, "inline": {"type": "boolean"},
        }),
        "Message": obj({
            "direction": {"enum": ["in", "out"]},
            "message_id": OPT_STR, "in_reply_to": OPT_STR,
            "references": {"type": "array", "items": STR},
            "from": obj({"address": OPT_STR, "name": OPT_STR}),
            "to": {"type": "array", "items": ref("Address")},
            "cc": {"type": "array", "items": ref("Address")},
            "subject": STR, "new_text": STR, "text": STR,
            "flags": {"type": "object"},
            "created_at": DATE_TIME,
            "attachments": {"type": "array", "items": ref("AttachmentInfo")},
        }),
        "Event": obj({"kind": STR, "actor": STR, "at": DATE_TIME,
                      "data": {"type": "object"}}),
        "Request": obj({
            "reference": STR,
            "status": {"type": "string", "enum": REQUEST_STATUSES},
            "queue": STR, "channel": STR,
            "priority": OPT_STR, "type": OPT_STR, "category": OPT_STR,
            "component": OPT_STR,
            "requester": ref("Person"),
            "subject": STR,
            "custom_fields": {"type": "object", "additionalProperties": SIMPLE_VALUE},
            "tags": {"type": "array", "items": STR},
            "escalation_level": {"type": "integer", "minimum": 0},
            "created_at": DATE_TIME, "updated_at": DATE_TIME,
            "version": {"type": "integer", "minimum": 1,
                        "description": "also sent as the ETag `\"v<version>\"`"},
            "claimed_by": OPT_STR, "claim_until": nullable(DATE_TIME),
            "due_at": nullable(DATE_TIME),
            "sla_policy": OPT_STR,
            "first_response_due_at": nullable(DATE_TIME),
            "resolution_due_at": nullable(DATE_TIME),
            "first_response_at": nullable(DATE_TIME),
            "resolved_at": nullable(DATE_TIME),
            "reopened_count": {"type": "integer", "minimum": 0},
            "sla": {"oneOf": [{"type": "null"}, ref("ServiceLevels")],
                    "description": "each target's due and warning times and status now"},
            "url": URL,
            "input_reference": {"type": "string", "description": "the reference asked "
                                "for, when it is an email that joined this request as a "
                                "reply (the reference its sender was given)"},
            "status_url": {**URL, "description": "the customer's status page, if it has one"},
            "messages": {"type": "array", "items": ref("Message")},
            "timeline": {"type": "array", "items": ref("Event")},
        }, required=["reference", "status", "queue", "channel", "priority", "type",
                     "category", "component", "requester", "subject", "custom_fields",
                     "tags", "escalation_level", "created_at", "updated_at", "version",
                     "claimed_by", "claim_until", "due_at", "url", "messages", "timeline"]),
        "DeadInbox": obj({
            "item": STR, "id": INT, "reference": STR, "channel": STR,
            "received_at": nullable(DATE_TIME), "attempts": INT, "last_error": OPT_STR,
        }),
        "DeadOutbox": obj({
            "item": STR, "id": INT, "kind": STR, "reference": OPT_STR,
            "created_at": nullable(DATE_TIME), "attempts": INT, "last_error": OPT_STR,
        }),
        "DeadLetters": obj({
            "inbox": {"type": "array", "items": ref("DeadInbox")},
            "outbox": {"type": "array", "items": ref("DeadOutbox")},
        }),
        "DeadLetterRetried": obj({"item": STR, "state": {"const": "pending"}}),
        "TargetState": obj({
            "target_seconds": INT, "due_at": DATE_TIME, "warn_at": DATE_TIME,
            "status": {"enum": ["ok", "warning", "breached", "met"]},
            "met_at": nullable(DATE_TIME), "paused": {"type": "boolean"},
        }),
        "ServiceLevels": obj({
            "policy": STR, "warn_at_fraction": {"type": "number"},
            "first_response": {"oneOf": [{"type": "null"}, ref("TargetState")]},
            "resolution": {"oneOf": [{"type": "null"}, ref("TargetState")]},
        }),
        "ReceivedRequest": obj({
            "reference": STR,
            "status": {"const": Status.RECEIVED.value},
            "processing": {"enum": ["pending", "processing", "done", "dead"]},
            "channel": STR,
            "received_at": DATE_TIME,
            "last_error": {**OPT_STR, "description": "why it failed, when dead-lettered"},
            "url": URL,
        }, description="stored but not (yet) a request"),
        "MessageMatch": obj({
            "reference": STR, "status": STR, "queue": STR, "subject": STR,
            "message_id": OPT_STR, "received_at": DATE_TIME, "url": URL,
        }),
        "RulesStatus": obj({
            "source": STR, "loaded_at": DATE_TIME,
            "rules": {"type": "integer", "minimum": 0},
            "components": {"type": "integer", "minimum": 0},
            "queues": {"type": "array", "items": STR},
            "default_queue": STR,
            "last_reload": nullable(obj({
                "at": DATE_TIME, "ok": {"type": "boolean"},
                "errors": {"type": "array", "items": STR}, "changed": {"type": "boolean"},
            })),
        }),
        "NewToken": obj({
            "role": {"enum": list(ROLES)},
            "queues": {"type": "array", "items": queue_name,
                       "description": "for agents: the queues it may see (none: all)"},
            "name": {"type": "string", "maxLength": MAX_TOKEN_NAME},
        }, required=["role"]),
        "CreatedToken": obj({
            "id": INT, "name": STR, "role": {"enum": list(ROLES)},
            "queues": {"type": "array", "items": STR},
            "token": {"type": "string", "description": "the secret, shown only this once"},
        }),
        "TokenInfo": obj({
            "id": INT, "name": STR, "role": {"enum": list(ROLES)},
            "queues": {"type": "array", "items": STR},
            "created_at": DATE_TIME, "revoked_at": nullable(DATE_TIME),
        }),
        "Quarantined": obj({
            "reference": STR, "queue": STR, "subject": STR, "requester": OPT_STR,
            "created_at": DATE_TIME, "url": URL,
        }),
        "Released": obj({"reference": STR, "status": {"const": Status.NEW.value},
                         "queue": STR}),
        "QueueOverview": obj({
            "name": STR,
            "depth": {"type": "integer", "minimum": 0,
                      "description": "requests waiting or worked on (new, open, reopened)"},
            "unclaimed": {"type": "integer", "minimum": 0},
            "oldest_waiting_seconds": {"type": ["number", "null"]},
            "past_due": {"type": "integer", "minimum": 0},
        }),
        "QueueItem": obj({
            "reference": STR, "status": STR, "queue": STR, "priority": OPT_STR,
            "type": OPT_STR, "component": OPT_STR, "subject": STR, "requester": OPT_STR,
            "tags": {"type": "array", "items": STR},
            "due_at": nullable(DATE_TIME), "created_at": DATE_TIME, "version": INT,
            "claimed_by": {**OPT_STR, "description": "null once the lease has run out"},
            "url": URL,
        }),
        "QueuePage": obj({
            "items": {"type": "array", "items": ref("QueueItem")},
            "next_cursor": {**OPT_STR, "description": "pass as `cursor` for the next page"},
        }),
        "ClaimRequest": {
            "type": "object",
            "properties": {
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_CLAIM, "default": 1,
                          "description": WHOLE},
                "lease_seconds": LEASE_SECONDS,
                "wait": {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_SECONDS,
                         "default": 0,
                         "description": "long-poll: seconds to wait for work if none; " + WHOLE},
            },
            "description": "other keys are ignored",
        },
        "Claimed": obj({
            "reference": STR, "queue": STR, "subject": STR, "priority": OPT_STR,
            "lease_until": DATE_TIME, "url": URL,
        }),
        "LeaseRequest": {
            "type": "object",
            "properties": {"lease_seconds": LEASE_SECONDS},
            "description": "other keys are ignored",
        },
        "Lease": obj({"reference": STR, "lease_until": DATE_TIME}),
        "RequestChanges": obj({
            "status": {"enum": SETTABLE_STATUSES},
            "queue": {**queue_name, "description": "a queue this token can see"},
            "priority": {"enum": list(PRIORITIES)},
            "type": OPT_STR, "category": OPT_STR, "component": OPT_STR,
            "tags": {"type": "array", "items": STR,
                     "description": "replaces the tags; duplicates are dropped"},
            "custom_fields": {"type": "object", "additionalProperties": SIMPLE_VALUE,
                              "description": "replaces the custom fields"},
            "escalation_level": {"type": "integer", "minimum": 0, "maximum": MAX_ESCALATION,
                                 "description": "admin tokens only (422 for agents); " + WHOLE},
        }, required=[], minProperties=1),
        "Versioned": obj({"reference": STR, "version": INT}),
        "NewNote": {"type": "object",
                    "properties": {"body": {"type": "string", "pattern": NOT_BLANK}},
                    "required": ["body"], "description": "other keys are ignored"},
        "NoteAdded": obj({"reference": STR}),
        "NewReply": {
            "type": "object",
            "properties": {
                "body": {"type": "string", "pattern": NOT_BLANK},
                "status": {"enum": [*SETTABLE_STATUSES, None],
                           "description": "also set the request's status"},
            },
            "required": ["body"], "description": "other keys are ignored",
        },
        "ReplyQueued": obj({"reference": STR, "message_id": STR, "version": INT}),
        "Escalation": {
            "type": "object",
            "properties": {"reason": STR,
                           "queue": {**queue_name, "description": "move it there too"}},
            "description": "other keys are ignored",
        },
        "MergeRequest": {"type": "object",
                         "properties": {"into": {"type": "string",
                                                 "description": "reference of the survivor"}},
                         "required": ["into"], "description": "other keys are ignored"},
        "Merged": obj({"reference": STR, "status": {"const": Status.MERGED.value},
                       "into": STR}),
        "StatusPage": obj({
            "reference": STR, "status": STR, "subject": STR,
            "created_at": DATE_TIME, "updated_at": DATE_TIME,
            "messages": {"type": "array", "items": obj({
                "from": {"type": "string",
                         "description": "`you` for the customer's own messages"},
                "subject": STR, "text": STR, "at": DATE_TIME})},
        }),
        "Health": obj({"status": {"const": "ok"},
                       "tasks": {"type": "object", "additionalProperties": ref("TaskHealth"),
                                 "description": "each background task, by name"}}),
        "TaskHealth": obj({
            "state": {"enum": ["running", "waiting", "stalled", "restarting", "finished"]},
            "restarts": {"type": "integer", "minimum": 0},
            "progress_seconds_ago": {"type": "number", "minimum": 0},
            "last_error": {"type": ["string", "null"],
                           "description": "the type of the last failure (the log has more)"},
            "last_error_seconds_ago": {"type": ["number", "null"], "minimum": 0}}),
        "Ready": obj({"status": {"const": "ready"},
                      "checks": {"type": "object", "additionalProperties": STR,
                                 "description": "`database` and, with workers, "
                                                "`inbox-writer`: what each check found"}}),
    }
