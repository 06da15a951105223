"""The published API contract: an OpenAPI 3.1 document, built in code.

`document()` describes every route `gateway.http.app.build_app` serves, with the
status codes each handler can answer and the JSON shapes it sends (component
schemas are JSON Schema 2020-12). `serve` returns it at GET /v1/openapi.json
with this deployment's public URL and queue names filled in.

Keep it true to the handlers: tests/e2e/test_openapi.py checks that every
route is documented and runs Schemathesis against a live gateway with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web

from gateway.http.shared import CONFIG, json_response

Schema = dict[str, Any]

DATE_TIME: Schema = {"type": "string", "format": "date-time",
                     "description": "ISO 8601 (RFC 3339) timestamp with UTC offset"}
URL: Schema = {"type": "string", "format": "uri"}
SIMPLE_VALUE: Schema = {"type": ["string", "number", "boolean", "null"]}
PRIORITIES = ["P1", "P2", "P3", "P4"]
# What the server's Python regexes and str.strip() take as white space (Unicode),
# spelled out so that every regex dialect reads the patterns the same way.
_WS = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK = f"[^{_WS}]"
EMAIL = f"^[^@{_WS}]{{1,64}}@[^@{_WS}]{{1,255}}$"
ROLES = ["admin", "agent", "intake"]
SETTABLE_STATUSES = ["new", "open", "waiting", "resolved", "closed", "reopened"]
REQUEST_STATUSES = [*SETTABLE_STATUSES, "quarantined", "merged"]


def _nullable(schema: Schema) -> Schema:
    """The same schema, also allowing JSON null."""
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    out = dict(schema)
    kind = out.get("type")
    if isinstance(kind, str):
        out["type"] = [kind, "null"]
    elif isinstance(kind, list) and "null" not in kind:
        out["type"] = [*kind, "null"]
    return out


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict[str, Schema], *, required: Sequence[str] | None = None,
         closed: bool = True, **extra: Any) -> Schema:
    """An object; by default every property is required and no other is sent."""
    schema: Schema = {"type": "object", "properties": properties,
                      "required": list(properties) if required is None else list(required)}
    if closed:
        schema["additionalProperties"] = False
    schema.update(extra)
    return schema


def _items(item: Schema) -> Schema:
    return _obj({"items": {"type": "array", "items": item}})


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
WHOLE = "a JSON integer written without a fraction (`5`, not `5.0`: 422)"
OPT_STR = _nullable(STR)


# --- component schemas -------------------------------------------------------

def _schemas(queues: Sequence[str]) -> dict[str, Schema]:
    queue_name: Schema = {"type": "string", "enum": list(queues)} if queues else STR
    return {
        "Problem": _obj({
            "type": {"type": "string", "format": "uri-reference",
                     "description": "always `about:blank`: the status code says it all"},
            "title": STR,
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": STR,
            "errors": {"type": "array", "items": _ref("ProblemItem"),
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
        "NewRequest": _obj({
            "requester": {
                "type": "object",
                "properties": {
                    "email": {"type": "string", "maxLength": 320,
                              "pattern": EMAIL},
                    "name": {"type": ["string", "null"], "maxLength": 200},
                },
                "required": ["email"],
                "description": "other keys are ignored",
            },
            "subject": {"type": "string", "maxLength": 998, "pattern": NOT_BLANK,
                        "description": "not blank; runs of white space become one space"},
            "body": {"type": "string", "maxLength": 1_000_000},
            "custom_fields": {"type": "object", "maxProperties": 50,
                              "additionalProperties": SIMPLE_VALUE},
        }, required=["requester", "subject", "body"]),
        "Accepted": _obj({
            "reference": STR, "url": URL,
            "status": {"const": "received",
                       "description": "stored; processing follows (read it by reference)"},
        }),
        "Person": _obj({"email": OPT_STR, "name": OPT_STR}),
        "Address": {"type": "object",
                    "properties": {"address": OPT_STR, "name": OPT_STR}},
        "AttachmentInfo": _obj({
            "id": INT, "filename": OPT_STR, "content_type": STR, "size": INT,
            "sha256": STR, "content_id": OPT_STR, "inline": {"type": "boolean"},
        }),
        "Message": _obj({
            "direction": {"enum": ["in", "out"]},
            "message_id": OPT_STR, "in_reply_to": OPT_STR,
            "references": {"type": "array", "items": STR},
            "from": _obj({"address": OPT_STR, "name": OPT_STR}),
            "to": {"type": "array", "items": _ref("Address")},
            "cc": {"type": "array", "items": _ref("Address")},
            "subject": STR, "new_text": STR, "text": STR,
            "flags": {"type": "object"},
            "created_at": DATE_TIME,
            "attachments": {"type": "array", "items": _ref("AttachmentInfo")},
        }),
        "Event": _obj({"kind": STR, "actor": STR, "at": DATE_TIME,
                       "data": {"type": "object"}}),
        "Request": _obj({
            "reference": STR,
            "status": {"type": "string", "enum": REQUEST_STATUSES},
            "queue": STR, "channel": STR,
            "priority": OPT_STR, "type": OPT_STR, "category": OPT_STR,
            "component": OPT_STR,
            "requester": _ref("Person"),
            "subject": STR,
            "custom_fields": {"type": "object", "additionalProperties": SIMPLE_VALUE},
            "tags": {"type": "array", "items": STR},
            "escalation_level": {"type": "integer", "minimum": 0},
            "created_at": DATE_TIME, "updated_at": DATE_TIME,
            "version": {"type": "integer", "minimum": 1,
                        "description": "also sent as the ETag `\"v<version>\"`"},
            "claimed_by": OPT_STR, "claim_until": _nullable(DATE_TIME),
            "due_at": _nullable(DATE_TIME),
            "sla_policy": OPT_STR,
            "first_response_due_at": _nullable(DATE_TIME),
            "resolution_due_at": _nullable(DATE_TIME),
            "first_response_at": _nullable(DATE_TIME),
            "resolved_at": _nullable(DATE_TIME),
            "reopened_count": {"type": "integer", "minimum": 0},
            "sla": {"oneOf": [{"type": "null"}, _ref("ServiceLevels")],
                    "description": "each target's due and warning times and status now"},
            "url": URL,
            "status_url": {**URL, "description": "the customer's status page, if it has one"},
            "messages": {"type": "array", "items": _ref("Message")},
            "timeline": {"type": "array", "items": _ref("Event")},
        }, required=["reference", "status", "queue", "channel", "priority", "type",
                     "category", "component", "requester", "subject", "custom_fields",
                     "tags", "escalation_level", "created_at", "updated_at", "version",
                     "claimed_by", "claim_until", "due_at", "url", "messages", "timeline"]),
        "DeadInbox": _obj({
            "item": STR, "id": INT, "reference": STR, "channel": STR,
            "received_at": _nullable(DATE_TIME), "attempts": INT, "last_error": OPT_STR,
        }),
        "DeadOutbox": _obj({
            "item": STR, "id": INT, "kind": STR, "reference": OPT_STR,
            "created_at": _nullable(DATE_TIME), "attempts": INT, "last_error": OPT_STR,
        }),
        "DeadLetters": _obj({
            "inbox": {"type": "array", "items": _ref("DeadInbox")},
            "outbox": {"type": "array", "items": _ref("DeadOutbox")},
        }),
        "DeadLetterRetried": _obj({"item": STR, "state": {"const": "pending"}}),
        "TargetState": _obj({
            "target_seconds": INT, "due_at": DATE_TIME, "warn_at": DATE_TIME,
            "status": {"enum": ["ok", "warning", "breached", "met"]},
            "met_at": _nullable(DATE_TIME), "paused": {"type": "boolean"},
        }),
        "ServiceLevels": _obj({
            "policy": STR, "warn_at_fraction": {"type": "number"},
            "first_response": {"oneOf": [{"type": "null"}, _ref("TargetState")]},
            "resolution": {"oneOf": [{"type": "null"}, _ref("TargetState")]},
        }),
        "ReceivedRequest": _obj({
            "reference": STR,
            "status": {"const": "received"},
            "processing": {"enum": ["pending", "processing", "done", "dead"]},
            "channel": STR,
            "received_at": DATE_TIME,
            "last_error": {**OPT_STR, "description": "why it failed, when dead-lettered"},
            "url": URL,
        }, description="stored but not (yet) a request"),
        "MessageMatch": _obj({
            "reference": STR, "status": STR, "queue": STR, "subject": STR,
            "message_id": OPT_STR, "received_at": DATE_TIME, "url": URL,
        }),
        "RulesStatus": _obj({
            "source": STR, "loaded_at": DATE_TIME,
            "rules": {"type": "integer", "minimum": 0},
            "components": {"type": "integer", "minimum": 0},
            "queues": {"type": "array", "items": STR},
            "default_queue": STR,
            "last_reload": _nullable(_obj({
                "at": DATE_TIME, "ok": {"type": "boolean"},
                "errors": {"type": "array", "items": STR}, "changed": {"type": "boolean"},
            })),
        }),
        "NewToken": _obj({
            "role": {"enum": ROLES},
            "queues": {"type": "array", "items": queue_name,
                       "description": "for agents: the queues it may see (none: all)"},
            "name": {"type": "string", "maxLength": 100},
        }, required=["role"]),
        "CreatedToken": _obj({
            "id": INT, "name": STR, "role": {"enum": ROLES},
            "queues": {"type": "array", "items": STR},
            "token": {"type": "string", "description": "the secret, shown only this once"},
        }),
        "TokenInfo": _obj({
            "id": INT, "name": STR, "role": {"enum": ROLES},
            "queues": {"type": "array", "items": STR},
            "created_at": DATE_TIME, "revoked_at": _nullable(DATE_TIME),
        }),
        "Quarantined": _obj({
            "reference": STR, "queue": STR, "subject": STR, "requester": OPT_STR,
            "created_at": DATE_TIME, "url": URL,
        }),
        "Released": _obj({"reference": STR, "status": {"const": "new"}, "queue": STR}),
        "QueueOverview": _obj({
            "name": STR,
            "depth": {"type": "integer", "minimum": 0,
                      "description": "requests waiting or worked on (new, open, reopened)"},
            "unclaimed": {"type": "integer", "minimum": 0},
            "oldest_waiting_seconds": {"type": ["number", "null"]},
            "past_due": {"type": "integer", "minimum": 0},
        }),
        "QueueItem": _obj({
            "reference": STR, "status": STR, "queue": STR, "priority": OPT_STR,
            "type": OPT_STR, "component": OPT_STR, "subject": STR, "requester": OPT_STR,
            "tags": {"type": "array", "items": STR},
            "due_at": _nullable(DATE_TIME), "created_at": DATE_TIME, "version": INT,
            "claimed_by": {**OPT_STR, "description": "null once the lease has run out"},
            "url": URL,
        }),
        "QueuePage": _obj({
            "items": {"type": "array", "items": _ref("QueueItem")},
            "next_cursor": {**OPT_STR, "description": "pass as `cursor` for the next page"},
        }),
        "ClaimRequest": {
            "type": "object",
            "properties": {
                "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 1,
                          "description": WHOLE},
                "lease_seconds": {"type": "integer", "minimum": 1, "maximum": 3600,
                                  "default": 300, "description": WHOLE},
                "wait": {"type": "integer", "minimum": 0, "maximum": 60, "default": 0,
                         "description": "long-poll: seconds to wait for work if none; " + WHOLE},
            },
            "description": "other keys are ignored",
        },
        "Claimed": _obj({
            "reference": STR, "queue": STR, "subject": STR, "priority": OPT_STR,
            "lease_until": DATE_TIME, "url": URL,
        }),
        "LeaseRequest": {
            "type": "object",
            "properties": {"lease_seconds": {"type": "integer", "minimum": 1,
                                             "maximum": 3600, "default": 300,
                                             "description": WHOLE}},
            "description": "other keys are ignored",
        },
        "Lease": _obj({"reference": STR, "lease_until": DATE_TIME}),
        "RequestChanges": _obj({
            "status": {"enum": SETTABLE_STATUSES},
            "queue": {**queue_name, "description": "a queue this token can see"},
            "priority": {"enum": PRIORITIES},
            "type": OPT_STR, "category": OPT_STR, "component": OPT_STR,
            "tags": {"type": "array", "items": STR,
                     "description": "replaces the tags; duplicates are dropped"},
            "custom_fields": {"type": "object", "additionalProperties": SIMPLE_VALUE,
                              "description": "replaces the custom fields"},
            "escalation_level": {"type": "integer", "minimum": 0, "maximum": 10,
                                 "description": "admin tokens only (422 for agents); " + WHOLE},
        }, required=[], minProperties=1),
        "Versioned": _obj({"reference": STR, "version": INT}),
        "NewNote": {"type": "object",
                    "properties": {"body": {"type": "string", "pattern": NOT_BLANK}},
                    "required": ["body"], "description": "other keys are ignored"},
        "NoteAdded": _obj({"reference": STR}),
        "NewReply": {
            "type": "object",
            "properties": {
                "body": {"type": "string", "pattern": NOT_BLANK},
                "status": {"enum": [*SETTABLE_STATUSES, None],
                           "description": "also set the request's status"},
            },
            "required": ["body"], "description": "other keys are ignored",
        },
        "ReplyQueued": _obj({"reference": STR, "message_id": STR, "version": INT}),
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
        "Merged": _obj({"reference": STR, "status": {"const": "merged"}, "into": STR}),
        "StatusPage": _obj({
            "reference": STR, "status": STR, "subject": STR,
            "created_at": DATE_TIME, "updated_at": DATE_TIME,
            "messages": {"type": "array", "items": _obj({
                "from": {"type": "string",
                         "description": "`you` for the customer's own messages"},
                "subject": STR, "text": STR, "at": DATE_TIME})},
        }),
        "Health": _obj({"status": {"const": "ok"}}),
        "Ready": _obj({"status": {"const": "ready"}}),
    }


# --- responses, parameters, operations --------------------------------------

def _header(description: str, schema: Schema | None = None,
            required: bool = True) -> Schema:
    return {"description": description, "required": required, "schema": schema or STR}


HEADERS: dict[str, Schema] = {
    "RetryAfter": _header("seconds to wait before trying again",
                          {"type": "string", "pattern": "^[0-9]+$"}),
    "WWWAuthenticate": _header("`Bearer realm=\"intake\"`"),
    "Location": _header("URL of the new request", URL),
    "ETag": _header("version of the request, `\"v<version>\"`: send it back in If-Match",
                    {"type": "string", "pattern": '^"v[0-9]+"$'}),
}


def _problem(description: str, headers: Sequence[str] = ()) -> Schema:
    response: Schema = {"description": description,
                        "content": {"application/problem+json": {"schema": _ref("Problem")}}}
    if headers:
        response["headers"] = {_wire(h): {"$ref": f"#/components/headers/{h}"}
                               for h in headers}
    return response


def _wire(name: str) -> str:
    return {"RetryAfter": "Retry-After", "WWWAuthenticate": "WWW-Authenticate"}.get(name, name)


RESPONSES: dict[str, Schema] = {
    "BadRequest": _problem("malformed: the body is not JSON, or a parameter is invalid"),
    "Unauthorized": _problem("no valid bearer token", ["WWWAuthenticate"]),
    "Forbidden": _problem("the token's role may not do this"),
    "NotFound": _problem("unknown, or outside the token's queues (the same answer)"),
    "Conflict": _problem("the request is not in a state that allows this"),
    "PreconditionFailed": _problem("If-Match is stale: the request changed; read it again"),
    "ContentTooLarge": _problem("the body is over `http.max_body_bytes`"),
    "Unprocessable": _problem("invalid fields, each listed in `errors` with a JSON pointer"),
    "PreconditionRequired": _problem("If-Match is required"),
    "TooManyRequests": _problem("rate limit per token or client address",
                                ["RetryAfter"]),
    "ServiceUnavailable": _problem("storage is temporarily unavailable: retry later",
                                   ["RetryAfter"]),
}

CODES = {"400": "BadRequest", "401": "Unauthorized", "403": "Forbidden", "404": "NotFound",
         "409": "Conflict", "412": "PreconditionFailed", "413": "ContentTooLarge",
         "422": "Unprocessable", "428": "PreconditionRequired", "429": "TooManyRequests",
         "503": "ServiceUnavailable"}


def _ok(description: str, schema: Schema | None, *, headers: dict[str, Schema] | None = None,
        media: str = "application/json") -> Schema:
    response: Schema = {"description": description}
    if schema is not None:
        response["content"] = {media: {"schema": schema}}
    if headers:
        response["headers"] = headers
    return response


def _path(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema or STR}


def _query(name: str, description: str, schema: Schema | None = None,
           required: bool = False) -> Schema:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": schema or STR}


REFERENCE = _path("reference", "the request's reference, e.g. `7PY9-9T9S` (case and "
                  "hyphen are forgiven)")
DEAD_LETTER = [_path("kind", "where it failed", {"enum": ["inbox", "outbox"]}),
               _path("item_id", "its id in `intake dead-letters list`",
                     {"type": "integer", "minimum": 0})]


def _op(op_id: str, summary: str, tag: str, ok: dict[str, Schema], errors: Sequence[int], *,
        params: Sequence[Schema] = (), body: Schema | None = None, body_required: bool = True,
        public: bool = False, description: str | None = None) -> Schema:
    """One operation; `errors` are the problem statuses its handler can answer."""
    responses: dict[str, Schema] = dict(ok)
    for code in sorted(errors):
        responses[str(code)] = {"$ref": f"#/components/responses/{CODES[str(code)]}"}
    op: Schema = {"operationId": op_id, "summary": summary, "tags": [tag]}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = list(params)
    if body is not None:
        op["requestBody"] = {"required": body_required,
                             "content": {"application/json": {"schema": body}}}
    op["responses"] = responses
    if public:
        op["security"] = []
    return op


# Every /v1 route is rate limited (429); every one that reads a token or the
# database can meet a storage fault (503).
V1 = (429, 503)
AUTH = (401, *V1)
BODY = (400, 413, 422)


def _paths(queues: Sequence[str]) -> dict[str, Schema]:
    queue = _path("queue", "a configured queue's name",
                  {"type": "string", "enum": list(queues)} if queues else None)
    etag = {"ETag": {"$ref": "#/components/headers/ETag"}}
    optional_etag = {"ETag": {**HEADERS["ETag"], "required": False,
                              "description": "`\"v<version>\"`, when it is a request already"}}
    return {
        "/v1/requests": {
            "post": _op(
                "createRequest", "Submit a request", "intake",
                {"201": _ok("stored durably; processing follows", _ref("Accepted"), headers={
                    "Location": {"$ref": "#/components/headers/Location"},
                    "Idempotent-Replayed": _header(
                        "`true` when this is the first answer to the same key and body",
                        {"const": "true"}, required=False)})},
                (400, 413, 422, *AUTH),
                params=[{"name": "Idempotency-Key", "in": "header", "required": False,
                         "description": "the same key and body return the first answer; "
                                        "the same key with another body gets 422",
                         "schema": {"type": "string", "minLength": 1, "maxLength": 200}}],
                body=_ref("NewRequest"),
                description="Any token role may submit; without a token only when "
                            "`http.open_intake` is set. 400 for a bad Idempotency-Key."),
            "get": _op(
                "findRequestsByMessageId", "Find requests by an email's Message-ID",
                "requests", {"200": _ok("requests holding that email (readable ones only)",
                                        _items(_ref("MessageMatch")))},
                (400, *AUTH),
                params=[_query("message_id", "Message-ID, angle brackets optional",
                               {"type": "string", "minLength": 1}, required=True)]),
        },
        "/v1/requests/{reference}": {
            "parameters": [REFERENCE],
            "get": _op(
                "getRequest", "Read a request with its messages and timeline", "requests",
                {"200": _ok("the request, or its intake state while not yet processed",
                            {"oneOf": [_ref("Request"), _ref("ReceivedRequest")]},
                            headers=optional_etag)},
                (404, *AUTH)),
            "patch": _op(
                "updateRequest", "Change fields of a request", "agents",
                {"200": _ok("changed; the new version", _ref("Versioned"), headers=etag)},
                (400, 403, 404, 409, 412, 413, 422, 428, *AUTH),
                params=[{"name": "If-Match", "in": "header", "required": True,
                         "description": "the ETag of the version being changed",
                         "schema": {"type": "string", "minLength": 1}}],
                body=_ref("RequestChanges"),
                description="Agents may set status, queue, priority, type, category, "
                            "component, tags and custom_fields; admins also "
                            "escalation_level. Any other field is rejected with 422."),
        },
        "/v1/requests/{reference}/lease": {
            "parameters": [REFERENCE],
            "put": _op(
                "renewLease", "Extend the caller's lease on a request", "agents",
                {"200": _ok("the new end of the lease", _ref("Lease"))},
                (400, 404, 409, 413, 422, *AUTH),
                body=_ref("LeaseRequest"), body_required=False),
            "delete": _op(
                "releaseLease", "Give a claimed request back to its queue", "agents",
                {"204": _ok("released", None)}, (404, 409, *AUTH)),
        },
        "/v1/requests/{reference}/notes": {
            "parameters": [REFERENCE],
            "post": _op(
                "addNote", "Add an internal note to the timeline", "agents",
                {"201": _ok("noted", _ref("NoteAdded"))},
                (400, 403, 404, 409, 413, 422, *AUTH), body=_ref("NewNote")),
        },
        "/v1/requests/{reference}/replies": {
            "parameters": [REFERENCE],
            "post": _op(
                "addReply", "Reply to the requester (queued for delivery)", "agents",
                {"201": _ok("reply stored, delivery pending", _ref("ReplyQueued"),
                            headers=etag)},
                (400, 403, 404, 409, 413, 422, *AUTH), body=_ref("NewReply")),
        },
        "/v1/requests/{reference}/escalate": {
            "parameters": [REFERENCE],
            "post": _op(
                "escalateRequest", "Raise the escalation level by one", "agents",
                {"200": _ok("escalated; the new version", _ref("Versioned"), headers=etag)},
                (400, 403, 404, 409, 412, 413, 422, *AUTH),
                params=[{"name": "If-Match", "in": "header", "required": False,
                         "description": "when sent, the change applies only to this version",
                         "schema": STR}],
                body=_ref("Escalation"), body_required=False),
        },
        "/v1/requests/{reference}/merge": {
            "parameters": [REFERENCE],
            "post": _op(
                "mergeRequest", "Merge a duplicate into another request", "agents",
                {"200": _ok("merged", _ref("Merged"))},
                (400, 403, 404, 409, 413, 422, *AUTH), body=_ref("MergeRequest")),
        },
        "/v1/requests/{reference}/attachments/{attachment_id}": {
            "parameters": [REFERENCE, _path("attachment_id", "the attachment's `id`",
                                            {"type": "integer", "minimum": 0})],
            "get": _op(
                "downloadAttachment", "Download an attachment", "requests",
                {"200": _ok("the content, always as a download (Content-Disposition: "
                            "attachment), with its own media type",
                            {"type": "string", "contentMediaType": "application/octet-stream"},
                            media="*/*", headers={
                                "Content-Disposition": _header("`attachment; filename=...`")})},
                (404, *AUTH)),
        },
        "/v1/admin/rules": {
            "get": _op("getRulesStatus", "The routing rules in force and the last reload",
                       "admin", {"200": _ok("rules status", _ref("RulesStatus"))},
                       (403, *AUTH)),
        },
        "/v1/admin/tokens": {
            "post": _op("createToken", "Create an API token (its secret is shown once)",
                        "admin", {"201": _ok("created", _ref("CreatedToken"))},
                        (400, 403, 413, 422, *AUTH), body=_ref("NewToken")),
            "get": _op("listTokens", "List API tokens, revoked ones included", "admin",
                       {"200": _ok("all tokens", _items(_ref("TokenInfo")))}, (403, *AUTH)),
        },
        "/v1/admin/tokens/{token_id}": {
            "parameters": [_path("token_id", "the token's `id`",
                                 {"type": "integer", "minimum": 0})],
            "delete": _op("revokeToken", "Revoke an API token", "admin",
                          {"204": _ok("revoked; refused everywhere within seconds", None)},
                          (403, 404, *AUTH)),
        },
        "/v1/admin/dead-letters": {
            "get": _op("listDeadLetters", "Inbox items and outbox rows that failed every "
                       "attempt", "admin", {"200": _ok("dead letters", _ref("DeadLetters"))},
                       (403, *AUTH)),
        },
        "/v1/admin/dead-letters/{kind}/{item_id}/retry": {
            "parameters": DEAD_LETTER,
            "post": _op("retryDeadLetter", "Queue a dead letter again", "admin",
                        {"200": _ok("queued again", _ref("DeadLetterRetried"))},
                        (403, 404, *AUTH)),
        },
        "/v1/admin/dead-letters/{kind}/{item_id}": {
            "parameters": DEAD_LETTER,
            "delete": _op("discardDeadLetter", "Discard a dead outbox row (inbox items are "
                          "kept)", "admin", {"204": _ok("discarded", None)},
                          (403, 404, 409, *AUTH)),
        },
        "/v1/quarantine": {
            "get": _op("listQuarantined", "Requests held by a quarantine rule", "agents",
                       {"200": _ok("held requests in the token's queues",
                                   _items(_ref("Quarantined")))}, (403, *AUTH)),
        },
        "/v1/quarantine/{reference}/release": {
            "parameters": [REFERENCE],
            "post": _op("releaseQuarantined", "Let a held request in", "agents",
                        {"200": _ok("released into its queue", _ref("Released"))},
                        (403, 404, 409, *AUTH)),
        },
        "/v1/queues": {
            "get": _op("listQueues", "Queue overview: depth, unclaimed, oldest, past due",
                       "agents", {"200": _ok("the queues this token can see",
                                             _items(_ref("QueueOverview")))}, (403, *AUTH)),
        },
        "/v1/queues/{queue}/requests": {
            "parameters": [queue],
            "get": _op(
                "listQueueRequests", "A page of a queue, in priority then due order",
                "agents", {"200": _ok("one page", _ref("QueuePage"))}, (400, 404, *AUTH),
                params=[
                    _query("status", "only this status (default: new, open, reopened)"),
                    _query("priority", "only this priority"),
                    _query("type", "only this type"),
                    _query("component", "only this component"),
                    _query("tag", "only requests with this tag"),
                    _query("requester", "only this requester's email"),
                    _query("text", "subject contains this (any case)"),
                    _query("limit", "page size", {"type": "integer", "minimum": 1,
                                                  "maximum": 200, "default": 50}),
                    _query("cursor", "`next_cursor` of the previous page"),
                ]),
        },
        "/v1/queues/{queue}/claim": {
            "parameters": [queue],
            "post": _op(
                "claimRequests", "Take work from a queue with a lease", "agents",
                {"200": _ok("what was claimed (maybe nothing)", _items(_ref("Claimed")))},
                (400, 404, 413, 422, *AUTH), body=_ref("ClaimRequest"), body_required=False,
                description="Claims up to `limit` free requests for `lease_seconds`; with "
                            "`wait`, waits up to that many seconds for work to arrive."),
        },
        "/v1/status/{token}": {
            "parameters": [_path("token", "the status link's key, from the acknowledgement")],
            "get": _op("getStatusPage", "The customer's view of their request", "public",
                       {"200": _ok("status and public messages", _ref("StatusPage"),
                                   headers={"Cache-Control": _header("`no-store`",
                                                                     {"const": "no-store"})})},
                       (404, *V1), public=True),
        },
        "/v1/openapi.json": {
            "get": _op("getOpenApi", "This document", "public",
                       {"200": _ok("OpenAPI 3.1 document", {"type": "object"})},
                       (429,), public=True),
        },
        "/healthz": {
            "get": _op("healthz", "The process is up", "operations",
                       {"200": _ok("up", _ref("Health"))}, (), public=True),
        },
        "/readyz": {
            "get": _op("readyz", "The database takes writes now", "operations",
                       {"200": _ok("ready", _ref("Ready"))}, (503,), public=True),
        },
    }


def document(public_url: str, queues: Sequence[str] = (), *,
             open_intake: bool = False, forms: Sequence[str] = ()) -> dict[str, Any]:
    """The OpenAPI 3.1 document for a gateway at `public_url` with these queues."""
    from gateway.http.openapi_forms import form_paths, form_schemas

    paths = _paths(queues) | form_paths(forms)
    if open_intake:  # POST /v1/requests is then allowed without a token too
        paths["/v1/requests"]["post"]["security"] = [{"bearerAuth": []}, {}]
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Intake gateway API",
            "version": "1",
            "description": "Service-desk intake over HTTP: submit requests, read them, "
                           "and work them from queues. Errors are RFC 9457 problem "
                           "documents. Every /v1 path is rate limited per token and "
                           "client address (429 with Retry-After); a storage fault "
                           "answers 503 with Retry-After.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": public_url}],
        "security": [{"bearerAuth": []}],
        "tags": [{"name": n} for n in ("intake", "forms", "requests", "agents", "admin",
                                        "public", "operations")],
        "paths": paths,
        "components": {
            "schemas": _schemas(queues) | form_schemas(),
            "responses": RESPONSES,
            "headers": HEADERS,
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": "an API token (`intake tokens create`): admin reads and "
                               "changes all, agent its queues (all when it has none), "
                               "intake may only submit"}},
        },
    }


async def serve(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    return json_response(document(config.public_url, [q.name for q in config.queue],
                                  open_intake=config.http.open_intake,
                                  forms=list(config.forms)))
