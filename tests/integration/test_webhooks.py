"""Webhook deliveries against a real aiohttp receiver on 127.0.0.1.

Every connection the client makes goes through `connections`, which records it
and refuses any address but 127.0.0.1: no test can send traffic elsewhere, and
"refused before connecting" is asserted as "no connection attempted at all".
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.config.webhooks import Subscription, parse_subscriptions
from gateway.delivery.webhooks import (
    DeliveryResult,
    canonical_json,
    deliver,
    make_session,
    refusal,
    verify,
)

SECRET = "s3cret-for-tests"
NOW = 1_790_000_000
PAYLOAD = {"reference": "RQ-7K2M", "status": "open", "queue": "general", "é": [1, 2]}


@dataclass
class Receiver:
    server: TestServer
    calls: dict[str, int] = field(default_factory=dict)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answers for /flaky, in order

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"


@pytest.fixture
async def receiver(aiohttp_server: Any) -> Receiver:
    app = web.Application()
    state = Receiver(server=None)  # type: ignore[arg-type]  # set below, once started

    def record(name: str) -> None:
        state.calls[name] = state.calls.get(name, 0) + 1

    async def hook(request: web.Request) -> web.Response:
        record("hook")
        state.received.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    async def flaky(request: web.Request) -> web.Response:
        record("flaky")
        return web.Response(status=state.statuses.pop(0), text="overloaded")

    async def status(request: web.Request) -> web.Response:
        record("status")
        code = int(request.match_info["code"])
        return web.Response(status=code, text="no", headers={"Retry-After": "7"})

    async def redirect(request: web.Request) -> web.Response:
        record("redirect")
        raise web.HTTPFound("/target")

    async def target(request: web.Request) -> web.Response:
        record("target")
        return web.Response(status=200)

    async def slow(request: web.Request) -> web.Response:
        record("slow")
        await asyncio.sleep(2)
        return web.Response(status=200)

    app.router.add_post("/hook", hook)
    app.router.add_post("/flaky", flaky)
    app.router.add_post("/status/{code}", status)
    app.router.add_post("/redirect", redirect)
    app.router.add_route("*", "/target", target)
    app.router.add_post("/slow", slow)
    state.server = await aiohttp_server(app, host="127.0.0.1")
    return state


@pytest.fixture
async def connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every address the client tries to connect to; only 127.0.0.1 is let through."""
    loop = asyncio.get_running_loop()
    attempts: list[Any] = []
    real_connect = loop.sock_connect

    async def guarded(sock: socket.socket, address: Any) -> None:
        attempts.append(address)
        if address[0] != "127.0.0.1":
            raise ConnectionRefusedError(f"test guard: no traffic to {address[0]}")
        await real_connect(sock, address)

    monkeypatch.setattr(loop, "sock_connect", guarded)
    return attempts


@pytest.fixture
async def session(connections: list[Any]) -> AsyncIterator[aiohttp.ClientSession]:
    async with make_session() as client:
        yield client


def subscription(url: str, *, allow_private: bool = True, timeout: float = 5) -> Subscription:
    return Subscription(name="t", url=url, events=("*",), secret=SECRET,
                        timeout_seconds=timeout, allow_private=allow_private)


async def send(session: aiohttp.ClientSession, sub: Subscription,
               delivery_id: str = "d-1") -> DeliveryResult:
    return await deliver(session, sub, "created", delivery_id, PAYLOAD, NOW)


async def test_webhooks__signed_delivery_verifies(session: aiohttp.ClientSession,
                                                  receiver: Receiver) -> None:
    result = await send(session, subscription(receiver.url("/hook")), "delivery-42")
    assert result == DeliveryResult(ok=True, permanent=False, status=204)
    [(headers, body)] = receiver.received
    assert body == canonical_json(PAYLOAD)
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "intake-gateway"
    assert headers["X-Intake-Event"] == "created"
    assert headers["X-Intake-Delivery"] == "delivery-42"
    assert headers["X-Intake-Timestamp"] == str(NOW)
    timestamp, signature = headers["X-Intake-Timestamp"], headers["X-Intake-Signature"]
    assert signature.startswith("v1=")
    assert verify(SECRET, timestamp, body, signature, now=NOW + 10)
    assert not verify(SECRET, timestamp, body + b" ", signature, now=NOW)  # tampered body
    assert not verify("other-secret", timestamp, body, signature, now=NOW)
    assert not verify(SECRET, str(NOW + 1), body, signature, now=NOW)  # tampered timestamp
    assert not verify(SECRET, timestamp, body, signature, now=NOW + 301)  # stale
    assert verify(SECRET, timestamp, body, f"v1=00, {signature}", now=NOW)  # rotation


async def test_webhooks__server_error_then_success(session: aiohttp.ClientSession,
                                                   receiver: Receiver) -> None:
    receiver.statuses[:] = [500, 200]
    sub = subscription(receiver.url("/flaky"))
    first = await send(session, sub)
    assert (first.ok, first.permanent, first.status) == (False, False, 500)
    assert first.error is not None and "overloaded" in first.error
    second = await send(session, sub)
    assert (second.ok, second.status) == (True, 200)


async def test_webhooks__not_found_is_permanent(session: aiohttp.ClientSession,
                                                receiver: Receiver) -> None:
    result = await send(session, subscription(receiver.url("/status/404")))
    assert (result.ok, result.permanent, result.status) == (False, True, 404)


@pytest.mark.parametrize("code", [408, 429, 503])
async def test_webhooks__retryable_status_with_retry_after(
        session: aiohttp.ClientSession, receiver: Receiver, code: int) -> None:
    result = await send(session, subscription(receiver.url(f"/status/{code}")))
    assert (result.ok, result.permanent, result.status) == (False, False, code)
    assert result.retry_after == 7.0


async def test_webhooks__redirect_is_not_followed(session: aiohttp.ClientSession,
                                                  receiver: Receiver) -> None:
    result = await send(session, subscription(receiver.url("/redirect")))
    assert (result.ok, result.permanent, result.status) == (False, True, 302)
    assert receiver.calls == {"redirect": 1}  # /target never reached


async def test_webhooks__loopback_refused_unless_allowed(
        session: aiohttp.ClientSession, receiver: Receiver, connections: list[Any]) -> None:
    refused = await send(session, subscription(receiver.url("/hook"), allow_private=False))
    assert (refused.ok, refused.permanent, refused.status) == (False, True, None)
    assert refused.error is not None and "loopback" in refused.error
    assert connections == [] and receiver.calls == {}
    allowed = await send(session, subscription(receiver.url("/hook"), allow_private=True))
    assert allowed.ok and receiver.calls == {"hook": 1}


@pytest.mark.parametrize("url", [
    "http://[::1]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/",
    "http://[::ffff:10.0.0.1]/",
    "http://[::ffff:127.0.0.1]:9/",
    "http://0.0.0.0:9/",
    "http://224.0.0.1/",
])
async def test_webhooks__private_targets_refused_before_connecting(
        session: aiohttp.ClientSession, connections: list[Any], url: str) -> None:
    result = await send(session, subscription(url, allow_private=False))
    assert (result.ok, result.permanent) == (False, True)
    assert result.error is not None and result.error.startswith("refused target")
    assert connections == []


async def test_webhooks__hostname_resolving_to_loopback_refused(
        session: aiohttp.ClientSession, receiver: Receiver, connections: list[Any]) -> None:
    url = f"http://localhost:{receiver.server.port}/hook"
    result = await send(session, subscription(url, allow_private=False))
    assert (result.ok, result.permanent) == (False, True)
    assert connections == [] and receiver.calls == {}


async def test_webhooks__connects_to_the_checked_address(
        session: aiohttp.ClientSession, receiver: Receiver, connections: list[Any],
        fake_dns: list[str]) -> None:
    url = f"http://hooks.example:{receiver.server.port}/hook"
    result = await send(session, subscription(url, allow_private=True))
    assert result.ok, result.error
    assert fake_dns == ["hooks.example"]  # resolved once, by deliver
    assert [address[0] for address in connections] == ["127.0.0.1"]
    [(headers, _)] = receiver.received
    assert headers["Host"] == f"hooks.example:{receiver.server.port}"


@pytest.fixture
async def fake_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every name resolves to 127.0.0.1, once: a second lookup (a chance to rebind)
    fails, so a delivery that re-resolved would fail."""
    loop = asyncio.get_running_loop()
    lookups: list[str] = []

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        lookups.append(host)
        if len(lookups) > 1:
            raise socket.gaierror(socket.EAI_NONAME, "rebinding attempt")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return lookups


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for hooks.example (and no other name)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-subj", "/CN=hooks.example", "-addext",
                    "subjectAltName=DNS:hooks.example", "-days", "1"],
                   check=True, capture_output=True, timeout=30)
    return cert, key


async def test_webhooks__tls_checks_the_name_on_the_pinned_address(
        aiohttp_server: Any, connections: list[Any], fake_dns: list[str],
        certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    seen: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        seen.append(request.headers["Host"])
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = await aiohttp_server(app, host="127.0.0.1", ssl=server_context)
    client_context = ssl.create_default_context(cafile=str(cert))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_context)) as tls:
        good = await send(tls, subscription(f"https://hooks.example:{server.port}/hook"))
        assert good.ok, good.error
        assert seen == [f"hooks.example:{server.port}"]
        fake_dns.clear()
        wrong = await send(tls, subscription(f"https://other.example:{server.port}/hook"))
    assert (wrong.ok, wrong.permanent) == (False, False)  # a certificate can be fixed
    assert wrong.error is not None and "other.example" in wrong.error
    assert seen == [f"hooks.example:{server.port}"]
    assert fake_dns == ["other.example"]


async def test_webhooks__timeout_is_retryable(session: aiohttp.ClientSession,
                                              receiver: Receiver) -> None:
    started = time.monotonic()
    result = await send(session, subscription(receiver.url("/slow"), timeout=0.5))
    assert (result.ok, result.permanent, result.status) == (False, False, None)
    assert result.error is not None and "timed out" in result.error
    assert time.monotonic() - started < 1.5


async def test_webhooks__connection_refused_is_retryable(
        session: aiohttp.ClientSession, unused_tcp_port: int) -> None:
    result = await send(session, subscription(f"http://127.0.0.1:{unused_tcp_port}/"))
    assert (result.ok, result.permanent, result.status) == (False, False, None)


@pytest.mark.parametrize("url", ["ftp://example.com/", "http:///path", "not a url",
                                 "http://example.com:99999/"])
async def test_webhooks__invalid_url_is_permanent(
        session: aiohttp.ClientSession, connections: list[Any], url: str) -> None:
    result = await send(session, subscription(url))
    assert (result.ok, result.permanent) == (False, True)
    assert result.error is not None and result.error.startswith("invalid URL")
    assert connections == []


@pytest.mark.parametrize(("address", "refused"), [
    ("8.8.8.8", False), ("2606:4700:4700::1111", False), ("::ffff:8.8.8.8", False),
    ("127.0.0.1", True), ("::1", True), ("10.1.2.3", True), ("172.16.0.1", True),
    ("192.168.1.1", True), ("100.64.0.1", True), ("169.254.169.254", True),
    ("fe80::1", True), ("fc00::1", True), ("fec0::1", True), ("ff02::1", True),
    ("::ffff:192.168.0.1", True), ("2002:7f00:1::", True), ("0.0.0.0", True), ("::", True),
    ("240.0.0.1", True),
])
def test_webhooks__refusal_rule(address: str, refused: bool) -> None:
    assert (refusal(address) is not None) == refused


def test_webhooks__parse_subscriptions() -> None:
    [sub] = parse_subscriptions([{"name": "pager", "url": "https://hooks.example.com/in",
                                  "events": ["escalated", "created"], "secret_env": "PAGER_KEY",
                                  "timeout": 3}], env={"PAGER_KEY": "zq-secret"})
    assert sub == Subscription(name="pager", url="https://hooks.example.com/in",
                               events=("escalated", "created"), secret="zq-secret",
                               timeout_seconds=3.0, allow_private=False)
    assert "zq-secret" not in repr(sub)  # the secret stays out of logs
    assert sub.wants("created") and not sub.wants("replied")


def test_webhooks__parse_subscriptions_names_each_bad_key() -> None:
    good = {"name": "a", "url": "https://a.example/", "events": ["*"], "secret": "x"}
    with pytest.raises(ValueError) as caught:
        parse_subscriptions([
            good,
            {**good, "name": "b", "url": "ftp://b.example/"},
            {**good, "name": "c", "events": ["created", "craeted"], "colour": "red"},
            {"name": "d", "url": "https://d.example/", "events": []},
            {**good, "name": "e", "secret_env": "E_KEY"},
            {**good, "name": "f", "secret": None, "secret_env": "MISSING",
             "timeout_seconds": 0, "allow_private": "yes"},
            {**good, "name": "a"},
            "not a table",  # type: ignore[list-item]  # TOML can hold anything here
        ], env={})
    message = str(caught.value)
    for expected in ["webhook[1].url: must be http or https",
                     "webhook[2].events: unknown event 'craeted'",
                     "webhook[2].colour: unknown key",
                     "webhook[3].events: required",
                     "webhook[3].secret: required",
                     "webhook[4].secret: give secret or secret_env, not both",
                     "webhook[5].secret: give secret or secret_env, not both",
                     "webhook[5].timeout_seconds: must be a number",
                     "webhook[5].allow_private: must be true or false",
                     "webhook[6].name: duplicate name 'a'",
                     "webhook[7]: must be a table"]:
        assert expected in message
    assert "webhook[0]" not in message
    with pytest.raises(ValueError, match=r"webhook\[0\]\.secret_env: environment variable"):
        parse_subscriptions([{"name": "g", "url": "http://g.example/", "events": ["*"],
                              "secret_env": "G_KEY"}], env={})
