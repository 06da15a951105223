"""The published API contract: an OpenAPI 3.1 document, built in code.

`document()` describes every route `gateway.http.app` serves, with the status
codes each handler can answer and the JSON shapes it sends (component schemas
are JSON Schema 2020-12). `serve` returns it at GET /v1/openapi.json with this
deployment's public URL and queue names filled in. The parts: the building
blocks (openapi_schema.py), the shapes (openapi_components.py), the paths
(openapi_paths.py), the web forms (openapi_forms.py) and the dashboard's
pages (openapi_dashboard.py).

Keep it true to the handlers: tests/e2e/test_openapi.py checks that every
route is documented and runs Schemathesis against a live gateway with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web

from gateway.http.openapi_components import component_schemas
from gateway.http.openapi_dashboard import dashboard_paths
from gateway.http.openapi_forms import form_paths, form_schemas
from gateway.http.openapi_paths import api_paths
from gateway.http.openapi_schema import HEADERS, RESPONSES
from gateway.http.openapi_webhooks import webhook_schemas, webhooks
from gateway.http.shared import CONFIG, json_response


def document(public_url: str, queues: Sequence[str] = (), *,
             open_intake: bool = False, forms: Sequence[str] = ()) -> dict[str, Any]:
    """The OpenAPI 3.1 document for a gateway at `public_url` with these queues."""
    paths = api_paths(queues) | form_paths(forms) | dashboard_paths()
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
        # What `[[webhook]]` subscribers (and the broker) are sent.
        "webhooks": webhooks(),
        "components": {
            "schemas": component_schemas(queues) | form_schemas() | webhook_schemas(),
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
