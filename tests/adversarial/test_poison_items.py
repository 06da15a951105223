"""Threat: an input is acknowledged, then can never become a request, and the
pipeline stalls behind it.

Values longer than their columns, NUL and lone surrogates, NaN in custom
fields used to pass the edges (250/201), then fail every store: the item was
dead-lettered after ~9 s of inline retries, reprocessing could not fix it,
and every item behind it waited. Now what is acknowledged is fitted to its
columns with a recorded defect (or refused before the acknowledgement), and a
bad item is isolated at once without holding up its batch.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.lifecycle import Event, EventKind, ItemState
from gateway.app import Gateway
from gateway.config import Config
from gateway.pipeline import worker as worker_module
from gateway.pipeline.stages import finish
from gateway.pipeline.worker import Pipeline
from routing.api import warm_up
from storage import queries
from storage.engine import json_text, utcnow
from storage.fitting import Fitter, fit_fields, fit_message, fit_request, limit
from storage.inbox import NewItem, accept_many
from storage.models import attachments, inbox_items, messages, outbox, requests
from storage.processing import ClaimedItem, dead_items, fail_item
from storage.records import NewAttachment, NewMessage, NewRequest, ThreadHints
from storage.rows import fit_row, message_row, request_row
from storage.storable import needs_change, stored_as_is
from storage.tokens import create_token
from tests.adversarial.hostile import (
    SmtpSession,
    api_body,
    http_raw,
    item_outcome,
    processed,
)
from tests.e2e.test_cli import intake
from tests.helpers import count_rows, item_of, make_config, reference_of, wait_for
from tests.process import write_config

LONG_FIELD = 5000
FORM_FIELDS = [
    {"name": "email", "label": "Email", "kind": "email", "required": True},
    {"name": "name", "label": "Name", "max_length": LONG_FIELD},
    {"name": "subject", "label": "Subject", "max_length": LONG_FIELD},
    {"name": "message", "label": "Message", "kind": "textarea"},
    {"name": "site", "label": "Site", "max_length": LONG_FIELD},
    {"name": "files", "label": "Files", "kind": "file"},
]
FORM = {"id": "support", "title": "Contact support", "min_fill_seconds": 0,
        "rate_limit_per_minute": 1_000_000, "file_types": ["*/*"], "field": FORM_FIELDS}


@pytest.fixture
def config(db_url: str) -> Config:
    return make_config(db_url, form=[FORM], http={
        "listen": "127.0.0.1:0", "max_body_bytes": 100_000, "shutdown_seconds": 3.0})


# --- the hostile-field table --------------------------------------------------------

def _fold(value: bytes) -> bytes:
    """A header value folded at its spaces (RFC 5322 2.2.3), so lines stay short."""
    lines, line = [], b""
    for word in value.split(b" "):
        if line and len(line) + len(word) > 900:
            lines.append(line)
            line = b""
        line = line + b" " + word if line else word
    return b"\r\n ".join([*lines, line])


def _mail(*headers: bytes, body: bytes = b"Body.\r\n") -> bytes:
    base = {b"From": b"Ann <ann@example.com>", b"To": b"support@localhost",
            b"Subject": b"Hostile", b"Message-ID": b"<m@example.com>"}
    for header in headers:
        name, _, value = header.partition(b": ")
        base[name] = value
    return (b"".join(k + b": " + _fold(v) + b"\r\n" for k, v in base.items()) + b"\r\n"
            + body)


def _attached(part_headers: bytes, content: bytes = b"data") -> bytes:
    return _mail(b"Content-Type: multipart/mixed; boundary=b",
                 body=b"--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--b\r\n"
                 + part_headers + b"\r\n\r\n" + content + b"\r\n--b--\r\n")


def _b64(raw: bytes) -> bytes:
    return base64.b64encode(raw)


LONE = b"\xed\xa0\x80"  # a UTF-8-encoded lone surrogate: not UTF-8 at all
EMAIL_CASES: dict[str, bytes] = {
    "display name over 200": _mail(b"From: " + b"N" * 300 + b" <ann@example.com>"),
    "display name with NUL": _mail(b"From: A\x00nn <ann@example.com>"),
    "display name with a lone surrogate": _mail(b"From: =?utf-8?b?" + _b64(b"A" + LONE)
                                                + b"?= <ann@example.com>"),
    "display name not UTF-8": _mail(b"From: J\xf6rg \xff <ann@example.com>"),
    "sender address over 320": _mail(b"From: " + b"a" * 400 + b"@example.com"),
    "sender address with NUL": _mail(b"From: <a\x00nn@example.com>"),
    "sender address not UTF-8": _mail(b"From: <j\xf6rg@example.com>"),
    "recipient address over its limit": _mail(b"To: " + b"b" * 2000 + b"@example.com"),
    "subject with NUL": _mail(b"Subject: a\x00b"),
    "subject not UTF-8": _mail(b"Subject: a\xff\xfeb"),
    "subject with a lone surrogate": _mail(b"Subject: =?utf-8?b?" + _b64(b"x" + LONE) + b"?="),
    "subject over 998 (folded)": _mail(b"Subject: " + b"word " * 4000),
    "Message-ID over 998": _mail(b"Message-ID: <" + b"m" * 1500 + b"@example.com>"),
    "Message-ID with NUL": _mail(b"Message-ID: <a\x00b@example.com>"),
    "Message-ID not UTF-8": _mail(b"Message-ID: <a\xffb@example.com>"),
    "In-Reply-To over 998": _mail(b"In-Reply-To: <" + b"r" * 1500 + b"@example.com>"),
    "In-Reply-To with NUL": _mail(b"In-Reply-To: <r\x00@example.com>"),
    "References with NUL, 8-bit and over 998": _mail(
        b"References: <a\x00@x> <b\xff@x> <" + b"c" * 1500 + b"@x>"),
    "body with NUL and a lone surrogate": _mail(
        b"Content-Type: text/plain; charset=utf-8", body=b"a\x00b " + LONE + b"\r\n"),
    "HTML with NUL": _mail(b"Content-Type: text/html; charset=utf-8",
                           body=b"<p>a\x00b</p>\r\n"),
    "file name over 500": _attached(
        b'Content-Type: application/pdf\r\nContent-Disposition: attachment; filename="'
        + b"f" * 700 + b'.pdf"'),
    "file name with NUL and 8-bit": _attached(
        b'Content-Type: application/pdf\r\nContent-Disposition: attachment; '
        b'filename="a\x00b\xff.pdf"'),
    "file name with a lone surrogate (RFC 2231)": _attached(
        b"Content-Type: application/pdf\r\nContent-Disposition: attachment; "
        b"filename*=utf-8''a%ED%A0%80.pdf"),
    "content type over 200": _attached(
        b"Content-Type: application/" + b"t" * 300 + b"\r\nContent-Disposition: attachment"),
    "Content-ID over 500": _attached(
        b"Content-Type: image/png\r\nContent-ID: <" + b"c" * 700 + b">"),
    "Content-ID with NUL": _attached(b"Content-Type: image/png\r\nContent-ID: <c\x00@x>"),
    "everything at once": _attached(
        b"Content-Type: application/" + b"t" * 300 + b"; name=\"" + b"n\x00" * 400 + b"\""
        + b"\r\nContent-ID: <" + b"c\xff" * 400 + b">"),
}


async def _send_mail(port: int, raw: bytes) -> str:
    """The DATA reply for `raw`, sent as it is (smtplib would not)."""
    session = await SmtpSession.open(port)
    try:
        await session.command(b"EHLO client.example")
        replies = await session.send(b"<ann@example.com>", b"<support@localhost>", raw)
    finally:
        await session.close()
    return replies[-1]


async def _became_request(engine: AsyncEngine, item_id: int) -> dict[str, Any]:
    """Wait for the item to be processed; its request (fitted values, defects)."""
    await wait_for(lambda: _settled(engine, item_id))
    state, error, made = await item_outcome(engine, item_id)
    assert state == ItemState.DONE and made, (state, error)
    found = await queries.get_request(engine, await reference_of(engine, item_id))
    assert found is not None
    return found


async def _settled(engine: AsyncEngine, item_id: int) -> bool:
    state, _, _ = await item_outcome(engine, item_id)
    return state in (ItemState.DONE, ItemState.DEAD)


def _fits_smtp(raw: bytes) -> bool:
    """RFC 5321 4.5.3.1.6: 1000 octets a line; longer cannot come over SMTP."""
    return all(len(line) <= 998 for line in raw.split(b"\r\n"))


@pytest.mark.parametrize("case", EMAIL_CASES, ids=list(EMAIL_CASES))
async def test_pipeline__hostile_email_field_becomes_request(
        gateway: Gateway, engine: AsyncEngine, case: str) -> None:
    """Over SMTP when its lines fit; otherwise as stored by another way in (a
    token longer than a line): the pipeline must make a request of it all the same."""
    raw = EMAIL_CASES[case]
    if _fits_smtp(raw):
        reply = await _send_mail(gateway.smtp_port, raw)
        assert reply.startswith("250 2.0.0 Accepted as"), reply
        item_id = await item_of(engine, reply.rsplit(" ", 1)[-1])
    else:
        [item_id] = await accept_many(engine, [NewItem("smtp", raw, {
            "rcpt_tos": ["support@localhost"]})])
        gateway.pipeline.wake()
    assert item_id is not None
    found = await _became_request(engine, item_id)
    assert found["messages"], found
    requester = found["requester"]
    assert len(requester["name"] or "") <= 200 and len(requester["email"] or "") <= 320


# (what was posted, the pointer a 4xx names; None: accepted and fitted; ANY: either
# refused before the acknowledgement or accepted, whichever the edge decides)
ANY = "(either)"
API_CASES: dict[str, tuple[bytes, str | None]] = {
    "NaN in a custom field": (api_body(score=float("nan")), "/custom_fields/score"),
    "Infinity in a custom field": (api_body(score=float("inf")), "/custom_fields/score"),
    "-Infinity in a custom field": (api_body(score=float("-inf")), "/custom_fields/score"),
    "a number past float range": (api_body().replace(b'"custom_fields": {}',
                                                     b'"custom_fields": {"n": 1e999}'),
                                   "/custom_fields/n"),
    "lone surrogate in the subject": (api_body("a\ud800b"), "/subject"),
    "lone surrogate in the body": (json.dumps({
        "requester": {"email": "a@example.com"}, "subject": "s",
        "body": "\udfff"}).encode(), "/body"),
    "lone surrogate in the name": (json.dumps({
        "requester": {"email": "a@example.com", "name": "\udc80"}, "subject": "s",
        "body": "b"}).encode(), "/requester/name"),
    "lone surrogate in a custom value": (api_body(site="\ud83d"), "/custom_fields/site"),
    "lone surrogate in a custom key": (json.dumps({
        "requester": {"email": "a@example.com"}, "subject": "s", "body": "b",
        "custom_fields": {"k\udc00": 1}}).encode(), "/custom_fields/k\udc00"),
    "NUL in a custom value": (api_body(site="a\x00b"), "/custom_fields/site"),
    "name over 200": (json.dumps({"requester": {"email": "a@example.com", "name": "n" * 201},
                                  "subject": "s", "body": "b"}).encode(), "/requester/name"),
    "JSON nested 40,000 deep": (b"[" * 40_000 + b"]" * 40_000, ""),
    "JSON nested 40,000 deep in a custom field": (
        api_body().replace(b'"custom_fields": {}',
                           b'"custom_fields": {"x": ' + b"[" * 40_000 + b"]" * 40_000 + b"}"),
        ""),
    "a custom key of 10,000 characters": (api_body(**{"k" * 10_000: "v"}), None),
    "a huge integer": (api_body().replace(b'"custom_fields": {}',
                                          b'"custom_fields": {"n": ' + b"9" * 4000 + b"}"),
                       None),
    "a surrogate pair (a real character)": (api_body("\ud83d\ude00 smile"), None),
    "an address of 320 characters": (json.dumps({
        "requester": {"email": "a" * 64 + "@" + ".".join(["d" * 63] * 4)}, "subject": "s",
        "body": "b"}).encode(), ANY),
}


@pytest.mark.parametrize("case", API_CASES, ids=list(API_CASES))
async def test_api__hostile_field_refused_or_becomes_request(
        gateway: Gateway, engine: AsyncEngine, case: str) -> None:
    body, pointer = API_CASES[case]
    _, token = await create_token(engine, name="api", role="intake", queues=[])
    answer = await http_raw(gateway.http_port, "POST", "/v1/requests", body, {
        "Authorization": f"Bearer {token}".encode(), "Content-Type": b"application/json"})
    assert answer.status < 500, (answer.status, answer.body[:300])
    if pointer is not None and (pointer != ANY or answer.status != 201):
        assert answer.status in (400, 422), (answer.status, answer.body[:300])
        if pointer != ANY:
            assert [e["pointer"] for e in answer.json().get("errors", [])] == [pointer]
        assert await count_rows(engine, inbox_items) == 0  # refused: nothing stored
        return
    assert answer.status == 201, (answer.status, answer.body[:300])
    item_id = await item_of(engine, answer.json()["reference"])
    assert item_id is not None
    await _became_request(engine, item_id)


def _multipart(fields: dict[str, bytes], files: list[tuple[bytes, bytes]]) -> bytes:
    parts = [b'--B\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n'
             + value + b"\r\n" for name, value in fields.items()]
    parts += [b'--B\r\nContent-Disposition: form-data; name="files"; filename="' + filename
              + b'"\r\nContent-Type: ' + content_type + b"\r\n\r\ncontent\r\n"
              for filename, content_type in files]
    return b"".join(parts) + b"--B--\r\n"


FIELDS = {"email": b"ann@example.com", "subject": b"Help", "message": b"Please."}
# (fields over the defaults, files; the answers allowed: 201 means it must
# become a request, a 4xx that it was refused before anything was stored)
FORM_CASES: dict[str, tuple[dict[str, bytes], list[tuple[bytes, bytes]], set[int]]] = {
    "name over its column (the form allows 5,000)": ({"name": b"n" * 4000}, [], {201}),
    "subject of 5,000 characters": ({"subject": b"s" * 5000}, [], {201}),
    "custom field of 5,000 characters": ({"site": b"x" * 5000}, [], {201}),
    "NUL in a field": ({"name": b"a\x00b"}, [], {422}),
    "a field not UTF-8": ({"name": b"a\xffb"}, [], {422}),
    "a lone surrogate in a field (CESU-8)": ({"name": b"a" + LONE}, [], {422}),
    "file name over 500": ({}, [(b"f" * 700 + b".pdf", b"application/pdf")], {201, 422}),
    "file name not UTF-8": ({}, [(b"a\xff\xfe.pdf", b"application/pdf")], {201, 400, 422}),
    "file name with a lone surrogate (CESU-8)": (
        {}, [(b"a" + LONE + b".pdf", b"application/pdf")], {201, 400, 422}),
    "file name with NUL": ({}, [(b"a\x00.pdf", b"application/pdf")], {201, 400, 422}),
    "content type over 200": ({}, [(b"a.bin", b"application/" + b"t" * 300)],
                              {201, 415, 422}),
}


@pytest.mark.parametrize("case", FORM_CASES, ids=list(FORM_CASES))
async def test_form__hostile_field_refused_or_becomes_request(
        gateway: Gateway, engine: AsyncEngine, case: str) -> None:
    extra, files, allowed = FORM_CASES[case]
    body = _multipart(FIELDS | extra, files)
    answer = await http_raw(gateway.http_port, "POST", "/v1/forms/support", body, {
        "Content-Type": b"multipart/form-data; boundary=B", "Accept": b"application/json"})
    assert answer.status in allowed, (answer.status, answer.body[:300])
    if answer.status != 201:
        assert await count_rows(engine, inbox_items) == 0
        return
    item_id = await item_of(engine, answer.json()["reference"])
    assert item_id is not None
    found = await _became_request(engine, item_id)
    assert len(found["requester"]["name"] or "") <= 200
    if files:
        async with engine.connect() as conn:
            stored = (await conn.execute(select(attachments.c.filename,
                                                attachments.c.content_type))).all()
        assert len(stored) == 1
        assert len(stored[0].filename or "") <= 500 and len(stored[0].content_type) <= 200


async def test_pipeline__fitted_values_recorded_as_defects(
        engine: AsyncEngine, config: Config) -> None:
    """A cut or replaced value is never silent: the message's flags and the
    timeline say what was changed; a file name keeps its extension."""
    raw = _attached(b'Content-Type: application/pdf\r\nContent-Disposition: attachment; '
                    b'filename="' + b"f" * 700 + b'.pdf"').replace(
        b"From: Ann <ann@example.com>", b"From: " + b"N" * 300 + b" <ann@example.com>")
    [item_id] = await accept_many(engine, [NewItem("smtp", raw, {"rcpt_tos": ["x"]})])
    await Pipeline(engine=engine, config=config).drain()
    found = await queries.get_request(engine, await reference_of(engine, item_id))
    assert found is not None
    assert found["requester"]["name"] == "N" * 200
    defects = found["messages"][0]["flags"]["defects"]
    assert "sender name: cut to 200 characters (was 300)" in defects
    assert "attachment 1 file name: cut to 500 characters (was 704)" in defects
    received = next(e for e in found["timeline"] if e["kind"] == "received")
    assert "sender name: cut to 200 characters (was 300)" in received["data"]["defects"]
    async with engine.connect() as conn:
        filename = (await conn.execute(select(attachments.c.filename))).scalar_one()
    assert filename == "f" * 496 + ".pdf"


async def test_pipeline__acknowledgement_not_sent_to_a_cut_address(
        engine: AsyncEngine, config: Config) -> None:
    """An address that had to be cut names someone else: no mail goes to it."""
    raw = _mail(b"From: " + b"a" * 400 + b"@example.com")
    [item_id] = await accept_many(engine, [NewItem("smtp", raw, {"rcpt_tos": ["x"]})])
    await Pipeline(engine=engine, config=config).drain()
    found = await queries.get_request(engine, await reference_of(engine, item_id))
    assert found is not None
    kinds = [e["kind"] for e in found["timeline"]]
    assert "acknowledgement_queued" not in kinds
    assert await count_rows(engine, outbox, outbox.c.kind == "email") == 0


# --- isolation: a bad item never holds up the others ---------------------------------

NORMAL = _mail(b"Subject: Normal mail", b"Message-ID: <normal@example.com>")


def _poison() -> list[NewItem]:
    """Ten items no fix of the data can build (a stored body that is not JSON),
    and ten that failed every store before values were fitted."""
    broken = [NewItem("api", b"{not json " + str(i).encode(), {}) for i in range(10)]
    hostile = [NewItem("smtp", raw.replace(b"<m@example.com>", f"<p{i}@x>".encode()),
                       {"rcpt_tos": ["support@localhost"]})
               for i, raw in enumerate(list(EMAIL_CASES.values())[:10])]
    return broken + hostile


async def test_pipeline__normal_mail_not_stalled_behind_poison(
        engine: AsyncEngine, db_url: str) -> None:
    """A normal mail behind 20 poison items is processed within 2 s, with the
    default retry settings (0.5 s backoff, 5 attempts)."""
    config = make_config(db_url, pipeline={  # the defaults, not the fast test ones
        "workers": 1, "backoff_initial_seconds": 0.5, "backoff_max_seconds": 30.0,
        "max_attempts": 5, "poll_seconds": 1.0, "linger_seconds": 0.2})
    ids = await accept_many(engine, [*_poison(), NewItem("smtp", NORMAL, {})])
    pipeline = Pipeline(engine=engine, config=config)
    warm_up(pipeline.rules.rules)  # as the gateway does before it takes traffic
    worker = asyncio.create_task(pipeline.run_worker())
    started = time.monotonic()
    try:
        await wait_for(lambda: processed(engine, ids[-1]), timeout=2.0, interval=0.02)
        elapsed = time.monotonic() - started
    finally:
        pipeline.stop()
        await asyncio.wait_for(worker, 30)
    print(f"\n[{engine.dialect.name}] normal mail behind 20 poison items: {elapsed:.2f} s")
    # The ten hostile mails became requests; the ten broken items wait for their
    # next attempt (not dead yet, not retried with a sleep in the worker).
    for item_id in ids[10:20]:
        state, error, made = await item_outcome(engine, item_id)
        assert state == ItemState.DONE and made, (item_id, state, error)
    for item_id in ids[:10]:
        state, error, made = await item_outcome(engine, item_id)
        assert state in (ItemState.PENDING, ItemState.DEAD) and not made
        assert error and "JSON" in error


async def test_pipeline__store_refusal_isolated_and_others_stored(
        engine: AsyncEngine, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the database refuses what one item became, the batch is split: the
    others are stored at once, the one at fault is dead-lettered with the error."""
    original = worker_module.BUILDERS["smtp"]

    def build(item: Any, *args: Any) -> Any:
        new = finish(original(item, *args))  # built whole, then spoiled
        if b"poison" in item.raw:  # a value no column takes (past 64-bit integers)
            return replace(new, escalation_level=2**70)
        return new

    monkeypatch.setitem(worker_module.BUILDERS, "smtp", build)
    items = [NewItem("smtp", NORMAL.replace(b"<normal@", f"<n{i}@".encode()), {})
             for i in range(9)]
    items.insert(4, NewItem("smtp", _mail(b"Subject: poison", b"Message-ID: <bad@x>"), {}))
    ids = await accept_many(engine, items)
    pipeline = Pipeline(engine=engine, config=config)
    started = time.monotonic()
    await pipeline.drain()
    assert time.monotonic() - started < 5.0
    assert pipeline.processed == 9
    assert await count_rows(engine, requests) == 9
    [dead] = await dead_items(engine)
    assert dead["id"] == ids[4]


async def test_pipeline__failed_item_retried_later_not_inline(
        engine: AsyncEngine, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing build is handed back with a time for its next attempt; the
    worker does not sleep on it, and the last attempt dead-letters it."""
    calls = 0

    def broken(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        raise RuntimeError("parser exploded")

    monkeypatch.setitem(worker_module.BUILDERS, "smtp", broken)
    [item_id] = await accept_many(engine, [NewItem("smtp", NORMAL, {})])
    slow = make_config(db_url, pipeline={"backoff_initial_seconds": 30.0,
                                         "backoff_max_seconds": 60.0, "max_attempts": 3})
    pipeline = Pipeline(engine=engine, config=slow)
    started = time.monotonic()
    await pipeline.drain()
    assert time.monotonic() - started < 2.0  # not 30 s of backoff in the worker's path
    assert calls == 1
    async with engine.connect() as conn:
        row = (await conn.execute(select(inbox_items).where(inbox_items.c.id == item_id))).one()
    assert row.state == ItemState.PENDING and "parser exploded" in row.last_error
    assert row.next_attempt_at is not None


# --- a dead item is replayable after a fix --------------------------------------------

async def test_reprocess__dead_poison_item_succeeds_after_the_fix(
        db_url: str, engine: AsyncEngine, config: Config, tmp_path: Path) -> None:
    """Items the old code accepted then dead-lettered (values no column took, NaN
    and lone surrogates in an API body) become requests with `intake reprocess`."""
    stored_before = [
        NewItem("smtp", _mail(b"From: " + b"N" * 300 + b" <ann@example.com>"), {}),
        NewItem("api", api_body("lone \ud800", score=float("nan")), {"token_id": None}),
    ]
    ids = await accept_many(engine, stored_before)
    for item_id in ids:
        await fail_item(engine, item_id, "DBAPIError: value too long", dead=True)
    result = await asyncio.to_thread(intake, "reprocess", "--all",
                                     config=write_config(tmp_path / "c.toml", db_url))
    assert result.returncode == 0, result.stderr
    await Pipeline(engine=engine, config=config).drain()
    assert await dead_items(engine) == []
    for item_id in ids:
        state, error, made = await item_outcome(engine, item_id)
        assert state == ItemState.DONE and made, (state, error)
    found = await queries.get_request(engine, await reference_of(engine, ids[1]))
    assert found is not None
    assert found["subject"] == "lone \ufffd"
    assert found["custom_fields"]["score"] is None
    defects = found["messages"][0]["flags"]["defects"]
    assert any("custom_fields/score" in d for d in defects), defects


# --- fitting, for any values -------------------------------------------------------------

HOSTILE_TEXT = st.one_of(
    st.text(st.one_of(st.characters(), st.characters(min_codepoint=0xD800,
                                                     max_codepoint=0xDFFF), st.just("\x00")),
            max_size=30),
    st.integers(190, 1100).map(lambda n: "x" * n))
JSONISH = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(),
                                 st.floats(allow_nan=True, allow_infinity=True), HOSTILE_TEXT),
                       lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(HOSTILE_TEXT, inner, max_size=3), max_leaves=6)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(text=st.lists(HOSTILE_TEXT, min_size=12, max_size=12), custom=JSONISH,
       name=st.one_of(st.none(), HOSTILE_TEXT))
def test_fit_request__any_values_fit_their_columns(text: list[str], custom: Any,
                                                   name: str | None) -> None:
    """Whatever the builder hands over, what is stored fits: no NUL, no lone
    surrogate, no NaN, no text longer than its column; and a change is recorded.
    The message is fitted as a whole where nothing in it needs a change, and
    field by field otherwise: both ways are met here."""
    message = NewMessage(
        subject=text[0], text=text[1], new_text=text[2], from_address=text[3], from_name=name,
        message_id=text[4], in_reply_to=text[5], references=[text[6]],
        to=[{"name": text[7], "address": text[8]}], html=text[9],
        attachments=[NewAttachment(text[10], text[11], b"x", text[10])])
    new = NewRequest(queue="general", message=message, requester_email=text[3],
                     requester_name=name, custom_fields={"k": custom},
                     received=Event(kind=EventKind.RECEIVED, data={"x": custom}),
                     hints=ThreadHints(message_id=text[4], parent_ids=(text[5], text[6]),
                                       sender=text[3]),
                     acknowledgement=replace(message, to=[{"name": "", "address": text[3]}]))
    fitted = fit_request(new)
    item = ClaimedItem(1, "smtp", b"", {}, 1, utcnow())
    for table, row in ((requests, request_row(item, fitted, utcnow())),
                       (messages, message_row(1, 1, fitted.message, utcnow()))):
        assert not needs_change(row)
        for key, value in row.items():
            size = limit(table, key)
            assert not isinstance(value, str) or size is None or len(value) <= size, key
            assert fit_row(table, {key: value})[key] == value  # nothing left to cut
    a = fitted.message.attachments[0]
    assert len(a.filename or "") <= 500 and len(a.content_type) <= 200
    assert not needs_change([a.filename, a.content_type, a.content_id])
    assert fitted.hints is not None and not needs_change(list(fitted.hints.parent_ids))
    # Our own record of what happened: the column holds it storable (NaN is
    # written as null by the encoder), with no defect recorded.
    assert fitted.received is not None and stored_as_is(fitted.received.data)
    assert not needs_change(json.loads(json_text(fitted.received.data)))
    changed = new.message.subject != fitted.message.subject or new.custom_fields != {
        "k": custom} or new.requester_name != fitted.requester_name
    if changed:
        assert fitted.message.flags["defects"]


async def test_pipeline__reply_to_a_cut_message_id_still_threads(
        engine: AsyncEngine, config: Config) -> None:
    """A Message-ID cut to its column is matched by a reply's In-Reply-To cut
    the same way: the reply lands on its request."""
    long_id = b"<" + b"m" * 1500 + b"@example.com>"
    first = _mail(b"Message-ID: " + long_id)
    reply = _mail(b"Subject: Re: Hostile", b"Message-ID: <reply@example.com>",
                  b"In-Reply-To: " + long_id)
    ids = await accept_many(engine, [NewItem("smtp", first, {}), NewItem("smtp", reply, {})])
    await Pipeline(engine=engine, config=config).drain()
    assert await count_rows(engine, requests) == 1
    found = await queries.get_request(engine, await reference_of(engine, ids[0]))
    assert found is not None
    assert len([m for m in found["messages"] if m["direction"] == "in"]) == 2


MESSAGE_TEXT = st.one_of(HOSTILE_TEXT, st.text(max_size=40),
                         st.sampled_from(["", "plain", "schön — 😀", "x" * 999]))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(text=st.lists(MESSAGE_TEXT, min_size=10, max_size=10), name=st.one_of(
    st.none(), MESSAGE_TEXT), attached=st.booleans(), flags=JSONISH)
def test_fit_message__as_a_whole_as_field_by_field(text: list[str], name: str | None,
                                                   attached: bool, flags: Any) -> None:
    """The check of a message as a whole (most need no change) gives what the
    checks per field give: the same message and the same defects."""
    message = NewMessage(
        subject=text[0], text=text[1], new_text=text[2], from_address=text[3], from_name=name,
        message_id=text[4], in_reply_to=text[5], references=[text[6]],
        to=[{"name": text[7], "address": text[8]}], html=text[9], flags={"f": flags},
        attachments=[NewAttachment(text[0], text[1], b"x", text[2])] if attached else [])
    whole, each = Fitter(), Fitter()
    assert fit_message(whole, message) == fit_fields(each, message)
    assert whole.defects == each.defects
