"""Helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import Gateway, start, stop
from gateway.config import Config, build_config
from storage import queries
from storage.install_key import references
from storage.models import inbox_items
from storage.records import NewRequest

# pytest-aiohttp's client of the HTTP app alone (the `app_client` fixture).
AppClient = TestClient[web.Request, web.Application]


def make_config(db_url: str, **sections: dict[str, Any] | list[dict[str, Any]]) -> Config:
    """Test config: ephemeral ports, fast retries, the given database.

    A table given merges into the default one; a list (`form=[...]`) replaces it.
    """
    data: dict[str, Any] = {
        "intake": {"addresses": ["support@localhost", "billing@localhost"],
                   "domains": ["help.example"], "max_message_bytes": 200_000},
        "database": {"url": db_url, "timeout_seconds": 3.0},
        "smtp": {"listen": "127.0.0.1:0", "lmtp_listen": "127.0.0.1:0"},
        "http": {"listen": "127.0.0.1:0", "max_body_bytes": 100_000, "shutdown_seconds": 3.0},
        # Built in this process (a test that wants the build process asks for it);
        # a short linger: a test waits for one request at a time, not for batches.
        "pipeline": {"workers": 1, "poll_seconds": 0.2, "linger_seconds": 0.01,
                     "build_process": False,
                     "backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.05,
                     "max_attempts": 3},
        "queue": [{"name": "general"}, {"name": "billing"}],
    }
    for name, values in sections.items():
        data[name] = values if isinstance(values, list) else {**data.get(name, {}), **values}
    return build_config(data, "<test>", {})


async def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll an async predicate until it returns something truthy (bounded)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def auth(token: str) -> dict[str, str]:
    """The Authorization header for an API token."""
    return {"Authorization": f"Bearer {token}"}


async def count_rows(engine: AsyncEngine, table: Any, *where: Any) -> int:
    """Rows in a table (matching `where`), read now."""
    async with engine.connect() as conn:
        query = select(func.count()).select_from(table).where(*where)
        return int((await conn.execute(query)).scalar_one())


async def reference_of(engine: AsyncEngine, item_id: int) -> str:
    """The reference of an inbox id, under the install key of `engine`'s database."""
    return (await references(engine)).reference_for(item_id)


async def item_of(engine: AsyncEngine, reference: str) -> int | None:
    """The inbox id behind a reference, under the install key of `engine`'s database."""
    return (await references(engine)).id_for(reference)


def routed_to_loopback(address: str) -> bool:
    """True if `address` (e.g. 127.0.0.2) can be bound here: tests that need a
    second client address skip without it."""
    with socket.socket() as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return False
    return True


@contextlib.asynccontextmanager
async def running(db_url: str, **sections: dict[str, Any]) -> AsyncIterator[Gateway]:
    """A whole gateway (gateway.app.start) on `db_url` with `sections` set."""
    gateway = await start(make_config(db_url, **sections))
    try:
        yield gateway
    finally:
        await stop(gateway, grace=1.0)


async def all_processed(engine: AsyncEngine, count: int, timeout: float = 10.0) -> None:
    """Wait until exactly `count` inbox items exist and every one is done."""
    async def done() -> bool:
        async with engine.connect() as conn:
            states = list((await conn.execute(select(inbox_items.c.state))).scalars())
        return len(states) == count and set(states) == {"done"}

    await wait_for(done, timeout=timeout)


async def request_of(engine: AsyncEngine, reference: str) -> dict[str, Any]:
    """The request as the agents' API reads it (it must exist)."""
    found = await queries.get_request(engine, reference)
    assert found is not None and "messages" in found, reference
    return found


def event_data(request: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The data of each timeline entry of `kind`, oldest first."""
    return [e["data"] for e in request["timeline"] if e["kind"] == kind]


def delivery_report(original_id: str, *, recipient: str = "ann@example.com",
                    report_id: str = "bounce-1@mx.example.net",
                    note: str = "Your message could not be delivered.",
                    diagnostic: str | None = None, returned: str = "") -> bytes:
    """A DSN (RFC 3464) from a remote MTA, as it comes back to the support
    address: a hard failure for `recipient` of our mail `original_id`, with its
    header section (`returned`: lines before its Message-ID) attached."""
    diagnostic_line = f"Diagnostic-Code: {diagnostic}\n" if diagnostic else ""
    return f"""From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: support@localhost
Subject: Undelivered Mail Returned to Sender
Message-ID: <{report_id}>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

{note}

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; {recipient}
Action: failed
Status: 5.1.1
{diagnostic_line}
--B
Content-Type: text/rfc822-headers

From: Support <support@localhost>
{returned}Message-ID: <{original_id}>

--B--
""".replace("\n", "\r\n").encode()


def normal(new: NewRequest) -> NewRequest:
    """`new` without what is drawn at random per build (the status token, which
    the acknowledgement quotes, and the acknowledgement's Message-ID)."""
    ack = new.acknowledgement
    if ack is not None:
        token = new.status_token or ""
        ack = replace(ack, text=ack.text.replace(token, "T"),
                      new_text=ack.new_text.replace(token, "T"),
                      html=ack.html.replace(token, "T") if ack.html else ack.html,
                      message_id="M")
    return replace(new, status_token="T", acknowledgement=ack)
