"""What every HTTP handler uses: the app's state keys and a few small helpers."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Config
from gateway.rules_in_force import RulesHolder
from gateway.signals import WorkSignals
from storage.inbox import InboxWriter

CONFIG = web.AppKey("config", Config)
ENGINE = web.AppKey("engine", AsyncEngine)
WRITER = web.AppKey("writer", InboxWriter)
RULES = web.AppKey("rules", RulesHolder)
SIGNALS = web.AppKey("signals", WorkSignals)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None,
                  content_type: str = "application/json") -> web.Response:
    return web.Response(body=json.dumps(data, default=_default).encode(), status=status,
                        headers=headers, content_type=content_type)


def request_url(request: web.Request, reference: str) -> str:
    return f"{request.app[CONFIG].public_url}/v1/requests/{reference}"


def small_int(raw: str) -> int | None:
    """A path or query number: ASCII digits that fit a database integer, else None."""
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None
