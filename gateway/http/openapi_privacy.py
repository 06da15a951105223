"""The OpenAPI paths of personal data (gateway/http/privacy.py): erasures and exports."""

from __future__ import annotations

from gateway.http.openapi_schema import (
                            AUTH,
                            INT,
                            STR,
                            URL,
                            Schema,
                            nullable,
                            obj,
                            ok,
                            operation,
                            path_param,
)

_WHEN: Schema = {"type": "string", "format": "date-time"}
PERSON = obj({"requester": {"type": "string", "maxLength": 320,
                            "description": "the person's email address (any case)"}})
ERASURE = obj({
    "id": INT,
    "state": {"type": "string", "enum": ["pending", "running", "done"]},
    "phase": {**STR, "description": "the step it is at (`done` once finished)"},
    "address_hash": {**STR, "description": "HMAC-SHA256 of the lower-cased address under "
                     "this install's key: the same person gives the same hash"},
    "requested_by": {**STR, "description": "`token:<id>`, `agent:<id>` or `cli`"},
    "requested_at": _WHEN, "finished_at": nullable(_WHEN),
    "counts": {"type": "object", "additionalProperties": {"type": "integer"},
               "description": "what was deleted, erased or blanked, by kind"},
    "references": {"type": "array", "items": STR,
                   "description": "the requests it changed or deleted"},
    "url": URL,
})
_ERASURE_ID = path_param("erasure_id", "the erasure's `id`", {"type": "integer", "minimum": 0})

PRIVACY_PATHS: dict[str, Schema] = {
    "/v1/admin/erasures": {
        "post": operation(
            "startErasure", "Erase every trace of one person (right to erasure)", "admin",
            {"202": ok("the erasure is stored and runs in the background", ERASURE,
                       headers={"Location": {"description": "the erasure's URL",
                                             "required": True, "schema": URL}})},
            (400, 403, 413, 422, *AUTH), body=PERSON,
            description="An unfinished erasure of the same person is answered again, not "
                        "started twice. The address is never shown back or kept once done."),
    },
    "/v1/admin/erasures/{erasure_id}": {
        "parameters": [_ERASURE_ID],
        "get": operation("getErasure", "How far an erasure is, and its proof once done",
                         "admin", {"200": ok("the erasure", ERASURE)}, (403, 404, *AUTH)),
    },
    "/v1/admin/exports": {
        "post": operation(
            "exportPerson", "One person's requests, mails and files (right of access)",
            "admin", {"200": ok("a zip: README.txt, requests.json and its JSON Schema, "
                                "mails/*.eml as received, submissions/, attachments/",
                                {"type": "string", "format": "binary"},
                                media="application/zip")},
            (400, 403, 413, 422, *AUTH), body=PERSON),
    },
}
