"""The HTTP app factory: middleware, shared state and every route.

`init_app(config)` alone is a working HTTP API (tests run it with pytest-aiohttp's
`aiohttp_client`): whatever collaborator is not passed in, the app makes and
disposes of itself in `app.cleanup_ctx`. The composition root (gateway/app.py)
passes all of them, since it owns them and stops them in its own order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Config
from gateway.health import HEALTH_KEY, Health
from gateway.health_report import Reporter
from gateway.http import (
    admin,
    agents,
    audit,
    canned,
    dashboard,
    forms,
    openapi,
    people,
    privacy,
    reports,
    requests,
    status_lookup,
)
from gateway.http.auth import TOKENS, TokenCache
from gateway.http.forwarded import forwarded_middleware
from gateway.http.limits import Buckets, rate_limit_middleware
from gateway.http.problems import problems_middleware
from gateway.http.shared import CONFIG, ENGINE, RULES, SIGNALS, WRITER
from gateway.proxies import TrustedProxies
from gateway.rules_in_force import RulesHolder
from gateway.signals import WorkSignals
from storage.engine import create_engine
from storage.inbox import InboxWriter


def init_app(config: Config, *, engine: AsyncEngine | None = None,
             writer: InboxWriter | None = None, rules: RulesHolder | None = None,
             signals: WorkSignals | None = None) -> web.Application:
    """The HTTP API; what is not passed in, it makes for itself (see above)."""
    per_token = Buckets(config.http.rate_limit_per_token, config.http.rate_limit_burst)
    per_address = Buckets(config.http.rate_limit_per_address, config.http.rate_limit_burst)
    proxies = TrustedProxies(config.http.trusted_proxies)
    # The client's address first (behind a proxy): everything after sees it.
    middlewares = [forwarded_middleware(proxies)] if proxies else []
    app = web.Application(
        middlewares=[*middlewares, problems_middleware,
                     rate_limit_middleware(per_token, per_address)],
        client_max_size=config.http.max_body_bytes)
    app[CONFIG] = config
    app[RULES] = rules or RulesHolder.load(config)
    app[SIGNALS] = signals or WorkSignals()
    app[HEALTH_KEY] = Health()  # gateway.app.build() puts one that sees the tasks
    app[admin.REPORTER] = Reporter()
    if engine is None:
        app.cleanup_ctx.append(_own_engine)
    else:
        _set_engine(app, engine)
    if writer is None:
        app.cleanup_ctx.append(_own_writer)  # after the engine: it writes through it
    else:
        app[WRITER] = writer
    _add_routes(app)
    return app


def _set_engine(app: web.Application, engine: AsyncEngine) -> None:
    app[ENGINE] = engine
    app[TOKENS] = TokenCache(engine)


async def _own_engine(app: web.Application) -> AsyncIterator[None]:
    database = app[CONFIG].database
    engine = create_engine(database.url, pool_size=database.pool_size,
                           timeout=database.timeout_seconds)
    _set_engine(app, engine)
    yield
    await engine.dispose()


async def _own_writer(app: web.Application) -> AsyncIterator[None]:
    writer = InboxWriter(engine=app[ENGINE], timeout=app[CONFIG].database.timeout_seconds)
    app[WRITER] = writer
    task = asyncio.create_task(writer.run())
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/requests", requests.create_request)
    app.router.add_get("/v1/requests", requests.list_requests)
    app.router.add_get("/v1/requests/{reference}", requests.get_request)
    app.router.add_get("/v1/admin/rules", admin.rules_status)
    app.router.add_get("/v1/admin/health", admin.health_report)
    app.router.add_post("/v1/admin/tokens", admin.create_api_token)
    app.router.add_get("/v1/admin/tokens", admin.list_api_tokens)
    app.router.add_delete("/v1/admin/tokens/{token_id}", admin.revoke_api_token)
    people.add_routes(app)  # /v1/admin/agents
    canned.add_routes(app)  # canned responses: admin CRUD and per queue
    app.router.add_get("/v1/admin/dead-letters", admin.list_dead_letters)
    app.router.add_post("/v1/admin/dead-letters/{kind}/{item_id}/retry", admin.retry_dead_letter)
    app.router.add_delete("/v1/admin/dead-letters/{kind}/{item_id}", admin.discard_dead_letter)
    audit.add_routes(app)  # /v1/admin/audit: read only
    privacy.add_routes(app)  # /v1/admin/erasures, /v1/admin/exports
    app.router.add_get("/v1/quarantine", requests.list_quarantined)
    app.router.add_post("/v1/quarantine/{reference}/release", requests.release_quarantined)
    agents.add_routes(app)
    reports.add_routes(app)  # /v1/reports/requests
    forms.add_routes(app)
    status_lookup.add_routes(app)  # /status: the lookup page, one-time links; rotation
    dashboard.add_routes(app)  # /dashboard: HTML pages for team leads
    app.router.add_get("/healthz", requests.healthz)
    app.router.add_get("/readyz", requests.readyz)
    app.router.add_get("/v1/openapi.json", openapi.serve)
