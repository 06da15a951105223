"""Building blocks of the OpenAPI document: JSON Schema shorthands, the shared
responses and headers, parameters and operations.

openapi.py, openapi_components.py, openapi_paths.py and openapi_forms.py build
the document from these; none of them imports another's private helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Schema = dict[str, Any]

DATE_TIME: Schema = {"type": "string", "format": "date-time",
                     "description": "ISO 8601 (RFC 3339) timestamp with UTC offset"}
URL: Schema = {"type": "string", "format": "uri"}
SIMPLE_VALUE: Schema = {"type": ["string", "number", "boolean", "null"]}
# What the server's Python regexes and str.strip() take as white space (Unicode),
# spelled out so that every regex dialect reads the patterns the same way.
_WS = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK = f"[^{_WS}]"
# One addr-spec (parsers/addresses.py, which checks more: lengths in octets,
# IDNA, a public domain): none of the characters of names, lists, groups,
# comments, quoting or routes.
_NOT_IN_ADDRESS = _WS + r',;:<>()\[\]"\\%!'
EMAIL = f"^[^@{_NOT_IN_ADDRESS}]{{1,64}}@[^@{_NOT_IN_ADDRESS}]{{1,253}}$"


def nullable(schema: Schema) -> Schema:
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


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, Schema], *, required: Sequence[str] | None = None,
        closed: bool = True, **extra: Any) -> Schema:
    """An object; by default every property is required and no other is sent."""
    schema: Schema = {"type": "object", "properties": properties,
                      "required": list(properties) if required is None else list(required)}
    if closed:
        schema["additionalProperties"] = False
    schema.update(extra)
    return schema


def listing(item: Schema) -> Schema:
    return obj({"items": {"type": "array", "items": item}})


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
WHOLE = "a JSON integer written without a fraction (`5`, not `5.0`: 422)"
OPT_STR = nullable(STR)


# --- responses, parameters, operations --------------------------------------

def header(description: str, schema: Schema | None = None,
           required: bool = True) -> Schema:
    return {"description": description, "required": required, "schema": schema or STR}


HEADERS: dict[str, Schema] = {
    "RetryAfter": header("seconds to wait before trying again",
                         {"type": "string", "pattern": "^[0-9]+$"}),
    "WWWAuthenticate": header("`Bearer realm=\"intake\"`"),
    "Location": header("URL of the new request", URL),
    "ETag": header("version of the request, `\"v<version>\"`: send it back in If-Match",
                   {"type": "string", "pattern": '^"v[0-9]+"$'}),
}


def problem(description: str, headers: Sequence[str] = ()) -> Schema:
    response: Schema = {"description": description,
                        "content": {"application/problem+json": {"schema": ref("Problem")}}}
    if headers:
        response["headers"] = {_wire(h): {"$ref": f"#/components/headers/{h}"}
                               for h in headers}
    return response


def _wire(name: str) -> str:
    return {"RetryAfter": "Retry-After", "WWWAuthenticate": "WWW-Authenticate"}.get(name, name)


RESPONSES: dict[str, Schema] = {
    "BadRequest": problem("malformed: the body is not JSON, or a parameter is invalid"),
    "Unauthorized": problem("no valid bearer token", ["WWWAuthenticate"]),
    "Forbidden": problem("the token's role may not do this"),
    "NotFound": problem("unknown, or outside the token's queues (the same answer)"),
    "Conflict": problem("the request is not in a state that allows this"),
    "PreconditionFailed": problem("If-Match is stale: the request changed; read it again"),
    "ContentTooLarge": problem("the body is over `http.max_body_bytes`"),
    "Unprocessable": problem("invalid fields, each listed in `errors` with a JSON pointer"),
    "PreconditionRequired": problem("If-Match is required"),
    "TooManyRequests": problem("rate limit per token or client address", ["RetryAfter"]),
    "ServiceUnavailable": problem("storage is temporarily unavailable: retry later",
                                  ["RetryAfter"]),
}

CODES = {"400": "BadRequest", "401": "Unauthorized", "403": "Forbidden", "404": "NotFound",
         "409": "Conflict", "412": "PreconditionFailed", "413": "ContentTooLarge",
         "422": "Unprocessable", "428": "PreconditionRequired", "429": "TooManyRequests",
         "503": "ServiceUnavailable"}


def ok(description: str, schema: Schema | None, *, headers: dict[str, Schema] | None = None,
       media: str = "application/json") -> Schema:
    response: Schema = {"description": description}
    if schema is not None:
        response["content"] = {media: {"schema": schema}}
    if headers:
        response["headers"] = headers
    return response


def path_param(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema or STR}


def query_param(name: str, description: str, schema: Schema | None = None,
                required: bool = False) -> Schema:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": schema or STR}


def operation(op_id: str, summary: str, tag: str, answers: dict[str, Schema],
              errors: Sequence[int], *, params: Sequence[Schema] = (),
              body: Schema | None = None, body_required: bool = True, public: bool = False,
              description: str | None = None) -> Schema:
    """One operation; `errors` are the problem statuses its handler can answer."""
    responses: dict[str, Schema] = dict(answers)
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
