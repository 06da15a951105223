"""With the database unreachable, intake answers "try later" and stores nothing
half; once the database is back, everything acknowledged is there, once."""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import sqlite3

import aiohttp
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import start, stop
from gateway.config import DEFAULT_FORM
from storage.models import blob_chunks, blobs, events, inbox_items, messages, requests
from tests.helpers import count_rows, make_config, wait_for

BODY = {"requester": {"email": "f@example.com"}, "subject": "fault", "body": "x"}


class TcpProxy:
    """A TCP relay to PostgreSQL that can be cut (connections reset) and restored."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


class Outage:
    """Make the test database unreachable, and bring it back."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.proxy: TcpProxy | None = None
        self._lock: sqlite3.Connection | None = None

    async def prepare(self) -> str:
        url = make_url(self.db_url)
        if url.get_backend_name() == "sqlite":
            return self.db_url
        self.proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
        await self.proxy.up()
        return url.set(host="127.0.0.1", port=self.proxy.port).render_as_string(
            hide_password=False)

    async def begin(self) -> None:
        if self.proxy is not None:
            await self.proxy.down()
        else:  # another process holding the write lock: every write times out
            def lock() -> sqlite3.Connection:
                conn = sqlite3.connect(make_url(self.db_url).database, timeout=10,
                                       isolation_level=None, check_same_thread=False)
                conn.execute("BEGIN EXCLUSIVE")
                return conn

            # In a thread: the gateway in this event loop may hold the lock briefly.
            self._lock = await asyncio.to_thread(lock)

    async def end(self) -> None:
        if self.proxy is not None:
            await self.proxy.up()
        elif self._lock is not None:
            self._lock.execute("ROLLBACK")
            self._lock.close()


def _send(port: int, subject: str) -> tuple[int, bytes]:
    data = (f"From: f@example.com\r\nTo: support@localhost\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@example.com>\r\n\r\nbody\r\n").encode()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo()
        client.mail("f@example.com")
        client.rcpt("support@localhost")
        return client.data(data)


async def test_faults__database_down_answers_try_later_and_loses_nothing(
        db_url: str, engine: AsyncEngine, admin_token: str) -> None:
    outage = Outage(db_url)
    config = make_config(await outage.prepare(), database={"timeout_seconds": 2.0},
                         form=[DEFAULT_FORM | {"min_fill_seconds": 0}])
    gateway = await start(config)
    try:
        async with aiohttp.ClientSession(base_url=gateway.http_url) as http:
            headers = {"Authorization": f"Bearer {admin_token}"}
            acknowledged = []
            code, _ = await asyncio.to_thread(_send, gateway.smtp_port, "before")
            assert code == 250
            acknowledged.append("before")

            await outage.begin()
            code, reply = await asyncio.to_thread(_send, gateway.smtp_port, "during")
            assert (code, reply[:5]) == (451, b"4.3.0")
            async with http.post("/v1/requests", json=BODY, headers=headers) as resp:
                assert resp.status == 503
                assert resp.headers["Retry-After"].isdigit()
                assert resp.content_type == "application/problem+json"
            form = aiohttp.FormData({"email": "f@example.com", "subject": "form", "message": "x"})
            form.add_field("attachments", b"%PDF" * 1000, filename="a.pdf",
                           content_type="application/pdf")
            async with http.post("/v1/forms/support", data=form, allow_redirects=False) as resp:
                assert resp.status == 503  # a browser: the form again, "send it again later"
                assert resp.headers["Retry-After"].isdigit()
                assert "send it again in a minute" in await resp.text()
            async with http.get("/readyz") as resp:
                assert resp.status == 503
            await outage.end()

            async def ready() -> bool:
                async with http.get("/readyz") as resp:
                    return resp.status == 200

            await wait_for(ready, timeout=15)
            code, _ = await asyncio.to_thread(_send, gateway.smtp_port, "after")
            assert code == 250
            acknowledged.append("after")
            async with http.post("/v1/requests", json=BODY, headers=headers) as resp:
                assert resp.status == 201

        async def all_done() -> bool:
            return await count_rows(engine, requests) == 3

        await wait_for(all_done, timeout=20)
    finally:
        await stop(gateway, grace=3)
    async with engine.connect() as conn:
        subjects = sorted((await conn.execute(select(requests.c.subject))).scalars())
        states = set((await conn.execute(select(inbox_items.c.state))).scalars())
    assert subjects == ["after", "before", "fault"]  # nothing from the outage, nothing twice
    assert states == {"done"}
    assert await count_rows(engine, inbox_items) == 3
    assert await count_rows(engine, blobs) == await count_rows(engine, blob_chunks) == 0
    async with engine.connect() as conn:
        inbound = (await conn.execute(select(func.count()).select_from(messages)
                                      .where(messages.c.direction == "in"))).scalar_one()
    assert inbound == 3
    assert await count_rows(engine, events) == 2 * 7 + 5  # an email has 7 events, a POST 5
