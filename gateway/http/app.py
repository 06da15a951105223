"""The HTTP app factory: middleware, shared state and every route."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Config
from gateway.http import admin, agents, forms, openapi, requests
from gateway.http.limits import Buckets, rate_limit_middleware
from gateway.http.shared import (
    CONFIG,
    ENGINE,
    RULES,
    SIGNALS,
    TOKENS,
    WRITER,
    TokenCache,
    problems_middleware,
)
from gateway.rules_in_force import RulesHolder
from gateway.signals import WorkSignals
from storage.inbox import InboxWriter


def build_app(config: Config, engine: AsyncEngine, writer: InboxWriter,
              rules: RulesHolder, signals: WorkSignals | None = None) -> web.Application:
    per_token = Buckets(config.http.rate_limit_per_token, config.http.rate_limit_burst)
    per_address = Buckets(config.http.rate_limit_per_address, config.http.rate_limit_burst)
    app = web.Application(
        middlewares=[problems_middleware, rate_limit_middleware(per_token, per_address)],
        client_max_size=config.http.max_body_bytes)
    app[CONFIG] = config
    app[ENGINE] = engine
    app[WRITER] = writer
    app[TOKENS] = TokenCache(engine)
    app[RULES] = rules
    app[SIGNALS] = signals or WorkSignals()
    app.router.add_post("/v1/requests", requests.create_request)
    app.router.add_get("/v1/requests", requests.list_requests)
    app.router.add_get("/v1/requests/{reference}", requests.get_request)
    app.router.add_get("/v1/admin/rules", admin.rules_status)
    app.router.add_post("/v1/admin/tokens", admin.create_api_token)
    app.router.add_get("/v1/admin/tokens", admin.list_api_tokens)
    app.router.add_delete("/v1/admin/tokens/{token_id}", admin.revoke_api_token)
    app.router.add_get("/v1/admin/dead-letters", admin.list_dead_letters)
    app.router.add_post("/v1/admin/dead-letters/{kind}/{item_id}/retry", admin.retry_dead_letter)
    app.router.add_delete("/v1/admin/dead-letters/{kind}/{item_id}", admin.discard_dead_letter)
    app.router.add_get("/v1/quarantine", requests.list_quarantined)
    app.router.add_post("/v1/quarantine/{reference}/release", requests.release_quarantined)
    agents.add_routes(app)
    forms.add_routes(app)
    app.router.add_get("/healthz", requests.healthz)
    app.router.add_get("/readyz", requests.readyz)
    app.router.add_get("/v1/openapi.json", openapi.serve)
    return app
