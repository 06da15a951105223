"""The bare baselines the benchmarks compare against, each run as a process.

  smtp PORT              aiosmtpd; the handler answers 250 and keeps nothing
  http PORT              aiohttp; POST answers 201 and keeps nothing
  http-asyncpg PORT DSN  aiohttp; POST commits one asyncpg INSERT, then 201
  form PORT              aiohttp; POST /v1/forms/{id} reads each multipart part
                         whole into memory, keeps nothing, answers 303
  form-read PORT         aiohttp; the same, but `await request.read()` of the
                         whole body instead of walking its parts

They use the same event loop as `intake serve` (uvloop when installed) and
give aiosmtpd a hostname, as the gateway does, so the comparison is fair.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any


async def smtp(port: int) -> None:
    from aiosmtpd.smtp import SMTP

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    handler = Handler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="localhost", enable_SMTPUTF8=True), "127.0.0.1", port
    )
    await _until_stopped()
    server.close()


async def http(port: int, dsn: str | None = None) -> None:
    from aiohttp import web

    pool = None
    if dsn:
        import asyncpg

        pool = await asyncpg.create_pool(dsn, min_size=10, max_size=10)
        await pool.execute(
            "CREATE TABLE IF NOT EXISTS bare_inbox (id bigserial PRIMARY KEY,"
            " received_at timestamptz DEFAULT now(), body bytea)"
        )

    async def create(request: web.Request) -> web.Response:
        body = await request.read()
        json.loads(body)
        if pool is not None:
            item_id = await pool.fetchval(
                "INSERT INTO bare_inbox (body) VALUES ($1) RETURNING id", body
            )
        else:
            item_id = 1
        return web.json_response({"id": item_id}, status=201)

    app = web.Application()
    app.router.add_post("/v1/requests", create)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await _until_stopped()
    await runner.cleanup()


async def form(port: int, whole_body: bool) -> None:
    from aiohttp import BodyPartReader, web

    async def post(request: web.Request) -> web.Response:
        if whole_body:
            await request.read()
        else:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if isinstance(part, BodyPartReader):
                    await part.read()
        form_id = request.match_info["form_id"]
        raise web.HTTPSeeOther(f"/forms/{form_id}/thanks?reference=BARE-0001")

    # Big enough for the benchmarks' largest upload, like the gateway's form limit.
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/forms/{form_id}", post)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await _until_stopped()
    await runner.cleanup()


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    coroutine = {
        "smtp": lambda: smtp(port),
        "http": lambda: http(port),
        "http-asyncpg": lambda: http(port, sys.argv[3]),
        "form": lambda: form(port, whole_body=False),
        "form-read": lambda: form(port, whole_body=True),
    }[kind]()
    try:
        import uvloop

        uvloop.run(coroutine)
    except ImportError:
        asyncio.run(coroutine)


if __name__ == "__main__":
    main()
