"""The OpenAPI document's paths: every route `gateway.http.app` serves, with the
status codes each handler can answer (the web forms' are in openapi_forms.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.audit_query import DEFAULT_PAGE as AUDIT_DEFAULT_PAGE
from gateway.http.listing import LISTED, MAX_PAGE, MAX_TEXT
from gateway.http.openapi_forms import HTML
from gateway.http.openapi_privacy import PRIVACY_PATHS
from gateway.http.openapi_schema import (
    AUTH,
    HEADERS,
    INT,
    STR,
    URL,
    V1,
    Schema,
    header,
    listing,
    nullable,
    obj,
    ok,
    operation,
    path_param,
    query_param,
    ref,
)
from gateway.http.requests import MAX_IDEMPOTENCY_KEY
from gateway.reports import FORMATS as REPORT_FORMATS
from gateway.reports import MAX_PARAMETER as MAX_REPORT_PARAMETER
from storage.audit import ACTIONS as AUDIT_ACTIONS
from storage.audit import MAX_PAGE as AUDIT_MAX_PAGE
from storage.reports import FIELDS as REPORT_FIELDS
from storage.reports import GROUPINGS as REPORT_GROUPINGS

REFERENCE = path_param("reference", "the request's reference, e.g. `7PY9-9T9S` (case and "
                       "hyphen are forgiven)")
DEAD_LETTER = [path_param("kind", "where it failed", {"enum": ["inbox", "outbox"]}),
               path_param("item_id", "its id in `intake dead-letters list`",
                          {"type": "integer", "minimum": 0})]


# Every action checks an If-Match it is sent (access.py); PATCH and escalate
# with a queue require one.
IF_MATCH_TEXT = ("when sent, the change applies only to this version (412 if the "
                 "request changed since); without it, to the version read when the call "
                 "was authorised")
IF_MATCH: Schema = {"name": "If-Match", "in": "header", "required": False,
                    "description": IF_MATCH_TEXT, "schema": STR}


AGENT_ID = path_param("agent_id", "the agent's `id`", {"type": "integer", "minimum": 0})
CANNED_ID = path_param("canned_id", "the canned response's `id`",
                       {"type": "integer", "minimum": 0})
HAND_OFF = ("`queue` must be a configured queue (422 naming the field otherwise); one "
            "outside the token's scope is a hand-off: allowed to tokens with "
            "`may_hand_off` (the default), 403 for others. The token then no longer sees "
            "the request.")
NON_EMPTY: Schema = {"type": "string", "minLength": 1}
RFC3339: Schema = {"type": "string", "format": "date-time"}
# The queue listing's filters and paging (gateway/http/listing.py), shared by the
# search across queues.
LIST_PARAMS: list[Schema] = [
    query_param("status", "only this status (a queue's default: new, open, reopened; a "
                "search's: any)", {"type": "string", "enum": list(LISTED)}),
    query_param("priority", "only this priority", {"type": "string",
                                                   "enum": ["P1", "P2", "P3", "P4"]}),
    query_param("type", "only this type", NON_EMPTY),
    query_param("component", "only this component", NON_EMPTY),
    query_param("tag", "only requests with this tag", NON_EMPTY),
    query_param("requester", "only this requester's email", NON_EMPTY),
    query_param("breached", "`true`: a service-level target was missed (the scheduler "
                "marked a breach, or a deadline passed unmet); `false`: none was",
                {"type": "string", "enum": ["true", "false"]}),
    query_param("due_before", "the next deadline is before this RFC 3339 time", RFC3339),
    query_param("created_after", "created after this RFC 3339 time", RFC3339),
    query_param("created_before", "created before this RFC 3339 time", RFC3339),
    query_param("claimed_by", "held under a running lease by `agent:<id>` or "
                "`token:<id>`, by the caller (`me`), or by nobody (`none`)",
                {"type": "string", "pattern": "^((agent|token):[0-9]{1,18}|me|none)$"}),
    query_param("limit", "page size", {"type": "integer", "minimum": 1,
                                       "maximum": MAX_PAGE, "default": 50}),
    query_param("cursor", "`next_cursor` of the previous page"),
]


WHEN: Schema = {"type": "string", "minLength": 10, "maxLength": MAX_REPORT_PARAMETER}
_NUMBER = nullable({"type": "number"})
REPORT = obj({
    "from": STR, "to": STR, "group": {"enum": list(REPORT_GROUPINGS)},
    "items": {"type": "array", "items": obj({"group": nullable(STR), **{
        field: _NUMBER if field.endswith(("seconds", "percent")) else INT
        for field in REPORT_FIELDS}})}})


# The audit trail (gateway/http/audit.py): read only, newest first.
AUDIT_EVENT = obj({
    "id": INT, "at": RFC3339,
    "actor": {"type": "string", "description": "`token:<id>`, `agent:<id>`, `cli` (with "
              "`data.os_user`) or `system`"},
    "action": {"type": "string", "enum": list(AUDIT_ACTIONS)},
    "target": nullable(STR), "client": nullable({**STR, "description": "the HTTP client's "
                                                  "address (null from the command line)"}),
    "data": {"type": "object", "description": "what the action was given; never a secret"},
})
AUDIT_PARAMS: list[Schema] = [
    query_param("actor", "only this actor", {"type": "string",
                "pattern": "^((token|agent):[0-9]{1,18}|cli|system)$"}),
    query_param("action", "only this action", {"type": "string",
                                               "enum": list(AUDIT_ACTIONS)}),
    query_param("target", "only this target (e.g. `token:3`, a request's reference)",
                {"type": "string", "minLength": 1, "maxLength": 300}),
    query_param("since", "at or after this RFC 3339 time", RFC3339),
    query_param("until", "before this RFC 3339 time", RFC3339),
    query_param("limit", "page size", {"type": "integer", "minimum": 1,
                                       "maximum": AUDIT_MAX_PAGE,
                                       "default": AUDIT_DEFAULT_PAGE}),
    query_param("cursor", "`next_cursor` of the previous page"),
]



# --- the status lookup, one-time links and rotation (gateway/http/status_lookup.py) ---

def _html(description: str, retry_after: bool = False) -> Schema:
    response: Schema = {"description": description, "content": {"text/html": {"schema": HTML}}}
    if retry_after:
        response["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    return response


_ACCESS_KEY = path_param("key", "the one-time key from the mailed link",
                         {"type": "string", "maxLength": 200})
_LINK_GONE = _html("used or expired: the page says which, with the lookup form")
_LINK_UNKNOWN = _html("not a link we made: the page says so, with the lookup form")
_LOOKUP_FORM: Schema = {"type": "object", "properties": {
    "reference": {"type": "string", "description": "a request's reference"},
    "email": {"type": "string", "description": "the requester's email address"},
    "_form_token": {"type": "string", "description": "the page's token"}},
    "additionalProperties": STR}
_LOOKUP = operation(
    "statusLookup", "Ask for a one-time link to a request's status page", "public",
    {"200": _html("the same page whatever was asked (a link is mailed to the requester "
                  "when the reference and address belong together), no sooner than a "
                  "fixed time after the post"),
     "400": _html("the form body cannot be read"),
     "403": _html("the page's token is missing, expired, for another address, or the post "
                  "came from another site"),
     "413": _html("the post is over 2048 bytes"),
     "415": _html("not application/x-www-form-urlencoded"),
     "422": _html("the reference or the address cannot be one: the form with the errors"),
     "429": _html("too many lookups from this address (20 an hour)", retry_after=True),
     "503": _html("storage is temporarily unavailable: try again later", retry_after=True)},
    (), public=True,
    description="The answer never says whether the reference or the address exists. A "
                "request gets at most 3 links an hour; past that the same answer, no mail.")
_LOOKUP["requestBody"] = {"required": True, "content": {
    "application/x-www-form-urlencoded": {"schema": _LOOKUP_FORM}}}
STATUS_LINK_PATHS: dict[str, Schema] = {
    "/status": {
        "get": operation("statusLookupPage", "The status lookup page: a reference and an "
                         "email address", "public",
                         {"200": _html("the form, with a fresh token")}, (), public=True),
        "post": _LOOKUP,
    },
    "/status/access/{key}": {
        "parameters": [_ACCESS_KEY],
        "get": operation("statusAccessPage", "A one-time link's page: one button opens the "
                         "status page", "public",
                         {"200": _html("the button (the link is not spent yet)"),
                          "404": _LINK_UNKNOWN, "410": _LINK_GONE,
                          "429": _html("too many links opened from this address",
                                       retry_after=True)},
                         (503,), public=True,
                         description="Fetching the page (as mail scanners do) does not "
                                     "spend the link; its button does."),
        "post": operation("openStatusAccess", "Spend a one-time link: on to the status page",
                          "public",
                          {"303": {"description": "to the request's status page",
                                   "headers": {"Location": header("`/v1/status/{token}`")}},
                           "403": _html("posted from another site"),
                           "404": _LINK_UNKNOWN, "410": _LINK_GONE,
                           "429": _html("too many links opened from this address",
                                        retry_after=True)},
                          (503,), public=True),
    },
    "/v1/requests/{reference}/status-link/rotate": {
        "parameters": [REFERENCE],
        "post": operation(
            "rotateStatusLink", "Replace the request's status link and mail the new one",
            "agents",
            {"200": ok("rotated", obj({"reference": STR, "version": INT,
                                       "mailed": {"type": "boolean", "description":
                                                  "false when the requester has no address "
                                                  "we may send to"}}),
                       headers={"ETag": {"$ref": "#/components/headers/ETag"}})},
            (403, 404, 409, 412, *AUTH), params=[IF_MATCH],
            description="The old link then answers a page saying it was replaced (410). "
                        "Recorded on the timeline and in the audit trail. 409 when the "
                        "request has no status link (its personal data was removed)."),
    },
}

# --- the customer's status page and its forms (gateway/http/status_page.py) ---------

_STATUS_TOKEN = path_param("token", "the status link's key, from the acknowledgement")
_PAGE: Schema = {"type": "string", "description": "an HTML page"}


def _page_or_problem(description: str, retry_after: bool = False) -> Schema:
    """A page for a browser; a problem document from the checks every /v1 path has."""
    response: Schema = {"description": description, "content": {
        "text/html": {"schema": _PAGE}, "application/problem+json": {"schema": ref("Problem")}}}
    if retry_after:
        response["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    return response


def _status_post(op_id: str, summary: str, done: str, fields: Schema,
                 media: tuple[str, ...], description: str) -> Schema:
    post = operation(
        op_id, summary, "public",
        {"303": {"description": f"{done}; back to the page (`?done=`)",
                 "headers": {"Location": header("`/v1/status/{token}?done=...`")}},
         "400": _page_or_problem("the form body cannot be read"),
         "403": _page_or_problem("without the page's token (or with another page's, or one "
                                 "hours old), or sent from another site (Origin or Referer)"),
         "404": _page_or_problem("no request at this link"),
         "410": _page_or_problem("the link was replaced by a newer one, mailed to the "
                                 "requester"),
         "409": _page_or_problem("not possible now: sent already, finished too long ago to "
                                 "reopen, or no address to reply from"),
         "413": _page_or_problem("the post or a file is over its limit"),
         "415": _page_or_problem("neither multipart/form-data nor urlencoded"),
         "422": _page_or_problem("invalid fields: the page again, each problem beside its "
                                 "field"),
         "429": _page_or_problem("too many posts for this link (10 a minute) or from this "
                                 "address (30 a minute)", retry_after=True),
         "503": _page_or_problem("storage is temporarily unavailable: nothing was changed",
                                 retry_after=True)},
        (), public=True, description=description)
    post["requestBody"] = {"required": True,
                           "content": {kind: {"schema": fields} for kind in media}}
    return post


_PAGE_TOKEN: Schema = {"type": "string", "description": "the page's token (hidden field)"}
STATUS_PAGE_PATHS: dict[str, Schema] = {
    "/v1/status/{token}": {
        "parameters": [_STATUS_TOKEN],
        "get": operation(
            "getStatusPage", "The customer's view of their request", "public",
            {"200": {"description": "status and public messages: JSON, or the page for a "
                                    "browser (one that asks for text/html before JSON)",
                     "headers": {"Cache-Control": header("`no-store`",
                                                        {"const": "no-store"})},
                     "content": {"application/json": {"schema": ref("StatusPage")},
                                 "text/html": {"schema": _PAGE}}},
             "404": _page_or_problem("no request at this link"),
             "410": _page_or_problem("the link was replaced by a newer one, mailed to the "
                                     "requester (the page; JSON clients get 404)"),
             "503": _page_or_problem("storage is temporarily unavailable", retry_after=True)},
            (400, 429), public=True,
            description="Never shown: internal notes, automatic mail (auto-replies, bounces, "
                        "our acknowledgements), and anyone who takes no part in the request. "
                        "The page names people the customer copied by name only, and offers "
                        "the forms below."),
    },
    "/v1/status/{token}/attachments/{attachment_id}": {
        "parameters": [_STATUS_TOKEN, path_param("attachment_id", "a file's id on the page",
                                                 {"type": "integer", "minimum": 0})],
        "get": operation(
            "downloadStatusFile", "Download a file of the customer's own messages or of our "
            "replies", "public",
            {"200": ok("the content, always as a download", {
                "type": "string", "contentMediaType": "application/octet-stream"},
                media="*/*", headers={
                    "Content-Disposition": header("`attachment; filename=...`")})},
            (400, 404, *V1), public=True,
            description="Files of other people's messages are listed on the page, not "
                        "served here (404)."),
    },
    "/v1/status/{token}/replies": {
        "parameters": [_STATUS_TOKEN],
        "post": _status_post(
            "replyFromStatusPage", "The customer's reply, with files", "stored durably",
            {"type": "object", "properties": {
                "_form_token": _PAGE_TOKEN,
                "message": {"type": "string", "maxLength": 20000},
                "attachments": {"type": "string",
                                "contentMediaType": "application/octet-stream"}},
             "additionalProperties": STR},
            ("multipart/form-data", "application/x-www-form-urlencoded"),
            "Threaded onto the request as the requester's message: it puts a request "
            "waiting on the customer back in the queue and reopens a resolved one within "
            "its queue's reopen window; later it starts a new request that follows it. At "
            "most 3 files of 10 MB (images, PDF, plain text)."),
    },
    "/v1/status/{token}/resolve": {
        "parameters": [_STATUS_TOKEN],
        "post": _status_post(
            "resolveFromStatusPage", "The customer marks the request resolved",
            "resolved (or it was already)",
            {"type": "object", "properties": {"_form_token": _PAGE_TOKEN},
             "additionalProperties": STR},
            ("application/x-www-form-urlencoded", "multipart/form-data"),
            "From new, open, waiting or reopened; recorded on the timeline with the "
            "requester as actor."),
    },
    "/v1/status/{token}/reopen": {
        "parameters": [_STATUS_TOKEN],
        "post": _status_post(
            "reopenFromStatusPage", "The customer reopens a resolved or closed request",
            "reopened (or it was not finished)",
            {"type": "object", "properties": {"_form_token": _PAGE_TOKEN},
             "additionalProperties": STR},
            ("application/x-www-form-urlencoded", "multipart/form-data"),
            "Within the queue's `reopen_days` of its resolution; later 409, and a reply "
            "starts a new request instead."),
    },
}


def api_paths(queues: Sequence[str]) -> dict[str, Schema]:
    queue = path_param("queue", "a configured queue's name",
                       {"type": "string", "enum": list(queues)} if queues else None)
    etag = {"ETag": {"$ref": "#/components/headers/ETag"}}
    optional_etag = {"ETag": {**HEADERS["ETag"], "required": False,
                              "description": "`\"v<version>\"`, when it is a request already"}}
    return {
        "/v1/requests": {
            "post": operation(
                "createRequest", "Submit a request", "intake",
                {"201": ok("stored durably; processing follows", ref("Accepted"), headers={
                    "Location": {"$ref": "#/components/headers/Location"},
                    "Idempotent-Replayed": header(
                        "`true` when this is the first answer to the same key and body",
                        {"const": "true"}, required=False)})},
                (400, 413, 422, *AUTH),
                params=[{"name": "Idempotency-Key", "in": "header", "required": False,
                         "description": "the same key and body return the first answer; "
                                        "the same key with another body gets 422",
                         "schema": {"type": "string", "minLength": 1,
                                    "maxLength": MAX_IDEMPOTENCY_KEY,
                                    "pattern": "^[\\x20-\\x7e]+$"}}],
                body=ref("NewRequest"),
                description="Any token role may submit; without a token only when "
                            "`http.open_intake` is set. 400 for a bad Idempotency-Key."),
            "get": operation(
                "findRequests", "Find requests by an email's Message-ID, or search "
                "across queues", "requests",
                {"200": ok("with `message_id`: the requests holding that email (readable "
                           "ones only); with `text`: one page of the matching requests in "
                           "every queue the token sees",
                           {"oneOf": [listing(ref("MessageMatch")), ref("QueuePage")]})},
                (400, 403, *AUTH),
                params=[query_param("message_id", "Message-ID, angle brackets optional; "
                                    "no other parameter goes with it",
                                    {"type": "string", "minLength": 1}),
                        *[p for p in LIST_PARAMS if p["name"] != "text"],
                        query_param("text", "search (agents and admins): the subject or "
                                    "any message's text, replies included, contains this "
                                    "(any case); required without `message_id`",
                                    {"type": "string", "minLength": 1,
                                     "maxLength": MAX_TEXT})],
                description="Exactly one of `message_id` and `text`; a search takes the "
                            "queue listing's filters and lists requests in any status "
                            "unless `status` is given. An unknown parameter, one given "
                            "twice or a value it cannot take is a 400 naming it."),
        },
        "/v1/requests/{reference}": {
            "parameters": [REFERENCE],
            "get": operation(
                "getRequest", "Read a request with its messages and timeline", "requests",
                {"200": ok("the request, or its intake state while not yet processed; for "
                           "an email that joined another request as a reply, that request "
                           "(`input_reference` names the one asked for)",
                           {"oneOf": [ref("Request"), ref("ReceivedRequest")]},
                           headers=optional_etag | {"Content-Location": header(
                               "the URL of the request shown, when it is not the one asked "
                               "for", URL, required=False)})},
                (404, *AUTH)),
            "patch": operation(
                "updateRequest", "Change fields of a request", "agents",
                {"200": ok("changed; the new version", ref("Versioned"), headers=etag)},
                (400, 403, 404, 409, 412, 413, 422, 428, *AUTH),
                params=[{"name": "If-Match", "in": "header", "required": True,
                         "description": "the ETag of the version being changed (`*`: "
                                        "whatever version is current)",
                         "schema": {"type": "string", "minLength": 1}}],
                body=ref("RequestChanges"),
                description="Agents may set status, queue, priority, type, category, "
                            "component, tags and custom_fields; admins also "
                            "escalation_level. Any other field is rejected with 422. "
                            + HAND_OFF + " Resolving or closing a request, or moving it "
                            "to another queue, releases its claim."),
        },
        "/v1/requests/{reference}/lease": {
            "parameters": [REFERENCE],
            "put": operation(
                "renewLease", "Extend the caller's lease on a request", "agents",
                {"200": ok("the new end of the lease", ref("Lease"))},
                (400, 403, 404, 409, 412, 413, 422, *AUTH), params=[IF_MATCH],
                body=ref("LeaseRequest"), body_required=False),
            "delete": operation(
                "releaseLease", "Give a claimed request back to its queue", "agents",
                {"204": ok("released", None)}, (403, 404, 409, 412, *AUTH),
                params=[IF_MATCH]),
        },
        "/v1/requests/{reference}/notes": {
            "parameters": [REFERENCE],
            "post": operation(
                "addNote", "Add an internal note to the timeline", "agents",
                {"201": ok("noted", ref("NoteAdded"))},
                (400, 403, 404, 409, 412, 413, 422, *AUTH), params=[IF_MATCH],
                body=ref("NewNote")),
        },
        "/v1/requests/{reference}/replies": {
            "parameters": [REFERENCE],
            "post": operation(
                "addReply", "Reply to the requester (queued for delivery), with copies, "
                "files, an HTML part or a canned response", "agents",
                {"201": ok("reply stored, delivery pending", ref("ReplyQueued"),
                           headers=etag)},
                (400, 403, 404, 409, 412, 413, 422, *AUTH), params=[IF_MATCH],
                body=ref("NewReply")),
        },
        "/v1/requests/{reference}/escalate": {
            "parameters": [REFERENCE],
            "post": operation(
                "escalateRequest", "Raise the escalation level by one", "agents",
                {"200": ok("escalated; the new version", ref("Versioned"), headers=etag)},
                (400, 403, 404, 409, 412, 413, 422, 428, *AUTH),
                params=[{**IF_MATCH, "description": "required with `queue` (a move, as "
                         "with PATCH: 428 without it); " + IF_MATCH_TEXT}],
                body=ref("Escalation"), body_required=False,
                description=HAND_OFF),
        },
        "/v1/requests/{reference}/merge": {
            "parameters": [REFERENCE],
            "post": operation(
                "mergeRequest", "Merge a duplicate into another request", "agents",
                {"200": ok("merged", ref("Merged"))},
                (400, 403, 404, 409, 412, 413, 422, *AUTH), params=[IF_MATCH],
                body=ref("MergeRequest"),
                description="`into` must be a processed request the token can see that "
                            "is not merged itself (422 otherwise). Open work merged into "
                            "a resolved or closed request reopens it within its queue's "
                            "`reopen_days`; past them it is linked instead "
                            "(`merged: false`, `linked_from`)."),
        },
        "/v1/requests/{reference}/attachments/{attachment_id}": {
            "parameters": [REFERENCE, path_param("attachment_id", "the attachment's `id`",
                                                 {"type": "integer", "minimum": 0})],
            "get": operation(
                "downloadAttachment", "Download an attachment", "requests",
                {"200": ok("the content, always as a download (Content-Disposition: "
                           "attachment), with its own media type",
                           {"type": "string", "contentMediaType": "application/octet-stream"},
                           media="*/*", headers={
                               "Content-Disposition": header("`attachment; filename=...`")})},
                (404, *AUTH)),
        },
        "/v1/admin/rules": {
            "get": operation("getRulesStatus", "The routing rules in force and the last "
                             "reload", "admin", {"200": ok("rules status", ref("RulesStatus"))},
                             (403, *AUTH)),
        },
        "/v1/admin/health": {
            "get": operation("getHealthReport", "What is wrong: issues with codes and the "
                             "Nagios exit code", "admin",
                             {"200": ok("the report (healthy or not)", ref("HealthReport"))},
                             (403, *AUTH)),
        },
        "/v1/admin/tokens": {
            "post": operation("createToken", "Create an API token (its secret is shown "
                              "once)", "admin", {"201": ok("created", ref("CreatedToken"))},
                              (400, 403, 413, 422, *AUTH), body=ref("NewToken")),
            "get": operation("listTokens", "List API tokens, revoked ones included", "admin",
                             {"200": ok("all tokens", listing(ref("TokenInfo")))},
                             (403, *AUTH)),
        },
        "/v1/admin/tokens/{token_id}": {
            "parameters": [path_param("token_id", "the token's `id`",
                                      {"type": "integer", "minimum": 0})],
            "delete": operation("revokeToken", "Revoke an API token", "admin",
                                {"204": ok("revoked; refused everywhere within seconds", None)},
                                (403, 404, *AUTH)),
        },
        "/v1/admin/agents": {
            "post": operation("createAgent", "Add an agent (a person who works requests)",
                              "admin", {"201": ok("created", ref("Agent"))},
                              (400, 403, 409, 413, 422, *AUTH), body=ref("NewAgent"),
                              description="409 if another agent has this email."),
            "get": operation("listAgents", "List agents, inactive ones included", "admin",
                             {"200": ok("all agents", listing(ref("Agent")))},
                             (400, 403, *AUTH)),
        },
        "/v1/admin/agents/{agent_id}": {
            "parameters": [AGENT_ID],
            "get": operation("getAgent", "Read an agent", "admin",
                             {"200": ok("the agent", ref("Agent"))}, (403, 404, *AUTH)),
            "patch": operation("updateAgent", "Change an agent's name, email, queues or "
                               "whether they are active", "admin",
                               {"200": ok("changed", ref("Agent"))},
                               (400, 403, 404, 409, 413, 422, *AUTH),
                               body=ref("AgentChanges"),
                               description="Their tokens' scope follows `queues`; "
                                           "`active: false` stops their tokens."),
        },
        "/v1/admin/agents/{agent_id}/tokens": {
            "parameters": [AGENT_ID],
            "post": operation("createAgentToken", "Issue a token acting as the agent (its "
                              "secret is shown once)", "admin",
                              {"201": ok("created", ref("CreatedToken"))},
                              (400, 403, 404, 409, 413, 422, *AUTH),
                              body=ref("NewAgentToken"), body_required=False,
                              description="Role agent; actions are recorded as "
                                          "`agent:<id>`. 409 for an inactive agent."),
        },
        "/v1/admin/canned-responses": {
            "post": operation("createCannedResponse", "Add a canned response for a queue "
                              "and language", "admin",
                              {"201": ok("created", ref("CannedResponse"))},
                              (400, 403, 409, 413, 422, *AUTH),
                              body=ref("NewCannedResponse"),
                              description="The body is rendered against a sample request "
                                          "first (422 naming `/body` if it cannot be); 409 "
                                          "if the queue has one by this name in this "
                                          "language."),
            "get": operation("listCannedResponses", "List every canned response", "admin",
                             {"200": ok("all of them", listing(ref("CannedResponse")))},
                             (400, 403, *AUTH)),
        },
        "/v1/admin/canned-responses/{canned_id}": {
            "parameters": [CANNED_ID],
            "get": operation("getCannedResponse", "Read a canned response", "admin",
                             {"200": ok("it", ref("CannedResponse"))}, (403, 404, *AUTH)),
            "patch": operation("updateCannedResponse", "Change a canned response", "admin",
                               {"200": ok("changed", ref("CannedResponse"))},
                               (400, 403, 404, 409, 413, 422, *AUTH),
                               body=ref("CannedResponseChanges")),
            "delete": operation("deleteCannedResponse", "Delete a canned response", "admin",
                                {"204": ok("deleted", None)}, (403, 404, *AUTH)),
        },
        "/v1/queues/{queue}/canned-responses": {
            "parameters": [queue],
            "get": operation(
                "listQueueCannedResponses", "A queue's canned responses, to insert in a "
                "reply", "agents", {"200": ok("the queue's canned responses",
                                              listing(ref("CannedResponse")))},
                (400, 403, 404, *AUTH),
                params=[query_param("lang", "this language (e.g. `de-AT`), else its primary one "
                                    "(`de`), per response", NON_EMPTY),
                        query_param("reference", "render each for this request (one the "
                                    "token can read; 404 otherwise)", NON_EMPTY)],
                description="Send `canned_response` with a reply to insert one."),
        },
        "/v1/admin/dead-letters": {
            "get": operation("listDeadLetters", "Inbox items and outbox rows that failed "
                             "every attempt", "admin",
                             {"200": ok("dead letters", ref("DeadLetters"))}, (403, *AUTH)),
        },
        "/v1/admin/dead-letters/{kind}/{item_id}/retry": {
            "parameters": DEAD_LETTER,
            "post": operation("retryDeadLetter", "Queue a dead letter again", "admin",
                              {"200": ok("queued again", ref("DeadLetterRetried"))},
                              (403, 404, *AUTH)),
        },
        "/v1/admin/dead-letters/{kind}/{item_id}": {
            "parameters": DEAD_LETTER,
            "delete": operation("discardDeadLetter", "Discard a dead outbox row (inbox items "
                                "are kept)", "admin", {"204": ok("discarded", None)},
                                (403, 404, 409, *AUTH)),
        },
        "/v1/admin/audit": {
            "get": operation(
                "listAuditEvents", "The audit trail: agents' and admins' actions, newest "
                "first", "admin",
                {"200": ok("a page of events", obj({
                    "items": {"type": "array", "items": AUDIT_EVENT},
                    "next_cursor": {**nullable(STR),
                                    "description": "pass as `cursor` for the next page"}}))},
                (400, 403, *AUTH), params=AUDIT_PARAMS,
                description="Append-only: no route changes or deletes an event (PUT, PATCH "
                            "and DELETE answer 405) and the database refuses it too; only "
                            "the audit's own retention removes old events."),
        },
        **PRIVACY_PATHS,  # /v1/admin/erasures, /v1/admin/exports
        **STATUS_LINK_PATHS,  # /status, /status/access/{key}, status-link rotation
        "/v1/quarantine": {
            "get": operation("listQuarantined", "Requests held by a quarantine rule", "agents",
                             {"200": ok("held requests in the token's queues",
                                        listing(ref("Quarantined")))}, (403, *AUTH)),
        },
        "/v1/quarantine/{reference}/release": {
            "parameters": [REFERENCE],
            "post": operation("releaseQuarantined", "Let a held request in", "agents",
                              {"200": ok("released into its queue", ref("Released"))},
                              (403, 404, 409, 412, *AUTH), params=[IF_MATCH]),
        },
        "/v1/queues": {
            "get": operation("listQueues", "Queue overview: depth, unclaimed, oldest, past "
                             "due", "agents", {"200": ok("the queues this token can see",
                                                         listing(ref("QueueOverview")))},
                             (403, *AUTH)),
        },
        "/v1/queues/{queue}/requests": {
            "parameters": [queue],
            "get": operation(
                "listQueueRequests", "A page of a queue, in priority then due order",
                "agents", {"200": ok("one page", ref("QueuePage"))}, (400, 404, *AUTH),
                params=[*LIST_PARAMS, query_param(
                    "text", "the subject or any message's text, replies included, "
                    "contains this (any case)",
                    {"type": "string", "minLength": 1, "maxLength": MAX_TEXT})],
                description="An unknown parameter, one given twice or a value it cannot "
                            "take is a 400 problem naming it (`errors[].parameter`)."),
        },
        "/v1/queues/{queue}/claim": {
            "parameters": [queue],
            "post": operation(
                "claimRequests", "Take work from a queue with a lease", "agents",
                {"200": ok("what was claimed (maybe nothing)", listing(ref("Claimed")))},
                (400, 404, 413, 422, *AUTH), body=ref("ClaimRequest"), body_required=False,
                description="Claims up to `limit` free requests for `lease_seconds`; with "
                            "`wait`, waits up to that many seconds for work to arrive."),
        },
        "/v1/reports/requests": {
            "get": operation(
                "getRequestReport", "The desk's figures for a period, per group", "agents",
                {"200": {"description": "one item per group (per day or week: every one "
                                        "in the period); times in seconds",
                         "content": {"application/json": {"schema": REPORT},
                                     "text/csv": {"schema": STR}}}},
                (400, 403, *AUTH),
                params=[query_param("from", "a date (from its start, UTC) or an RFC 3339 "
                                    "date-time with an offset", WHEN, required=True),
                        query_param("to", "a date (to its end, UTC) or an RFC 3339 date-time "
                                    "(exclusive); at most 366 days after `from` by day, "
                                    "1830 otherwise", WHEN, required=True),
                        query_param("group", "what a row is (default `queue`; `agent`: the "
                                    "token whose reply was the first response)",
                                    {"enum": list(REPORT_GROUPINGS)}),
                        query_param("format", "`json` (default) or `csv`",
                                    {"enum": [f for f in REPORT_FORMATS if f != "table"]})],
                description="Admins and agents; an agent scoped to queues gets those "
                            "queues' figures only. README `Reports` says how each figure is "
                            "computed. An unknown parameter, one given twice or a value it "
                            "cannot take is a 400 naming it."),
        },
        **STATUS_PAGE_PATHS,  # /v1/status/{token}: the customer's page and its forms
        "/v1/openapi.json": {
            "get": operation("getOpenApi", "This document", "public",
                             {"200": ok("OpenAPI 3.1 document", {"type": "object"})},
                             (429,), public=True),
        },
        "/healthz": {
            "get": operation("healthz", "The process and its background tasks are up",
                             "operations", {"200": ok("up", ref("Health"))}, (503,),
                             public=True,
                             description="503 names each task that died and is restarting, "
                                         "or has made no progress with work waiting "
                                         "(`unhealthy`, `tasks`)."),
        },
        "/readyz": {
            "get": operation("readyz", "The inbox takes writes now", "operations",
                             {"200": ok("ready", ref("Ready"))}, (503,), public=True,
                             description="A write into the inbox would go through now "
                                         "(checked with a short lock timeout, the answer "
                                         "kept for a second); 503 names the failing check "
                                         "(`failing`, `checks`)."),
        },
    }
