"""Recipient injection into outbound mail (issue 12, defect 4).

Every address that reaches an envelope must be one parsed, checked addr-spec:
a form's or the API's email field is refused at the edge (422 naming the
field), an email's Reply-To/From gives at most one recipient, stored rows
written before the check never reach the relay re-split, and the relay is
told RCPT TO from the parsed address, never from a header string.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import smtplib
from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.lifecycle import NO_RECIPIENT
from gateway.app import Gateway, start, stop
from gateway.config import Config
from gateway.delivery.mailer import send as send_mail
from gateway.delivery.outbound import agent_reply
from gateway.pipeline.worker import Pipeline
from storage import queries
from storage.inbox import NewItem, accept_many
from storage.models import inbox_items, outbox
from tests.helpers import AppClient, auth, count_rows, make_config, reference_of, wait_for

FORM = {"id": "help", "title": "Help", "min_fill_seconds": 0, "rate_limit_per_minute": 10_000,
        "field": [{"name": "name", "label": "Name"},
                  {"name": "email", "label": "Email", "kind": "email", "required": True},
                  {"name": "other", "label": "Colleague", "kind": "email"},
                  {"name": "message", "label": "Message", "kind": "textarea"}]}
JSON = {"Accept": "application/json"}

# What an attacker types into an email field to reach more people than one, or
# someone else, or to break the header or the envelope.
INJECTIONS = [
    "victim@example.com,all-staff",
    "all-staff,victim@example.com",
    "victim@example.com;all-staff",
    "victim@example.com, all-staff@example.com",
    "Victim <victim@example.com>",
    "<victim@example.com>",
    "x@example.com <victim@example.com>",
    "staff: victim@example.com, all@example.com;",
    '"victim,all"@example.com',
    '"victim@example.com, all@example.com"@example.com',
    "victim@example.com (all@example.com)",
    "victim(all)@example.com",
    "victim@example.com\r\nBcc: all@example.com",
    "victim@example.com\nall@example.com",
    "vic\x00tim@example.com",
    "victim@all@example.com",
    "victim@example.com.",
    "vic tim@example.com",
    "x" * 65 + "@example.com",
    "a@" + ("b" * 63 + ".") * 4 + "com",
    "x" * 64 + "@" + ("b" * 61 + ".") * 3 + "example",
    "victim@[127.0.0.1]",
    "victim@localhost",
    "victim%all.example@example.com",
    "all.example!victim@example.com",
    "@relay.example:victim@example.com",
    "victim\u202e@example.com",
]


@pytest.fixture
def config(db_url: str) -> Config:
    return make_config(db_url, form=[FORM])


# --- the edge: forms and the API ---------------------------------------------------------


@pytest.mark.parametrize("field", ["email", "other"])
async def test_form_email__injection_is_422_naming_the_field(
        app_client: AppClient, engine: AsyncEngine, field: str) -> None:
    for value in INJECTIONS:
        values = {"email": "ann@example.com", "message": "hello", field: value}
        async with app_client.post("/v1/forms/help", data=values, headers=JSON) as resp:
            assert resp.status == 422, (value, await resp.text())
            problem = await resp.json()
        assert [e["pointer"] for e in problem["errors"]] == [f"/{field}"], value
    assert await count_rows(engine, inbox_items) == 0


async def test_form_email__a_good_address_is_kept_as_one_addr_spec(
        app_client: AppClient, engine: AsyncEngine, pipeline: Pipeline,
        admin_token: str) -> None:
    values = {"email": " Ann@Bücher.Example ", "name": "Ann, <all@example.com>",
              "message": "hello"}
    async with app_client.post("/v1/forms/help", data=values, headers=JSON) as resp:
        assert resp.status == 201, await resp.text()
        ref = (await resp.json())["reference"]
    await pipeline.drain()
    async with app_client.get(f"/v1/requests/{ref}", headers=auth(admin_token)) as resp:
        request = await resp.json()
    assert request["requester"]["email"] == "ann@xn--bcher-kva.example"
    [ack] = await _acknowledgements(engine)
    assert [t["address"] for t in ack["to"]] == ["ann@xn--bcher-kva.example"]


async def test_api_requester_email__injection_is_422_naming_the_field(
        app_client: AppClient, engine: AsyncEngine, admin_token: str) -> None:
    for value in INJECTIONS:
        body = {"requester": {"email": value}, "subject": "s", "body": "b"}
        async with app_client.post("/v1/requests", json=body,
                                   headers=auth(admin_token)) as resp:
            assert resp.status == 422, (value, await resp.text())
            problem = await resp.json()
        assert [e["pointer"] for e in problem["errors"]] == ["/requester/email"], value
    assert await count_rows(engine, inbox_items) == 0


# --- stored before the check: processed, never sent re-split --------------------------


async def test_stored_items__a_bad_address_from_before_the_check_gets_no_acknowledgement(
        engine: AsyncEngine, config: Config) -> None:
    bad = "victim@example.com,all-staff"
    form = {"form_id": "help", "requester_email": bad, "requester_name": None,
            "subject": "s", "body": "b", "custom_fields": {}, "files": []}
    api = {"requester": {"email": bad}, "subject": "s", "body": "b"}
    await accept_many(engine, [NewItem("form", json.dumps(form).encode()),
                               NewItem("api", json.dumps(api).encode())])
    pipe = Pipeline(engine=engine, config=config)
    assert await pipe.drain() == 2  # both become requests: acknowledged means processable
    assert await _acknowledgements(engine) == []
    async with engine.connect() as conn:
        dead = (await conn.execute(select(inbox_items.c.id)
                                   .where(inbox_items.c.state != "done"))).all()
    assert dead == []
    decisions = []
    async with engine.connect() as conn:
        item_ids = (await conn.execute(select(inbox_items.c.id))).scalars().all()
    for item_id in item_ids:
        request = await queries.get_request(engine, await reference_of(engine, item_id))
        assert request is not None
        decisions += [e["data"] for e in request["timeline"] if e["kind"] == "acknowledgement"]
    assert [(d["send"], d["reason"]) for d in decisions] == [(False, NO_RECIPIENT)] * 2


async def test_agent_reply__a_stored_requester_that_is_not_one_address_gets_nothing(
        config: Config) -> None:
    request = {"reference": "ABCD-EFGH", "subject": "s", "messages": [],
               "requester": {"email": "victim@example.com,all-staff", "name": "V"}}
    message = agent_reply(config, request, "hello")
    assert message.to == []
    assert message.flags["undeliverable"]
    good = agent_reply(config, request | {"requester": {"email": "Ann@Example.com",
                                                        "name": "Ann"}}, "hello")
    assert good.to == [{"name": "Ann", "address": "ann@example.com"}]


# --- the envelope: RCPT TO from the parsed address --------------------------------------


class Relay:
    """An SMTP relay on 127.0.0.1 that keeps each envelope and message."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], EmailMessage]] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content,
                                           policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append((list(envelope.rcpt_tos), message))
        return "250 OK"

    async def up(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self, hostname="relay", enable_SMTPUTF8=True), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    relay = Relay()
    await relay.up()
    yield relay
    relay.close()


def _payload(to: list[dict[str, str]]) -> dict[str, Any]:
    return {"message": {"subject": "s", "text": "t", "from_address": "support@localhost",
                        "from_name": "Support", "to": to, "cc": [], "message_id": "m@localhost",
                        "in_reply_to": None, "references": [], "auto_submitted": None}}


async def test_mailer__a_stored_recipient_list_is_refused_not_re_split(relay: Relay) -> None:
    config = make_config("sqlite+aiosqlite:///unused.db",
                         outbound={"relay": f"127.0.0.1:{relay.port}"})
    for bad in ["victim@example.com,all-staff@example.com", "victim@example.com; all@example.com",
                "victim@example.com\r\nRCPT TO:<all@example.com>",
                "Victim <victim@example.com>", "staff: a@example.com, b@example.com;",
                '"a,b"@example.com', "victim@[127.0.0.1]"]:
        result = await send_mail(config, _payload([{"name": "", "address": bad}]))
        assert not result.ok and result.permanent, bad
    assert relay.received == []


async def test_mailer__rcpt_to_is_the_parsed_address_whatever_the_display_name(
        relay: Relay) -> None:
    config = make_config("sqlite+aiosqlite:///unused.db",
                         outbound={"relay": f"127.0.0.1:{relay.port}"})
    names = ["a@example.com, b@example.com", 'x" <all@example.com>, "y', "staff: all@example.com;",
             "=?utf-8?q?all=40example.com=2C?=", "Ann\r\nBcc: all@example.com", "Zoë, Ann"]
    for name in names:
        result = await send_mail(config, _payload([{"name": name, "address": "ann@example.com"}]))
        assert result.ok, (name, result.error)
    assert len(relay.received) == len(names)
    for rcpt_tos, message in relay.received:
        assert rcpt_tos == ["ann@example.com"]
        assert [a.addr_spec for a in message["To"].addresses] == ["ann@example.com"]
        assert message["Bcc"] is None and message["Cc"] is None
    idn = await send_mail(config, _payload([{"name": "", "address": "ann@bücher.example"}]))
    assert idn.ok
    assert relay.received[-1][0] == ["ann@xn--bcher-kva.example"]


# --- incoming mail: at most one recipient, a valid one ------------------------------------


@pytest.fixture
async def gateway_with_relay(db_url: str, relay: Relay) -> AsyncIterator[Gateway]:
    config = make_config(db_url, outbound={
        "relay": f"127.0.0.1:{relay.port}", "backoff_initial_seconds": 0.05,
        "backoff_max_seconds": 0.2})
    gateway = await start(config)
    yield gateway
    await stop(gateway, grace=3)


def _mail(gateway: Gateway, *, sender: str, reply_to: str | None, message_id: str) -> None:
    data = (f"From: {sender}\r\nTo: support@localhost\r\nSubject: help\r\n"
            + (f"Reply-To: {reply_to}\r\n" if reply_to is not None else "")
            + f"Message-ID: <{message_id}>\r\n\r\nPlease help.\r\n").encode()
    with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=10) as client:
        client.sendmail("bounce@example.net", ["support@localhost"], data)


# (From, Reply-To, the one recipient the acknowledgement may have; None: no acknowledgement)
MAIL_CASES = [
    ("a1@example.com", "victim@example.com, all@example.com", "victim@example.com"),
    ("a2@example.com", "staff: v2@example.com, all@example.com;", "v2@example.com"),
    ("a3@example.com", '"x@example.com, all@example.com" <v3@example.com>', "v3@example.com"),
    ("a4@example.com", "<v4@example.com>, <all@example.com>", "v4@example.com"),
    ("a5@example.com", "victim@[127.0.0.1]", "a5@example.com"),        # the From instead
    ("a6@example.com", '"v,all"@example.com', "a6@example.com"),
    ("a7@example.com", "v7%all.example@example.com", "a7@example.com"),
    ("a8@example.com", "v8@localhost", "a8@example.com"),
    ('"a9@example.com, all@example.com" <a9@example.com>', None, "a9@example.com"),
    ("<a10@[10.0.0.1]>", None, None),                                  # nobody to answer
    ("a11@example.com", "support@localhost", None),                   # not ourselves
    ("a12@example.com", "billing@localhost, v12@example.com", None),
]


async def test_email__the_acknowledgement_has_one_valid_recipient(
        gateway_with_relay: Gateway, relay: Relay, engine: AsyncEngine) -> None:
    for n, (sender, reply_to, _) in enumerate(MAIL_CASES):
        await asyncio.to_thread(_mail, gateway_with_relay, sender=sender, reply_to=reply_to,
                                message_id=f"inj{n}@example.com")
    expected = {f"<inj{n}@example.com>": want for n, (_, _, want) in enumerate(MAIL_CASES)}
    answered = sum(1 for want in expected.values() if want)

    async def all_answered() -> bool:
        return len(relay.received) >= answered

    await wait_for(all_answered, timeout=20)

    async def all_processed() -> bool:
        return await count_rows(engine, inbox_items, inbox_items.c.state == "done") == len(
            MAIL_CASES)

    from parsers.addresses import parse_address

    await wait_for(all_processed, timeout=20)
    await asyncio.sleep(0.5)  # nothing more comes
    got = {str(message["In-Reply-To"]): rcpt_tos for rcpt_tos, message in relay.received}
    assert got == {key: [want] for key, want in expected.items() if want}
    for rcpt_tos, message in relay.received:
        assert [a.addr_spec for a in message["To"].addresses] == rcpt_tos
        parse_address(rcpt_tos[0])  # one valid addr-spec
    assert [a.addr_spec for _, m in relay.received for a in m["From"].addresses] == [
        "support@localhost"] * answered


async def _acknowledgements(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        payloads = (await conn.execute(select(outbox.c.payload)
                                       .where(outbox.c.kind == "email"))).scalars().all()
    return [p["message"] for p in payloads]


def test_parse_address__is_what_the_edges_use() -> None:
    from parsers.addresses import AddressError, parse_address

    for value in INJECTIONS:
        with pytest.raises(AddressError):
            parse_address(value)
