"""Logs: `[log]` level, format and access; one structured line per accepted,
refused, routed and acknowledged item, with no content, subject or address;
`--log-level` checked."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import smtplib
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway import cli
from gateway.app import Gateway, start, stop
from gateway.config import InvalidConfigError, build_config
from gateway.logs import JsonFormatter, configure, item, parse_level, without_addresses
from tests.e2e.test_outbound import Relay
from tests.helpers import make_config, wait_for

SECRETS = ("carol.private", "Leaking pipe", "water everywhere", "Carol Private")
MAIL = (b"From: Carol Private <carol.private@example.com>\r\nTo: support@localhost\r\n"
        b"Subject: Leaking pipe\r\nMessage-ID: <leak1@example.com>\r\n\r\n"
        b"There is water everywhere.\r\n")


def item_lines(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name == "intake.items" and getattr(r, "event", None) == event]


def shown(caplog: pytest.LogCaptureFixture) -> str:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(r) for r in caplog.records if r.levelno >= logging.INFO)


def send_mail(port: int) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo()
        client.mail("carol.private@example.com")
        client.rcpt("support@localhost")
        code, reply = client.data(MAIL)
    assert code == 250
    return reply.split()[-1].decode()


def refused_recipient(port: int) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo()
        client.mail("carol.private@example.com")
        code, _ = client.rcpt("nobody@localhost")
    return code


@pytest.fixture
async def logged_gateway(db_url: str, relay: Relay,
                         caplog: pytest.LogCaptureFixture) -> AsyncIterator[Gateway]:
    caplog.set_level(logging.INFO)
    # As `intake` sets it (gateway.logs.configure): aiosmtpd's own lines, which
    # quote every command, only at WARNING.
    smtp_log = logging.getLogger("mail.log")
    level = smtp_log.level
    smtp_log.setLevel(logging.WARNING)
    config = make_config(db_url, log={"access": True}, outbound={
        "relay": f"127.0.0.1:{relay.port}", "backoff_initial_seconds": 0.05,
        "backoff_max_seconds": 0.2})
    gateway = await start(config)
    yield gateway
    await stop(gateway, grace=3)
    smtp_log.setLevel(level)


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    relay = Relay()
    await relay.up()
    yield relay
    await relay.down()


async def test_logs__one_line_per_item_without_content(
        logged_gateway: Gateway, relay: Relay, caplog: pytest.LogCaptureFixture) -> None:
    reference = await asyncio.to_thread(send_mail, logged_gateway.smtp_port)
    assert await asyncio.to_thread(refused_recipient, logged_gateway.smtp_port) == 550

    async def routed() -> list[logging.LogRecord]:
        return item_lines(caplog, "routed")

    [line] = await wait_for(routed)
    assert (line.reference, line.channel, line.queue, line.outcome) == (  # type: ignore[attr-defined]
        reference, "smtp", "general", "new new")
    [accepted] = item_lines(caplog, "accepted")
    assert (accepted.reference, accepted.channel, accepted.outcome) == (  # type: ignore[attr-defined]
        reference, "smtp", "250")
    [refused] = item_lines(caplog, "refused")
    assert (refused.channel, refused.outcome) == ("smtp", "550 5.1.1")  # type: ignore[attr-defined]

    async def acknowledged() -> list[logging.LogRecord]:
        return item_lines(caplog, "acknowledged")

    [ack] = await wait_for(acknowledged)
    assert (ack.reference, ack.queue, ack.outcome) == (  # type: ignore[attr-defined]
        reference, "general", "sent")
    text = shown(caplog)
    for secret in SECRETS:
        assert secret not in text, (secret, text)
    assert "nobody@localhost" not in text


async def test_logs__api_lines_and_access_log_by_route(
        logged_gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    async with aiohttp.ClientSession(base_url=logged_gateway.http_url) as http:
        async with http.post("/v1/requests", json={"subject": "no requester"}) as resp:
            refused_status = resp.status
        async with http.get("/v1/status/secret-token-value?x=carol.private") as resp:
            assert resp.status == 404
    assert refused_status in (401, 422)
    [refused] = item_lines(caplog, "refused")
    assert (refused.channel, refused.outcome) == ("api", str(refused_status))  # type: ignore[attr-defined]
    access = [r for r in caplog.records if r.name == "intake.access"]
    routes = [r.route for r in access]  # type: ignore[attr-defined]
    assert "/v1/requests" in routes and "/v1/status/{token}" in routes
    assert all(isinstance(r.status, int) for r in access)  # type: ignore[attr-defined]
    text = shown(caplog)
    assert "secret-token-value" not in text and "carol.private" not in text


async def test_logs__no_access_log_by_default(
        db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    gateway = await start(make_config(db_url))
    try:
        async with aiohttp.ClientSession(base_url=gateway.http_url) as http:
            async with http.get("/healthz") as resp:
                assert resp.status == 200
    finally:
        await stop(gateway, grace=3)
    assert not [r for r in caplog.records if r.name == "intake.access"]


def test_logs__json_lines_carry_the_fields() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure("info", "json", stream)
        item("routed", reference="AB12-CD34", channel="api", queue="billing", outcome="new")
        logging.getLogger("intake.test").debug("not shown at info")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    [line] = stream.getvalue().splitlines()
    record = json.loads(line)
    assert {k: record[k] for k in ("level", "logger", "event", "reference", "channel",
                                   "queue", "outcome")} == {
        "level": "info", "logger": "intake.items", "event": "routed",
        "reference": "AB12-CD34", "channel": "api", "queue": "billing", "outcome": "new"}
    assert record["time"].endswith("+00:00")


def test_logs__formatter_keeps_exceptions() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, "f", 1, "failed", None,
                                   exc_info=sys.exc_info())
    out = json.loads(JsonFormatter().format(record))
    assert out["message"] == "failed" and "RuntimeError: boom" in out["exception"]


def test_logs__levels_and_addresses() -> None:
    assert parse_level("DEBUG") == logging.DEBUG and parse_level("warning") == logging.WARNING
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        parse_level("loud")
    assert without_addresses("550 5.1.1 <bob@example.com>: no such user") == \
        "550 5.1.1 <[address]>: no such user"


def test_logs__section_read_and_checked() -> None:
    config = build_config({"log": {"level": "DEBUG", "format": "json", "access": True}},
                          "t", {})
    assert (config.log.level, config.log.format, config.log.access) == ("debug", "json", True)
    default = build_config({}, "t", {})
    assert (default.log.level, default.log.format, default.log.access) == (
        "info", "text", False)
    with pytest.raises(InvalidConfigError) as info:
        build_config({"log": {"format": "xml"}}, "t", {})
    assert "log.format" in str(info.value)


def test_logs__bogus_log_level_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--log-level", "bogus", "check-config"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "bogus" in err and "debug, info, warning, error, critical" in err
