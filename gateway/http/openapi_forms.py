"""The web forms' part of the OpenAPI document (pages, description, post, CORS).

A browser's post is answered with pages and redirects, a JSON client's with
JSON: the post's error answers are documented with both media types.
"""

from __future__ import annotations

from collections.abc import Sequence

from domain.lifecycle import Status
from gateway.http.openapi_schema import (
    INT,
    OPT_STR,
    STR,
    Schema,
    header,
    obj,
    ok,
    operation,
    path_param,
    ref,
)

HTML: Schema = {"type": "string", "description": "an HTML page"}


def form_schemas() -> dict[str, Schema]:
    return {
        "FormField": obj({
            "name": STR, "label": STR,
            "kind": {"enum": ["text", "email", "textarea", "select", "checkbox", "file"]},
            "required": {"type": "boolean"}, "max_length": INT, "hint": STR,
            "options": {"type": "array", "items": STR},
        }),
        "FormDescription": obj({
            "id": STR, "title": STR, "intro": STR,
            "fields": {"type": "array", "items": ref("FormField")},
            "limits": obj({"max_files": INT, "max_file_bytes": INT,
                           "file_types": {"type": "array", "items": STR},
                           "max_body_bytes": INT, "min_fill_seconds": {"type": "number"}}),
            "token_field": {"const": "_form_token"},
            "token": {"type": "string", "description": "send it back in `token_field`; "
                      "it must be at least `min_fill_seconds` old, is good for one post, "
                      "and only from the address (IPv6: the /64) that fetched it"},
            "honeypot": {"type": "string", "description": "a field name to leave empty"},
        }),
        "FormReceived": obj({
            "reference": STR,
            "status": {"const": Status.RECEIVED.value,
                       "description": "stored, files included; processing follows"},
        }),
        "FormCounts": obj({"items": {"type": "array", "items": obj({
            "id": STR, "title": STR, "queue": OPT_STR,
            "accepted": INT,
            "refused": {"type": "object", "additionalProperties": INT,
                        "description": "per reason: invalid, honeypot, token, too_large, "
                                       "rate_limited, origin, broken, unsupported, "
                                       "unavailable"},
        })}}),
    }


def _either(description: str, retry_after: bool = False) -> Schema:
    """A refused post: the form page again for a browser, a problem for JSON."""
    response: Schema = {"description": description, "content": {
        "application/problem+json": {"schema": ref("Problem")},
        "text/html": {"schema": HTML}}}
    if retry_after:
        response["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    return response


def _page(description: str) -> Schema:
    return {"description": description, "content": {"text/html": {"schema": HTML}}}


def form_paths(form_ids: Sequence[str]) -> dict[str, Schema]:
    form = path_param("form_id", "a configured form's id",
                      {"type": "string", "enum": list(form_ids)} if form_ids else None)
    cors = {"Access-Control-Allow-Origin": header("the allowed origin that asked"),
            "Vary": header("`Origin`")}
    multipart: Schema = {"type": "object", "additionalProperties": {
        "oneOf": [STR, {"type": "string", "contentMediaType": "application/octet-stream"}]}}
    post = operation(
        "submitForm", "Post a web form (urlencoded, or multipart with files)", "forms",
        {"201": ok("stored durably, files included (JSON clients)", ref("FormReceived")),
         "303": {"description": "stored durably; a browser goes on to the success page "
                                "with `?reference=`, or a refused post to `failure_url`",
                 "headers": {"Location": header("the success or failure page")}},
         "400": _either("the multipart body is broken"),
         "403": _either("a cross-site post from an origin the form does not allow"),
         "404": {"$ref": "#/components/responses/NotFound"},
         "413": _either("the post or one of its files is over the form's limit"),
         "415": _either("neither multipart/form-data nor urlencoded"),
         "422": _either("invalid fields (each in `errors`), the honeypot filled, or the "
                        "fill-time token missing, bad, too new, too old, from another "
                        "address or spent by an earlier post"),
         "429": _either("too many posts from this address to this form", retry_after=True),
         "503": _either("storage is temporarily unavailable: send again later",
                        retry_after=True)},
        (), public=True,
        description="With `Accept: application/json` the answer is JSON (201, or a problem "
                    "document); otherwise a browser's: 303 to the success page, or the "
                    "form page again with the errors beside their fields.")
    post["requestBody"] = {"required": True, "content": {
        "multipart/form-data": {"schema": multipart},
        "application/x-www-form-urlencoded": {"schema": {
            "type": "object", "additionalProperties": STR}}}}
    return {
        "/forms/{form_id}": {
            "parameters": [form],
            "get": operation("formPage", "The form as an accessible HTML page (no script "
                             "needed)", "forms",
                             {"200": _page("the form, with a fresh fill-time token"),
                              "404": _page("no such form")}, (), public=True),
        },
        "/forms/{form_id}/thanks": {
            "parameters": [form],
            "get": operation("formThanks", "The default success page, showing the reference",
                             "forms", {"200": _page("thanks, and the reference when given"),
                                       "404": _page("no such form")}, (400,), public=True,
                             params=[{"name": "reference", "in": "query", "required": False,
                                      "description": "the reference the post was given",
                                      "schema": STR}]),
        },
        "/v1/forms/{form_id}": {
            "parameters": [form],
            "get": operation("describeForm", "A form's fields, limits and a fresh token (for "
                             "fetch clients)", "forms",
                             {"200": ok("the form", ref("FormDescription"),
                                        headers={"Cache-Control": header("`no-store`")})},
                             (404, 429), public=True),
            "post": post,
            "options": operation("formPreflight", "CORS preflight, for the form's allowed "
                                 "origins", "forms",
                                 {"204": {"description": "allowed", "headers": cors}},
                                 (403, 404, 429), public=True),
        },
        "/v1/admin/forms": {
            "get": operation("formCounts", "Posts accepted and refused per form and reason",
                             "admin",
                             {"200": ok("since this process started", ref("FormCounts"))},
                             (401, 403, 429, 503)),
        },
    }
