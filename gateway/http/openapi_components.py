"""The OpenAPI document's component schemas: every JSON shape the API takes or
sends. Enumerations and limits come from the code that enforces them.
"""

from __future__ import annotations

from collections.abc import Sequence

from domain.lifecycle import SETTABLE, EventKind, Status
from gateway.http.bodies import (
    DEFAULT_LEASE_SECONDS,
    LANGUAGE,
    MAX_AGENT_NAME,
    MAX_CANNED_BODY,
    MAX_CANNED_NAME,
    MAX_CLAIM,
    MAX_ESCALATION,
    MAX_FILENAME,
    MAX_LEASE_SECONDS,
    MAX_REPLY_ATTACHMENT_BYTES,
    MAX_REPLY_ATTACHMENTS,
    MAX_REPLY_CC,
    MAX_REPLY_HTML,
    MAX_TOKEN_NAME,
    MAX_WAIT_SECONDS,
    MEDIA_TYPE,
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
from parsers.auth_results import (
    ARC_RESULTS,
    DKIM_RESULTS,
    DMARC_POLICIES,
    DMARC_RESULTS,
    MAX_DOMAINS,
    MAX_IGNORED,
    SPF_RESULTS,
)
from routing.fields import AUTH_SOURCES, PRIORITIES
from storage.tokens import ROLES

SETTABLE_STATUSES = [s.value for s in SETTABLE]
REQUEST_STATUSES = [*SETTABLE_STATUSES, Status.QUARANTINED.value, Status.MERGED.value]
HAND_OFF: Schema = {"type": "boolean", "default": True,
                    "description": "may move requests to any queue, also one outside its "
                                   "scope (a hand-off)"}
CANNED_BODY = ("a Jinja2 template (sandboxed, undefined names are errors) over `reference`, "
               "`subject`, `queue`, `status`, `priority`, `requester.name`, "
               "`requester.email`, `agent.name`; 422 if it cannot be rendered")
LEASE_SECONDS: Schema = {"type": "integer", "minimum": 1, "maximum": MAX_LEASE_SECONDS,
                         "default": DEFAULT_LEASE_SECONDS, "description": WHOLE}


# An agent's own notification settings (null: the queue's).
_CLOCK = "([01][0-9]|2[0-3]):[0-5][0-9]"
QUIET_HOURS: Schema = {
    "type": ["string", "null"], "pattern": f"^{_CLOCK}-{_CLOCK}$",
    "description": "quiet hours HH:MM-HH:MM in the queue's calendar time zone; null: the queue's"}
DIGEST_MINUTES: Schema = {
    "type": ["integer", "null"], "minimum": 0, "maximum": 1440,
    "description": "notices gathered this many minutes into one mail; null: the queue's"}


def _results(values: Sequence[str], what: str) -> Schema:
    return {"type": "string", "enum": list(values), "description": what}


AUTHENTICATION: Schema = obj({
    "source": _results(AUTH_SOURCES, "`verified`: checked by the gateway (a listener's "
                       "`sender_auth = \"verify\"`); `trusted`: read from the "
                       "Authentication-Results of a trusted front MTA (`trust`)"),
    "spf": _results(SPF_RESULTS, "SPF, for the envelope sender"),
    "spf_domain": {**OPT_STR, "description": "the MAIL FROM domain checked (HELO's when "
                   "there was none)"},
    "dkim": _results(DKIM_RESULTS, "`pass` when any DKIM signature passes"),
    "dkim_domains": {"type": "array", "items": STR, "maxItems": MAX_DOMAINS,
                     "description": "d= of the signatures that passed"},
    "dmarc": _results(DMARC_RESULTS, "DMARC, for the From domain"),
    "dmarc_policy": {"type": ["string", "null"], "enum": [*DMARC_POLICIES, None],
                     "description": "the From domain's published policy, when known"},
    "from_domain": {**OPT_STR, "description": "the From domain DMARC is about"},
    "arc": _results(ARC_RESULTS, "the ARC chain"),
    "authserv_id": {**OPT_STR, "description": "`trusted`: the front MTA whose results "
                    "were believed (null: none stood at the top of the header)"},
    "ignored": {"type": "array", "items": STR, "maxItems": MAX_IGNORED,
                "description": "authserv-ids of Authentication-Results headers not "
                               "believed (another host's, or below the front MTA's; "
                               "`(unreadable)`: no id could be read)"},
}, description="a message's sender authentication; a From that fails DMARC of a domain "
               "whose policy is quarantine or reject never joins a request and is "
               "never acknowledged")
SPAM_VERDICT: Schema = obj({
    "score": {"type": ["number", "null"], "description": "the filter's score"},
    "flag": {"type": ["boolean", "null"], "description": "the filter called it spam"},
    "filter": {"type": "string", "description": "`spamassassin` or `rspamd`"},
}, description="a trusted front spam filter's verdict (a listener's `spam_headers`)")
EVENT_KINDS = ", ".join(f"`{kind.value}`" for kind in EventKind)


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
            "authentication": {**nullable(ref("Authentication")),
                               "description": "null: the sender was not checked (a "
                               "listener's `sender_auth = \"off\"`, IMAP, API, forms)"},
            "spam": {**nullable(ref("SpamVerdict")),
                     "description": "null: no front filter's verdict was read"},
        }),
        "Authentication": AUTHENTICATION,
        "SpamVerdict": SPAM_VERDICT,
        "Event": obj({"kind": {**STR, "description": f"one of {EVENT_KINDS}"},
                      "actor": {**STR, "description": "`agent:<id>` (a person), "
                                "`token:<id>` (a token of no agent), `system`, `rule`, "
                                "`requester`, `scheduler`"},
                      "actor_name": {**OPT_STR, "description": "the agent's name, for "
                                     "`agent:<id>`"},
                      "at": DATE_TIME, "data": {"type": "object"}},
                     required=["kind", "actor", "at", "data"]),
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
            "claimed_by_name": {**OPT_STR, "description": "the agent's name, when an agent "
                                "holds the claim"},
            "due_at": nullable(DATE_TIME),
            "sla_policy": OPT_STR,
            "first_response_due_at": nullable(DATE_TIME),
            "resolution_due_at": nullable(DATE_TIME),
            "first_response_at": nullable(DATE_TIME),
            "resolved_at": nullable(DATE_TIME),
            "reopened_count": {"type": "integer", "minimum": 0,
                               "description": "how often it was reopened"},
            "linked_from": {**OPT_STR, "description": "the finished request this one "
                            "follows up (a reply after that one's reopen window)"},
            "follow_ups": {"type": "array", "items": STR,
                           "description": "the requests that follow this one up"},
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
        "HealthReport": obj({
            "status": {"enum": ["healthy", "warning", "critical", "unknown"]},
            "exit_code": {"type": "integer", "enum": [0, 1, 2, 3],
                          "description": "Nagios: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN"},
            "issues": {"type": "array", "items": obj({
                "code": {"enum": ["database_unreachable", "dead_letters", "pipeline_lag",
                                  "scheduler_late", "outbox_failing", "relay_unreachable",
                                  "listener_unreachable", "rules_reload_failed",
                                  "task_down"]},
                "severity": {"enum": ["warning", "critical", "unknown"]},
                "message": STR,
                "value": {"type": ["number", "null"]},
            })},
            "figures": {"type": "object", "additionalProperties": {"type": "number"},
                        "description": "the database's figures behind the checks"},
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
            "may_hand_off": HAND_OFF,
        }, required=["role"]),
        "CreatedToken": obj({
            "id": INT, "name": STR, "role": {"enum": list(ROLES)},
            "queues": {"type": "array", "items": STR},
            "may_hand_off": {"type": "boolean"},
            "agent_id": {"type": ["integer", "null"],
                         "description": "the agent it acts for (`agent:<id>`)"},
            "token": {"type": "string", "description": "the secret, shown only this once"},
        }),
        "TokenInfo": obj({
            "id": INT, "name": STR, "role": {"enum": list(ROLES)},
            "queues": {"type": "array", "items": STR},
            "agent_id": {"type": ["integer", "null"]}, "may_hand_off": {"type": "boolean"},
            "created_at": DATE_TIME, "revoked_at": nullable(DATE_TIME),
        }),
        "NewAgent": obj({
            "name": {"type": "string", "minLength": 1, "maxLength": MAX_AGENT_NAME,
                     "pattern": NOT_BLANK},
            "email": {"type": "string", "pattern": EMAIL,
                      "description": "one address (unique among agents)"},
            "queues": {"type": "array", "items": queue_name,
                       "description": "the queues they work: their tokens' scope (none: all)"},
            "active": {"type": "boolean", "default": True,
                       "description": "false: their tokens stop working"},
            "quiet_hours": QUIET_HOURS, "digest_minutes": DIGEST_MINUTES,
        }, required=["name", "email"]),
        "AgentChanges": obj({
            "name": {"type": "string", "minLength": 1, "maxLength": MAX_AGENT_NAME,
                     "pattern": NOT_BLANK},
            "email": {"type": "string", "pattern": EMAIL},
            "queues": {"type": "array", "items": queue_name},
            "active": {"type": "boolean"},
            "quiet_hours": QUIET_HOURS, "digest_minutes": DIGEST_MINUTES,
        }, required=[], minProperties=1),
        "Agent": obj({
            "id": INT, "name": STR, "email": STR, "queues": {"type": "array", "items": STR},
            "active": {"type": "boolean"}, "quiet_hours": QUIET_HOURS,
            "digest_minutes": DIGEST_MINUTES, "created_at": DATE_TIME, "updated_at": DATE_TIME,
        }),
        "NewAgentToken": obj({
            "name": {"type": "string", "maxLength": MAX_TOKEN_NAME,
                     "description": "default: the agent's name"},
            "may_hand_off": HAND_OFF,
        }, required=[]),
        "NewCannedResponse": obj({
            "queue": queue_name,
            "language": {"type": "string", "pattern": LANGUAGE, "maxLength": 16,
                         "default": "en"},
            "name": {"type": "string", "minLength": 1, "maxLength": MAX_CANNED_NAME,
                     "pattern": NOT_BLANK},
            "body": {"type": "string", "minLength": 1, "maxLength": MAX_CANNED_BODY,
                     "pattern": NOT_BLANK, "description": CANNED_BODY},
        }, required=["queue", "name", "body"]),
        "CannedResponseChanges": obj({
            "queue": queue_name,
            "language": {"type": "string", "pattern": LANGUAGE, "maxLength": 16},
            "name": {"type": "string", "minLength": 1, "maxLength": MAX_CANNED_NAME},
            "body": {"type": "string", "minLength": 1, "maxLength": MAX_CANNED_BODY,
                     "description": CANNED_BODY},
        }, required=[], minProperties=1),
        "CannedResponse": obj({
            "id": INT, "queue": STR, "language": STR, "name": STR, "body": STR,
            "created_at": DATE_TIME, "updated_at": DATE_TIME,
            "rendered": {**OPT_STR, "description": "with `reference`: the text for that "
                         "request (null if it cannot be rendered for it)"},
            "render_error": {**STR, "description": "why it could not be rendered"},
        }, required=["id", "queue", "language", "name", "body", "created_at",
                     "updated_at"]),
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
            "claimed_by_name": {**OPT_STR, "description": "the agent's name, when an agent "
                                "holds the claim"},
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
            "queue": {**queue_name, "description": "a configured queue; one outside the "
                      "token's scope is a hand-off (403 without `may_hand_off`)"},
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
                "body": {"type": "string",
                         "description": "the text; required unless `canned_response` or "
                                        "`html` gives it"},
                "canned_response": {"type": "integer", "minimum": 1,
                                    "description": "a canned response of a queue the token "
                                                   "sees, rendered for this request and "
                                                   "put after `body`"},
                "status": {"enum": [*SETTABLE_STATUSES, None],
                           "description": "also set the request's status"},
                "cc": {"type": "array", "maxItems": MAX_REPLY_CC,
                       "items": {"type": "string", "pattern": EMAIL},
                       "description": "copies: each exactly one address"},
                "html": {"type": ["string", "null"], "maxLength": MAX_REPLY_HTML,
                         "description": "an HTML part, sanitised (allow-list: no script, "
                                        "style, event handlers or javascript: links)"},
                "attachments": {"type": "array", "maxItems": MAX_REPLY_ATTACHMENTS,
                                "items": ref("ReplyAttachment"),
                                "description": f"at most {MAX_REPLY_ATTACHMENT_BYTES} bytes "
                                               "together, decoded"},
            },
            "description": "other keys are ignored",
        },
        "ReplyAttachment": obj({
            "filename": {"type": "string", "minLength": 1, "maxLength": MAX_FILENAME},
            "content_type": {"type": "string", "pattern": MEDIA_TYPE, "maxLength": 200,
                             "default": "application/octet-stream",
                             "description": "not multipart/* or message/*"},
            "content_base64": {"type": "string", "contentEncoding": "base64"},
        }, required=["filename", "content_base64"]),
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
        "Merged": {"oneOf": [
            obj({"reference": STR, "status": {"const": Status.MERGED.value},
                 "into": STR, "merged": {"const": True}}),
            obj({"reference": STR, "merged": {"const": False},
                 "linked_from": {**STR, "description": "the target was finished longer "
                                 "ago than its queue's reopen_days: this request stays "
                                 "open, linked to it"}})]},
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
