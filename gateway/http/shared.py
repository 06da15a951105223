"""What every HTTP handler uses: the app's state keys and a few small helpers."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Config
from gateway.http.downloads import content_disposition, media_type
from gateway.rules_in_force import RulesHolder
from gateway.signals import WorkSignals
from storage.inbox import InboxWriter
from storage.uploads import read_blob

CONFIG = web.AppKey("config", Config)
ENGINE = web.AppKey("engine", AsyncEngine)
WRITER = web.AppKey("writer", InboxWriter)
RULES = web.AppKey("rules", RulesHolder)
SIGNALS = web.AppKey("signals", WorkSignals)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _finite(value: Any) -> Any:
    """`value` with NaN and Infinity as null: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def json_text(data: Any) -> str:
    """Strict JSON (RFC 8259): a non-finite number stored before the API refused
    them is sent as null rather than as a token no JSON reader accepts."""
    try:
        return json.dumps(data, default=_default, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(data), default=_default, allow_nan=False)


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None,
                  content_type: str = "application/json") -> web.Response:
    return web.Response(body=json_text(data).encode(), status=status,
                        headers=headers, content_type=content_type)


def request_url(request: web.Request, reference: str) -> str:
    return f"{request.app[CONFIG].public_url}/v1/requests/{reference}"


def small_int(raw: str) -> int | None:
    """A path or query number: ASCII digits that fit a database integer, else None."""
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None


async def send_stored_file(request: web.Request, item: dict[str, Any], *, fallback: str,
                           headers: dict[str, str] | None = None) -> web.StreamResponse:
    """A stored attachment (`item`: its sha256, size, filename and content_type)
    as a download, never rendered: a customer's HTML must not run here. The
    headers are built from a cleaned copy of the stored name and type
    (downloads.py), so every stored file downloads whatever its sender called
    it; `fallback` names a file without a usable name. Sent in the pieces it is
    stored in, never whole in memory."""
    response = web.StreamResponse(headers={
        "Content-Type": media_type(item["content_type"]),
        "Content-Length": str(item["size"]),
        "Content-Disposition": content_disposition(item["filename"], fallback=fallback),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
        **(headers or {})})
    await response.prepare(request)
    async for piece in read_blob(request.app[ENGINE], item["sha256"]):
        await response.write(piece)
    await response.write_eof()
    return response
