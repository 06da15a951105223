"""Properties over generated hostile input (Hypothesis), against a running gateway.

For envelope values, HTTP header values and JSON bodies: an input we
acknowledge (250, 201) is stored and becomes a request; bad input is refused
with an answer about the input (a 5xx of SMTP's own syntax and address
replies, a 4xx over HTTP), never with a fault of ours (451, 5xx over HTTP).

Hypothesis runs in a worker thread; each example talks to the gateway, which
runs in the test's event loop, through that loop. Example counts are small and
the examples derandomized, so a run takes seconds and is the same every time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import Gateway
from gateway.config import Config
from storage.tokens import create_token
from tests.adversarial.hostile import (
    Envelope,
    api_body,
    http_raw,
    mail,
    processed,
    run_envelope,
)
from tests.helpers import item_of, make_config, wait_for

T = TypeVar("T")
EXAMPLES = 40
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))
OUR_FAULTS = ("4", "554 5.6.0")  # temporary replies, and "cannot be stored"

FORM = {"id": "support", "title": "Contact support", "min_fill_seconds": 0,
        "rate_limit_per_minute": 1_000_000, "field": [
            {"name": "email", "label": "Email", "kind": "email", "required": True},
            {"name": "subject", "label": "Subject"},
            {"name": "message", "label": "Message", "kind": "textarea"}]}


@pytest.fixture
def config(db_url: str) -> Config:
    return make_config(db_url, form=[FORM], http={
        "listen": "127.0.0.1:0", "max_body_bytes": 100_000, "shutdown_seconds": 3.0,
        "rate_limit_per_token": 1e6, "rate_limit_per_address": 1e6, "rate_limit_burst": 1e6})


class OnLoop:
    """Runs the gateway's coroutines from the Hypothesis thread, on its loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, engine: AsyncEngine) -> None:
        self.loop, self.engine = loop, engine

    def __call__(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def becomes_request(self, reference: str) -> None:
        item_id = self(item_of(self.engine, reference))
        assert item_id is not None, reference
        self(wait_for(lambda: processed(self.engine, item_id), timeout=20, interval=0.02))


async def _in_thread(test: Callable[[OnLoop], None], engine: AsyncEngine) -> None:
    await asyncio.to_thread(test, OnLoop(asyncio.get_running_loop(), engine))


# --- envelopes ------------------------------------------------------------------------

# Any byte but the line ending (which ends the command) and, in paths, what
# ends the path; the common cases weighted in.
_BYTE = st.integers(0, 255).filter(lambda b: b not in (10, 13))
_TEXTY = st.sampled_from(list(b"abcxyz019.-_+\xc3\xa9\xf6\xff\x00\x01\x7f\xed\xa0\x80 \""))
_ANY = st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
HOSTS = st.one_of(st.lists(_TEXTY, min_size=1, max_size=30).map(bytes), _ANY)
LOCALS = st.lists(st.one_of(_TEXTY, _BYTE), min_size=1, max_size=30).map(
    lambda b: bytes(b).replace(b"<", b"").replace(b">", b"").replace(b"@", b"") or b"x")
PARAMS = st.sampled_from([b"", b" BODY=8BITMIME", b" SMTPUTF8", b" SIZE=100", b" X=\xff",
                          b" BODY=\x00", b" SIZE=99999999999999999999"])


@given(helo=HOSTS, sender=LOCALS, recipient=LOCALS, params=PARAMS)
@SETTINGS
def _envelope_property(on_loop: OnLoop, port: int, helo: bytes, sender: bytes,
                       recipient: bytes, params: bytes) -> None:
    envelope = Envelope("generated", helo, b"<" + sender + b"@example.com>" + params,
                        b"<" + recipient + b"@help.example>", "")
    replies = on_loop(run_envelope(port, envelope, mail("generated")))
    assert not any(r.startswith(OUR_FAULTS) for r in replies), (envelope, replies)
    if len(replies) == 4 and replies[-1].startswith("250"):
        on_loop.becomes_request(replies[-1].rsplit(" ", 1)[-1])


async def test_smtp__any_envelope_answered_and_acknowledged_means_stored(
        gateway: Gateway, engine: AsyncEngine) -> None:
    await _in_thread(lambda on_loop: _envelope_property(on_loop, gateway.smtp_port), engine)


# --- HTTP header values ----------------------------------------------------------------

HEADER_NAMES = st.sampled_from(["User-Agent", "Origin", "Content-Type", "X-Forwarded-For",
                                "Accept", "Idempotency-Key", "Referer"])
HEADER_VALUES = st.one_of(_ANY, st.lists(_TEXTY, min_size=1, max_size=50).map(bytes))


@given(headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, min_size=1, max_size=3),
       form=st.booleans())
@SETTINGS
def _header_property(on_loop: OnLoop, port: int, token: str, headers: dict[str, bytes],
                     form: bool) -> None:
    if form:
        sent = {"Content-Type": b"application/x-www-form-urlencoded",
                "Accept": b"application/json"} | headers
        answer = on_loop(http_raw(port, "POST", "/v1/forms/support",
                                  b"email=ann%40example.com&subject=Hi&message=Help", sent))
    else:
        sent = {"Content-Type": b"application/json"} | headers | {
            "Authorization": f"Bearer {token}".encode()}
        answer = on_loop(http_raw(port, "POST", "/v1/requests", api_body(), sent))
    assert 0 < answer.status < 500, (headers, answer.status, answer.body[:300])
    if answer.status == 201:
        on_loop.becomes_request(answer.json()["reference"])


async def test_http__any_header_answered_and_acknowledged_means_stored(
        gateway: Gateway, engine: AsyncEngine) -> None:
    _, token = await create_token(engine, name="props", role="intake", queues=[])
    await _in_thread(lambda on_loop: _header_property(on_loop, gateway.http_port, token),
                     engine)


# --- JSON bodies -----------------------------------------------------------------------

SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
TEXT = st.one_of(st.text(max_size=30), st.text(st.one_of(SURROGATES, st.characters()),
                                               max_size=10),
                 st.sampled_from(["a\x00b", "n" * 300, "x" * 1200, ""]))
NUMBERS = st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(TEXT, inner, max_size=3), max_leaves=8)
EMAILS = st.one_of(st.just("bob@example.com"), TEXT.map(lambda t: t + "@example.com"), VALUES)
BODIES = st.fixed_dictionaries(
    {"requester": st.one_of(st.fixed_dictionaries({"email": EMAILS},
                                                  optional={"name": st.one_of(TEXT, VALUES)}),
                            VALUES),
     "subject": st.one_of(TEXT, VALUES), "body": st.one_of(TEXT, VALUES)},
    optional={"custom_fields": st.one_of(st.dictionaries(TEXT, SCALARS, max_size=5), VALUES),
              "extra": VALUES})


def _encoded(body: Any, how: int) -> bytes:
    """JSON text as clients send it: escaped, raw UTF-8 (lone surrogates as
    CESU-8 bytes, which is not UTF-8), or nested deep."""
    if how == 0:
        return json.dumps(body).encode()
    if how == 1:
        return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return b'{"custom_fields": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"


@given(body=BODIES, how=st.sampled_from([0, 0, 0, 1, 2]))
@SETTINGS
def _body_property(on_loop: OnLoop, port: int, token: str, body: Any, how: int) -> None:
    answer = on_loop(http_raw(port, "POST", "/v1/requests", _encoded(body, how), {
        "Content-Type": b"application/json", "Authorization": f"Bearer {token}".encode()}))
    assert 0 < answer.status < 500, (body, answer.status, answer.body[:300])
    if answer.status == 201:
        on_loop.becomes_request(answer.json()["reference"])


async def test_api__any_json_body_answered_and_acknowledged_means_stored(
        gateway: Gateway, engine: AsyncEngine) -> None:
    _, token = await create_token(engine, name="props", role="intake", queues=[])
    await _in_thread(lambda on_loop: _body_property(on_loop, gateway.http_port, token), engine)
