"""Behind a trusted proxy, in process: SMTP's PROXY header and HTTP's
X-Forwarded-For name the client, for what is stored, the caps and the rate
limits; nobody else may name one.

The proxy is 127.0.0.1; other clients connect from 127.0.0.2 and up (Linux
routes all of 127/8 to lo).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from ipaddress import ip_address
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.connections import Cause, Refusal
from storage.models import inbox_items
from tests.adversarial.hostile import api_body, mail
from tests.helpers import routed_to_loopback, running

PROXY = "127.0.0.1"
OTHER = "127.0.0.2"
READ_TIMEOUT = 10.0


pytestmark = pytest.mark.skipif(not routed_to_loopback(OTHER),
                                reason="127.0.0.2 is not routed to loopback here")


def proxy_v1(client: str, port: int = 40000) -> bytes:
    family = "TCP6" if ":" in client else "TCP4"
    server = "::1" if family == "TCP6" else "127.0.0.1"
    return f"PROXY {family} {client} {server} {port} 25\r\n".encode()


def proxy_v2(client: str | None, port: int = 40000) -> bytes:
    """v2's binary header: PROXY over TCP/IPv4 (or IPv6), or LOCAL with None."""
    signature = b"\r\n\r\n\x00\r\nQUIT\n"
    if client is None:
        return signature + struct.pack("!BBH", 0x20, 0x00, 0)
    source = ip_address(client)
    if source.version == 4:
        addresses = source.packed + ip_address("127.0.0.1").packed
        family = 0x11
    else:
        addresses = source.packed + ip_address("::1").packed
        family = 0x21
    tail = addresses + struct.pack("!HH", port, 25)
    return signature + struct.pack("!BBH", 0x21, family, len(tail)) + tail


class Smtp:
    """A raw SMTP client from a chosen source address."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, source: str, header: bytes = b"") -> Smtp:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), READ_TIMEOUT)
        if header:
            writer.write(header)
        return cls(reader, writer)

    async def reply(self) -> bytes:
        """One whole reply (its last line); b"" when the server has closed."""
        while True:
            try:
                line = await asyncio.wait_for(self.reader.readline(), READ_TIMEOUT)
            except (ConnectionError, TimeoutError):
                return b""
            if not line or line[3:4] != b"-":
                return line

    async def command(self, line: bytes) -> bytes:
        self.writer.write(line + b"\r\n")
        return await self.reply()

    async def send_mail(self, subject: str, hello: bytes = b"EHLO") -> bytes:
        for line in (hello + b" client.example", b"MAIL FROM:<alice@example.com>",
                     b"RCPT TO:<support@localhost>", b"DATA"):
            answer = await self.command(line)
            if answer[:1] not in (b"2", b"3"):
                return answer
        self.writer.write(mail(subject=subject) + b".\r\n")  # CRLF already (policy SMTP)
        return await self.reply()

    def close(self) -> None:
        self.writer.close()


async def stored_meta(engine: AsyncEngine, channel: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(inbox_items.c.meta)
                                  .where(inbox_items.c.channel == channel)
                                  .order_by(inbox_items.c.id))
        return [row.meta for row in rows]


# --- SMTP: the PROXY protocol ---------------------------------------------------------------

@pytest.mark.parametrize("header", [proxy_v1, proxy_v2], ids=["v1", "v2"])
async def test_smtp__proxy_header_names_the_stored_peer(
        db_url: str, engine: AsyncEngine, header: Any) -> None:
    async with running(db_url, smtp={"proxy_protocol_from": [f"{PROXY}/32"]}) as gw:
        v4 = await Smtp.open(gw.smtp_port, PROXY, header("203.0.113.7", 40001))
        v6 = await Smtp.open(gw.smtp_port, PROXY, header("2001:db8::7", 40002))
        try:
            for client in (v4, v6):
                assert (await client.reply()).startswith(b"220")
                assert (await client.send_mail("via proxy")).startswith(b"250 2.0.0"), client
        finally:
            v4.close()
            v6.close()
    peers = [meta["peer"] for meta in await stored_meta(engine, "smtp")]
    assert peers == [["203.0.113.7", 40001], ["2001:db8::7", 40002]]


async def test_lmtp__takes_the_proxy_header_too(db_url: str, engine: AsyncEngine) -> None:
    async with running(db_url, smtp={"proxy_protocol_from": [f"{PROXY}/32"]}) as gw:
        client = await Smtp.open(gw.lmtp_port, PROXY, proxy_v2("198.51.100.20", 40003))
        untrusted = await Smtp.open(gw.lmtp_port, OTHER, proxy_v1("198.51.100.21"))
        try:
            assert (await client.reply()).startswith(b"220")
            assert (await client.send_mail("lmtp", b"LHLO")).startswith(b"250 2.0.0")
            assert (await untrusted.reply()).startswith(b"220")  # then refused:
            assert (await untrusted.reply()).startswith(b"554 5.7.1")
        finally:
            client.close()
            untrusted.close()
    assert [meta["peer"] for meta in await stored_meta(engine, "lmtp")] == \
        [["198.51.100.20", 40003]]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_smtp__local_header_keeps_the_proxys_address(
        db_url: str, engine: AsyncEngine) -> None:
    # HAProxy's health checks with check-send-proxy: v2 LOCAL, or v1 UNKNOWN.
    async with running(db_url, smtp={"proxy_protocol_from": [f"{PROXY}/32"]}) as gw:
        local = await Smtp.open(gw.smtp_port, PROXY, proxy_v2(None))
        unknown = await Smtp.open(gw.smtp_port, PROXY, b"PROXY UNKNOWN\r\n")
        try:
            for client in (local, unknown):
                assert (await client.reply()).startswith(b"220")
                assert (await client.send_mail("check")).startswith(b"250 2.0.0")
        finally:
            local.close()
            unknown.close()
    assert [meta["peer"][0] for meta in await stored_meta(engine, "smtp")] == [PROXY, PROXY]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("header", [proxy_v1("203.0.113.7"), proxy_v2("203.0.113.7")],
                         ids=["v1", "v2"])
async def test_smtp__proxy_header_from_an_untrusted_address_is_refused(
        db_url: str, engine: AsyncEngine, header: bytes) -> None:
    async with running(db_url, smtp={"proxy_protocol_from": [f"{PROXY}/32"]}) as gw:
        client = await Smtp.open(gw.smtp_port, OTHER)
        try:
            assert (await client.reply()).startswith(b"220")
            client.writer.write(header)
            assert (await client.reply()).startswith(b"554 5.7.1")
            assert await client.reply() == b""  # and closed
        finally:
            client.close()
        assert gw.smtp.connections.cut[Cause.PROXY] == 1
    assert await stored_meta(engine, "smtp") == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_smtp__proxy_line_later_in_a_session_is_refused(
        db_url: str, engine: AsyncEngine) -> None:
    # From the proxy itself too: only a connection's first bytes are a header.
    async with running(db_url, smtp={"proxy_protocol_from": [f"{PROXY}/32"]}) as gw:
        trusted = await Smtp.open(gw.smtp_port, PROXY, proxy_v1("203.0.113.7"))
        untrusted = await Smtp.open(gw.smtp_port, OTHER)
        try:
            for client in (trusted, untrusted):
                assert (await client.reply()).startswith(b"220")
                assert (await client.command(b"EHLO x")).startswith(b"250")
                assert (await client.command(proxy_v1("198.51.100.1")[:-2])
                        ).startswith(b"554 5.7.1")
        finally:
            trusted.close()
            untrusted.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("first", [b"EHLO client.example\r\n", b"PROXY TCP4 nonsense\r\n",
                                   b"\r\n\r\n\x00\r\nQUIT\n\x99\x99\x00\x00"],
                         ids=["no-header", "bad-v1", "bad-v2"])
async def test_smtp__trusted_proxy_must_send_a_valid_header(
        db_url: str, engine: AsyncEngine, first: bytes) -> None:
    async with running(db_url, smtp={"proxy_protocol_from": [f"{PROXY}/32"]}) as gw:
        client = await Smtp.open(gw.smtp_port, PROXY, first)
        try:
            assert await client.reply() == b""  # closed, never greeted
        finally:
            client.close()
        await asyncio.sleep(0.1)
        assert gw.smtp.connections.open == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_smtp__trusted_proxy_silent_is_cut_at_the_command_timeout(db_url: str) -> None:
    async with running(db_url, smtp={"proxy_protocol_from": [f"{PROXY}/32"],
                                     "command_timeout_seconds": 0.5}) as gw:
        client = await Smtp.open(gw.smtp_port, PROXY)
        try:
            assert (await client.reply()).startswith(b"421 4.4.2")
        finally:
            client.close()
        assert gw.smtp.connections.cut[Cause.COMMAND] == 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_smtp__per_client_cap_counts_the_client_behind_the_proxy(db_url: str) -> None:
    async with running(db_url, smtp={"proxy_protocol_from": [f"{PROXY}/32"],
                                     "max_connections": 20,
                                     "max_connections_per_client": 2}) as gw:
        clients = []
        try:
            # Five from the proxy's own address: it stands for many, no cap of its own.
            for source in ["203.0.113.1", "203.0.113.1", "203.0.113.2", "203.0.113.3"]:
                clients.append(await Smtp.open(gw.smtp_port, PROXY, proxy_v1(source)))
                assert (await clients[-1].reply()).startswith(b"220")
            # A third from one client behind it: that client's cap, after the header.
            clients.append(await Smtp.open(gw.smtp_port, PROXY, proxy_v1("203.0.113.1")))
            assert (await clients[-1].reply()).startswith(b"421 4.7.0")
            assert await clients[-1].reply() == b""
            # The others, and a direct client, unaffected.
            clients.append(await Smtp.open(gw.smtp_port, PROXY, proxy_v2("203.0.113.2")))
            assert (await clients[-1].reply()).startswith(b"220")
            clients.append(await Smtp.open(gw.smtp_port, OTHER))
            assert (await clients[-1].reply()).startswith(b"220")
            assert gw.smtp.connections.open_from("203.0.113.1") == 2
            assert gw.smtp.connections.open_from(PROXY) == 0
        finally:
            for client in clients:
                client.close()
        assert gw.smtp.connections.refused == {Refusal.PER_CLIENT: 1}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_smtp__without_trusted_proxies_a_header_is_refused(db_url: str) -> None:
    async with running(db_url) as gw:  # the default: off
        client = await Smtp.open(gw.smtp_port, PROXY)
        try:
            assert (await client.reply()).startswith(b"220")
            client.writer.write(proxy_v1("203.0.113.7"))
            assert (await client.reply()).startswith(b"554 5.7.1")
        finally:
            client.close()


# --- HTTP: X-Forwarded-For ------------------------------------------------------------------

async def post(base: str, source: str, forwarded_for: str | None = None) -> int:
    headers = {"Content-Type": "application/json"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as session, session.post(
            f"{base}/v1/requests", data=api_body(), headers=headers) as response:
        await response.read()
        return response.status


async def test_http__forwarded_for_from_a_trusted_proxy_names_the_client(
        db_url: str, engine: AsyncEngine, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="intake.access")
    async with running(db_url, http={"trusted_proxies": [f"{PROXY}/32"], "open_intake": True},
                       log={"access": True}) as gw:
        assert await post(gw.http_url, PROXY, "6.6.6.6, 203.0.113.5") == 201
        assert await post(gw.http_url, OTHER, "203.0.113.5") == 201  # not a proxy: ignored
        assert await post(gw.http_url, PROXY) == 201  # the proxy's own request
        assert await post(gw.http_url, PROXY, "garbage") == 201
    remotes = [meta["remote"] for meta in await stored_meta(engine, "api")]
    assert remotes == ["203.0.113.5", OTHER, PROXY, PROXY]
    logged = [r.getMessage().split()[0] for r in caplog.records if r.name == "intake.access"]
    assert logged == ["203.0.113.5", OTHER, PROXY, PROXY]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_http__rate_limits_count_each_client_behind_the_proxy(db_url: str) -> None:
    async with running(db_url, http={"trusted_proxies": [f"{PROXY}/32"], "open_intake": True,
                                     "rate_limit_per_address": 0.001,
                                     "rate_limit_burst": 2}) as gw:
        first = [await post(gw.http_url, PROXY, "203.0.113.5") for _ in range(3)]
        other = [await post(gw.http_url, PROXY, "203.0.113.6") for _ in range(2)]
        # A client cannot take another's place by writing its own entry.
        forged = await post(gw.http_url, PROXY, "203.0.113.7, 203.0.113.5")
    assert first == [201, 201, 429]
    assert other == [201, 201]
    assert forged == 429


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_http__trusted_proxy_has_no_per_client_connection_cap(db_url: str) -> None:
    async with running(db_url, http={"trusted_proxies": [f"{PROXY}/32"],
                                     "max_connections": 10,
                                     "max_connections_per_client": 2}) as gw:
        port = gw.http_port
        held = [await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
                for source in [PROXY] * 4 + [OTHER] * 3]
        try:
            for _, writer in held:
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            statuses = [(await asyncio.wait_for(reader.readline(), READ_TIMEOUT)).split()[1]
                        for reader, _ in held]
        finally:
            for _, writer in held:
                writer.close()
    assert statuses[:4] == [b"200"] * 4
    assert statuses[4:] == [b"200", b"200", b"429"]
