"""Hostile JSON bodies, query cursors and path values against every JSON endpoint,
on both databases: each gets a problem document (status < 500), never a 500, and
nothing that is not JSON (NaN, lone surrogates) is ever stored or sent back.

The table is every hostile value at every field of every endpoint's body, plus
every hostile whole body; a value that is legitimate (a bidi mark in a tag) may be
taken, which is fine: what matters is that the answer is a clean one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import DEFAULT_FORM, Config
from gateway.http.app import init_app
from gateway.pipeline.worker import Pipeline
from storage import queries
from storage.models import events, requests
from tests.helpers import AppClient, auth, make_config

PROBLEM = "application/problem+json"
DEEP = 100_000
MARK = "@@hostile@@"

# Hostile JSON values, as raw JSON text.
VALUES: dict[str, str] = {
    "NaN": "NaN",
    "Infinity": "Infinity",
    "-Infinity": "-Infinity",
    "float overflowing to inf": "1e999",
    "negative float overflowing": "-1e999",
    "integer past Python's 4300 digits": "9" * 5000,
    "integer of 4000 digits": "9" * 4000,
    "integer past 64 bits": str(2**64),
    "integer below -2**63": str(-(2**63) - 1),
    "lone high surrogate": '"\\ud800"',
    "lone low surrogate between text": '"a\\udfffb"',
    "surrogates in the wrong order": '"\\udc00\\ud800"',
    "lone surrogate as a key": '{"\\ud800": 1}',
    "NUL": '"a\\u0000b"',
    "NUL in a key": '{"a\\u0000": 1}',
    "100k [": "[" * DEEP,
    "100k {": '{"a":' * DEEP,
    "3000 deep, closed": "[" * 3000 + "]" * 3000,
    "900 deep, closed": "[" * 900 + "]" * 900,
    "surrogate 20 deep": "[" * 20 + '"\\ud800"' + "]" * 20,
    "NaN inside objects": '{"a": [[{"b": NaN}]]}',
    "control characters": '"\\u001b[2J\\r\\n\\t"',
    "bidi override": '"\\u202egnp.exe"',
    "operator object": '{"$gt": ""}',
    "mixed array": '[1, "2", null]',
    "empty string": '""',
    "null": "null",
    "true": "true",
    "minus one": "-1",
    "fraction": "0.5",
    "5000-character key": '{"' + "k" * 5000 + '": 1}',
    "2000 keys": "{" + ",".join(f'"k{i}": {i}' for i in range(2000)) + "}",
}

# Hostile whole bodies, as bytes: every value above, and what is not JSON at all.
BODIES: dict[str, bytes] = {name: text.encode() for name, text in VALUES.items()} | {
    "empty": b"",
    "white space": b" \r\n\t ",
    "truncated": b'{"body": "x',
    "invalid UTF-8": b'{"body": "\xff\xfe"}',
    "UTF-8 encoded surrogate": b'{"body": "\xed\xa0\x80"}',
    "UTF-8 BOM": b'\xef\xbb\xbf{"body": "x"}',
    "UTF-16": '{"body": "x"}'.encode("utf-16"),
    "duplicate names": b'{"body": "a", "body": "b"}',
    "trailing garbage": b'{"body": "x"} x',
    "raw control byte in a string": b'{"body": "a\x01b"}',
    "raw NUL byte": b'{"body": "a\x00b"}',
    "top-level NaN": b"NaN",
}

NEW_REQUEST = {"requester": {"email": "ann@example.com", "name": "Ann"}, "subject": "s",
               "body": "b", "custom_fields": {"x": "y"}}
# (method, path, a valid body whose values are replaced one at a time)
ENDPOINTS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/requests", NEW_REQUEST),
    ("PATCH", "/v1/requests/{ref}", {"status": "open", "queue": "general", "priority": "P2",
                                     "type": "t", "category": "c", "component": "x",
                                     "tags": ["a"], "custom_fields": {"x": "y"}}),
    ("POST", "/v1/requests/{ref}/notes", {"body": "a note"}),
    ("POST", "/v1/requests/{ref}/replies", {"body": "a reply", "status": "waiting"}),
    ("POST", "/v1/requests/{ref}/escalate", {"reason": "slow", "queue": "general"}),
    ("POST", "/v1/requests/{ref}/merge", {"into": "{other}"}),
    ("PUT", "/v1/requests/{ref}/lease", {"lease_seconds": 60}),
    ("POST", "/v1/queues/general/claim", {"limit": 1, "lease_seconds": 60, "wait": 0}),
    ("POST", "/v1/admin/tokens", {"role": "agent", "queues": ["general"], "name": "n",
                                  "may_hand_off": False}),
    ("POST", "/v1/requests/{ref}/replies", {
        "body": "b", "cc": ["c@example.com"], "html": "<p>h</p>",
        "attachments": [{"filename": "f.txt", "content_type": "text/plain",
                         "content_base64": "aGk="}]}),
    ("POST", "/v1/admin/agents", {"name": "Ann", "email": "ann@example.com",
                                  "queues": ["general"], "active": True}),
    ("POST", "/v1/admin/canned-responses", {"queue": "general", "language": "en",
                                            "name": "n", "body": "Hi {{ reference }}"}),
    ("POST", "/v1/quarantine/{ref}/release", {}),
    ("DELETE", "/v1/requests/{ref}/lease", {}),
    ("POST", "/v1/forms/support", {"email": "ann@example.com"}),
]


def _strict(text: str) -> Any:
    """JSON as RFC 8259 has it: NaN and Infinity are not JSON."""
    def refuse(name: str) -> Any:
        raise AssertionError(f"non-JSON token {name} in an answer")
    return json.loads(text, parse_constant=refuse)


def _pointers(value: Any, at: str = "") -> list[str]:
    """Every value's JSON pointer in a body template (containers and leaves)."""
    found = [at] if at else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _pointers(item, f"{at}/{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _pointers(item, f"{at}/{index}")
    return found


def _with(template: dict[str, Any], pointer: str, raw: str) -> bytes:
    """The template as JSON text with the value at `pointer` replaced by raw text."""
    body = json.loads(json.dumps(template))
    parts = pointer.split("/")[1:]
    target = body
    for part in parts[:-1]:
        target = target[int(part)] if isinstance(target, list) else target[part]
    last = parts[-1]
    if isinstance(target, list):
        target[int(last)] = MARK
    else:
        target[last] = MARK
    return json.dumps(body).replace(json.dumps(MARK), raw).encode()


@pytest.fixture
def config(db_url: str) -> Config:
    # Loose rate limits and the default body limit: the table is many requests, and
    # 100k brackets must reach the parser rather than stop at 413.
    return make_config(db_url, http={"max_body_bytes": 1_048_576,
                                     "rate_limit_per_token": 1_000_000,
                                     "rate_limit_per_address": 1_000_000,
                                     "rate_limit_burst": 1_000_000})


async def _new_request(http: AppClient, token: str, pipeline: Pipeline) -> str:
    async with http.post("/v1/requests", json=NEW_REQUEST, headers=auth(token)) as resp:
        assert resp.status == 201, await resp.text()
        reference = str((await resp.json())["reference"])
    await pipeline.drain()
    return reference


async def _etag(engine: AsyncEngine, reference: str) -> str:
    found = await queries.get_request(engine, reference, whole=False)
    assert found is not None
    return f'"v{found.get("version", 0)}"'


async def _check(http: AppClient, method: str, path: str, body: bytes,
                 headers: dict[str, str], case: str) -> int:
    async with http.request(method, path, data=body, headers=headers) as resp:
        text = await resp.text()
        assert resp.status < 500, (case, resp.status, text[:300])
        if resp.status >= 400:
            assert resp.content_type == PROBLEM, (case, resp.status, resp.content_type)
            assert _strict(text)["status"] == resp.status, case
        elif text:
            _strict(text)
        return resp.status


async def test_json_bodies__hostile_table_never_5xx(
        app_client: AppClient, engine: AsyncEngine, admin_token: str,
        pipeline: Pipeline) -> None:
    http = app_client
    ref = await _new_request(http, admin_token, pipeline)
    other = await _new_request(http, admin_token, pipeline)
    cases = 0
    started = time.monotonic()
    for method, template_path, template in ENDPOINTS:
        path = template_path.format(ref=ref)
        template = json.loads(json.dumps(template).replace("{other}", other))
        bodies = dict(BODIES)
        for pointer in _pointers(template):
            for name, raw in VALUES.items():
                bodies[f"{pointer} = {name}"] = _with(template, pointer, raw)
        for case, body in bodies.items():
            headers = auth(admin_token) | {"Content-Type": "application/json",
                                           "Accept": "application/json"}
            if "{ref}" in template_path:
                headers["If-Match"] = await _etag(engine, ref)
            await _check(http, method, path, body, headers, f"{method} {path} {case}")
            cases += 1
    # Whatever was taken, the request reads back as JSON (no NaN on SQLite either).
    async with http.get(f"/v1/requests/{ref}", headers=auth(admin_token)) as resp:
        assert resp.status == 200
        _strict(await resp.text())
    print(f"{cases} hostile bodies in {time.monotonic() - started:.1f} s")


# Our JSON endpoints (POST /v1/requests is the intake parser's, tested with intake).
OURS = [e for e in ENDPOINTS if e[1] not in ("/v1/requests", "/v1/forms/support")
        and e[0] != "DELETE" and "release" not in e[1]]


@pytest.mark.parametrize("body", [b"[" * DEEP, b'{"a":' * DEEP, b"[" * 3000 + b"]" * 3000,
                                  b'{"body": ' + b"[" * 900 + b"]" * 900 + b"}"],
                         ids=["100k [", "100k {", "3000 deep", "900 deep"])
async def test_json_bodies__deep_nesting_is_400(app_client: AppClient, engine: AsyncEngine,
                                                admin_token: str, pipeline: Pipeline,
                                                body: bytes) -> None:
    ref = await _new_request(app_client, admin_token, pipeline)
    for method, path, _ in OURS:
        headers = auth(admin_token) | {"If-Match": await _etag(engine, ref),
                                       "Content-Type": "application/json"}
        async with app_client.request(method, path.format(ref=ref), data=body,
                                      headers=headers) as resp:
            assert (resp.status, resp.content_type) == (400, PROBLEM), (method, path)
            assert "nested" in (await resp.json())["detail"]


@pytest.mark.parametrize(("path", "body", "pointer"), [
    ("/v1/requests/{ref}", '{"custom_fields": {"x": NaN}}', "/custom_fields/x"),
    ("/v1/requests/{ref}", '{"custom_fields": {"x": Infinity}}', "/custom_fields/x"),
    ("/v1/requests/{ref}", '{"custom_fields": {"x": -1e999}}', "/custom_fields/x"),
    ("/v1/requests/{ref}", '{"custom_fields": {"x": "a\\ud800"}}', "/custom_fields/x"),
    # A lone surrogate is not sent back either: the pointer shows U+FFFD in its place.
    ("/v1/requests/{ref}", '{"custom_fields": {"\\udfff": 1}}', "/custom_fields/\ufffd"),
    ("/v1/requests/{ref}", '{"tags": ["ok", "\\ud800"]}', "/tags/1"),
    ("/v1/requests/{ref}", '{"type": "\\udc00\\ud800"}', "/type"),
    ("/v1/requests/{ref}/notes", '{"body": "\\ud800"}', "/body"),
    ("/v1/requests/{ref}/notes", '{"body": NaN}', "/body"),
    ("/v1/requests/{ref}/notes", '{"body": "x", "extra": [Infinity]}', "/extra/0"),
    ("/v1/requests/{ref}/replies", '{"body": "\\udbff!"}', "/body"),
    ("/v1/requests/{ref}/escalate", '{"reason": "\\ud800"}', "/reason"),
    ("/v1/admin/tokens", '{"role": "agent", "name": "\\ud800"}', "/name"),
], ids=lambda v: v if isinstance(v, str) and v.startswith("{") else None)
async def test_json_bodies__nan_and_surrogates_are_422_naming_the_field(
        app_client: AppClient, engine: AsyncEngine, admin_token: str, pipeline: Pipeline,
        path: str, body: str, pointer: str) -> None:
    ref = await _new_request(app_client, admin_token, pipeline)
    before = await queries.get_request(engine, ref)
    method = "PATCH" if path == "/v1/requests/{ref}" else "POST"
    headers = auth(admin_token) | {"If-Match": await _etag(engine, ref),
                                   "Content-Type": "application/json"}
    async with app_client.request(method, path.format(ref=ref), data=body.encode(),
                                  headers=headers) as resp:
        assert (resp.status, resp.content_type) == (422, PROBLEM), await resp.text()
        problem = _strict(await resp.text())
    assert [e["pointer"] for e in problem["errors"]] == [pointer]
    assert problem["detail"].startswith(pointer)
    after = await queries.get_request(engine, ref)
    assert after == before  # nothing changed, nothing noted


async def test_json_bodies__nan_is_never_stored(app_client: AppClient, engine: AsyncEngine,
                                                admin_token: str, pipeline: Pipeline) -> None:
    ref = await _new_request(app_client, admin_token, pipeline)
    for value in ("NaN", "Infinity", "-Infinity", "1e400"):
        body = f'{{"custom_fields": {{"x": {value}}}}}'.encode()
        headers = auth(admin_token) | {"If-Match": await _etag(engine, ref),
                                       "Content-Type": "application/json"}
        async with app_client.patch(f"/v1/requests/{ref}", data=body, headers=headers) as resp:
            assert resp.status == 422, value
    async with engine.connect() as conn:
        stored = (await conn.execute(select(requests.c.custom_fields)
                                     .where(requests.c.reference == ref))).scalar_one()
        data = (await conn.execute(select(events.c.data))).scalars().all()
    assert stored == {"x": "y"}
    assert all("NaN" not in json.dumps(d) and "Infinity" not in json.dumps(d) for d in data)
    async with app_client.get(f"/v1/requests/{ref}", headers=auth(admin_token)) as resp:
        assert _strict(await resp.text())["custom_fields"] == {"x": "y"}


def _cursor(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


CURSORS: dict[str, str] = {
    "id past 64 bits": _cursor(["P1", "2026-01-01T00:00:00", 10**30]),
    "id of 4000 digits": _cursor('["P1", "2026-01-01T00:00:00", ' + "9" * 4000 + "]"),
    "id of 5000 digits": _cursor('["P1", "2026-01-01T00:00:00", ' + "9" * 5000 + "]"),
    "id as float overflow": _cursor('["P1", "2026-01-01T00:00:00", 1e999]'),
    "id NaN": _cursor('["P1", "2026-01-01T00:00:00", NaN]'),
    "id as a huge float": _cursor(["P1", "2026-01-01T00:00:00", 1e300]),
    "id negative past 64 bits": _cursor(["P1", "2026-01-01T00:00:00", -(10**30)]),
    "id true": _cursor(["P1", "2026-01-01T00:00:00", True]),
    "id as text": _cursor(["P1", "2026-01-01T00:00:00", "12"]),
    # (under aiohttp's 8190-byte request line, past which it answers 400 itself)
    "priority past its column": _cursor(["P" * 2000, "2026-01-01T00:00:00", 1]),
    "priority an object": _cursor([{"a": 1}, "2026-01-01T00:00:00", 1]),
    "priority with NUL": _cursor(["P\x001", "2026-01-01T00:00:00", 1]),
    "priority a lone surrogate": _cursor('["\\ud800", "2026-01-01T00:00:00", 1]'),
    "due not a date": _cursor(["P1", "yesterday", 1]),
    "due year 0": _cursor(["P1", "0000-01-01T00:00:00", 1]),
    "due a number": _cursor(["P1", 20260101, 1]),
    "due with NUL": _cursor(["P1", "2026-01-01\x00", 1]),
    "deep nesting": _cursor("[" * 4000),
    "an object of three": _cursor({"a": 1, "b": 2, "c": 3}),
    "a string of three": _cursor("abc"),
    "two items": _cursor(["P1", "2026-01-01T00:00:00"]),
    "four items": _cursor(["P1", "2026-01-01T00:00:00", 1, 2]),
    "not base64": "!!!not base64!!!",
    "not ASCII": "éé",
    "base64 of bytes": base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),
    "very long": "A" * 7000,
}


async def test_queue_cursor__crafted_cursors_are_400(
        app_client: AppClient, admin_token: str, pipeline: Pipeline) -> None:
    for _ in range(3):
        await _new_request(app_client, admin_token, pipeline)
    async with app_client.get("/v1/queues/general/requests", params={"limit": "1"},
                              headers=auth(admin_token)) as resp:
        good = (await resp.json())["next_cursor"]
    async with app_client.get("/v1/queues/general/requests",
                              params={"limit": "1", "cursor": good},
                              headers=auth(admin_token)) as resp:
        assert resp.status == 200  # the one we gave out works
    failures = []
    for name, cursor in CURSORS.items():
        async with app_client.get("/v1/queues/general/requests", params={"cursor": cursor},
                                  headers=auth(admin_token)) as resp:
            if resp.status != 400 or resp.content_type != PROBLEM:
                failures.append(f"{name}: {resp.status} {(await resp.text())[:200]}")
                continue
            problem = _strict(await resp.text())
            if problem["errors"][0].get("parameter") != "cursor":
                failures.append(f"{name}: {problem}")
    assert failures == []


# Header values as raw bytes: not UTF-8, UTF-8-encoded surrogates, over-long
# numbers. (aiohttp itself answers 400 to control characters in a header.)
HEADERS: list[bytes] = [
    b"Authorization: Bearer \xff\xfe",
    b"Authorization: Bearer \xed\xa0\x80",
    b"Authorization: Bearer itk_\xc3\xa9",
    b"Authorization: \xff\xfe \xff",
    b"Idempotency-Key: \xff\xfe",
    b"Idempotency-Key: \xed\xa0\x80",
    b"Idempotency-Key: key\xc2\xa0with nbsp",
    b'If-Match: "v\xff"',
    b'If-Match: "v' + b"9" * 5000 + b'"',
    b"If-Match: W/\"v1\", \"v\xed\xa0\x80\", *",
    b"Origin: https://\xff\xfe.example",
    b"Origin: https://\xed\xa0\x80.example",
    b"Accept: \xff",
    b"Content-Type: application/json; charset=\xff",
]


async def _raw(port: int, method: str, path: str, headers: list[bytes],
               body: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close",
            f"Content-Length: {len(body)}".encode(), *headers]
    writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    head_bytes, _, payload = answer.partition(b"\r\n\r\n")
    return int(head_bytes.split(b" ", 2)[1]), head_bytes + b"\n" + payload[:300]


@pytest.fixture
def form_config(db_url: str) -> Config:
    return make_config(db_url, form=[DEFAULT_FORM | {"min_fill_seconds": 0}],
                       http={"rate_limit_per_token": 1_000_000,
                             "rate_limit_per_address": 1_000_000,
                             "rate_limit_burst": 1_000_000})


async def test_headers__hostile_values_never_5xx(
        form_config: Config, engine: AsyncEngine, admin_token: str,
        aiohttp_client: Callable[[web.Application], Awaitable[AppClient]]) -> None:
    http = await aiohttp_client(init_app(form_config))
    port = http.server.port
    assert port is not None
    async with http.post("/v1/requests", json=NEW_REQUEST, headers=auth(admin_token)) as resp:
        ref = (await resp.json())["reference"]
    good_auth = f"Authorization: Bearer {admin_token}".encode()
    targets = [
        ("GET", f"/v1/requests/{ref}", b""),
        ("POST", "/v1/requests", json.dumps(NEW_REQUEST).encode()),
        ("PATCH", f"/v1/requests/{ref}", b'{"priority": "P2"}'),
        ("POST", f"/v1/requests/{ref}/notes", b'{"body": "n"}'),
        ("POST", "/v1/forms/support", b"email=ann%40example.com&subject=s&message=m"),
        ("GET", "/v1/forms/support", b""),
        ("OPTIONS", "/v1/forms/support", b""),
    ]
    failures = []
    for header in HEADERS:
        for method, path, body in targets:
            extra = [header]
            if not header.startswith(b"Authorization"):
                extra.append(good_auth)
            if path == "/v1/forms/support" and method == "POST":
                extra.append(b"Content-Type: application/x-www-form-urlencoded")
            elif body and not header.startswith(b"Content-Type"):
                extra.append(b"Content-Type: application/json")
            status, answer = await _raw(port, method, path, extra, body)
            if status >= 500:
                failures.append(f"{header[:40]!r} {method} {path}: {answer!r}")
    assert failures == []


# --- property: any JSON-ish body, anywhere in any endpoint's body: never a 5xx ------

_TEXT = st.one_of(st.text(st.characters(exclude_categories=()), max_size=12),
                  st.sampled_from(["\ud800", "a\udfffb", "\udc00\ud800", "\x00", "\u202e",
                                   "P1", "general", "billing", "open", ""]))
_LEAF = st.one_of(st.none(), st.booleans(), st.integers(),
                  st.floats(allow_nan=True, allow_infinity=True), _TEXT)
_VALUE = st.recursive(_LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_TEXT, inner, max_size=4)), max_leaves=12)


@settings(max_examples=80, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(endpoint=st.sampled_from(ENDPOINTS), whole=st.booleans(), value=_VALUE,
       depth=st.sampled_from([0, 0, 0, 40, 2000]), data=st.data())
async def test_json_bodies__any_value_anywhere_never_5xx(
        app_client: AppClient, engine: AsyncEngine, admin_token: str, pipeline: Pipeline,
        endpoint: tuple[str, str, dict[str, Any]], whole: bool, value: Any, depth: int,
        data: st.DataObject) -> None:
    method, template_path, template = endpoint
    if not hasattr(app_client, "_ref"):  # one seeded request per backend, reused
        app_client._ref = await _new_request(app_client, admin_token, pipeline)  # type: ignore[attr-defined]
    ref = app_client._ref  # type: ignore[attr-defined]
    raw = "[" * depth + json.dumps(value, allow_nan=True) + "]" * depth
    pointers = _pointers(template)
    if whole or not pointers:
        body = raw.encode()
    else:
        body = _with(template, data.draw(st.sampled_from(pointers)), raw)
    headers = auth(admin_token) | {"Content-Type": "application/json",
                                   "If-Match": await _etag(engine, ref)}
    await _check(app_client, method, template_path.format(ref=ref), body, headers,
                 f"{method} {template_path} {body[:200]!r}")


@pytest.mark.parametrize(("raw", "status", "pointer"), [
    (b'{"a": 1, "a": 2}', 400, None),                        # I-JSON: names unique
    (b'{"a": {"b": 1, "b": 1}}', 400, None),
    (b"[" * 33 + b"]" * 33, 400, None),                      # deeper than 32 levels
    (b"[" + b"1," * 10_000 + b"1]", 422, ""),                # more than 10,000 values
    (b'{"a": [' + b'"x",' * 9_997 + b'"x"]}', None, None),   # 10,000 values: taken
    (b"[" * 32 + b"]" * 32, None, None),                     # 32 levels: taken
    (b'{"a~b/c": ["x", {"d": "\\ud800"}]}', 422, "/a~0b~1c/1/d"),
    (b'{"n": 1e308, "m": -0.0, "i": 123456789012345678901234567890}', None, None),
])
def test_load_json__i_json_bounded(raw: bytes, status: int | None, pointer: str | None) -> None:
    from gateway.http.problems import Problem
    from gateway.http.validation import load_json
    if status is None:
        load_json(raw)
        return
    with pytest.raises(Problem) as refused:
        load_json(raw)
    assert refused.value.status == status
    if pointer is not None:
        assert [e.pointer for e in refused.value.errors] == [pointer]


def test_json_text__a_stored_nan_goes_out_as_null() -> None:
    """A NaN stored before the edge refused them (SQLite keeps one) is sent as null."""
    from gateway.http.shared import json_text
    text = json_text({"custom_fields": {"x": float("nan"), "y": [float("-inf"), 1.5]}})
    assert _strict(text) == {"custom_fields": {"x": None, "y": [None, 1.5]}}
