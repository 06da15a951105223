"""The problems middleware: the one place HTTP errors become problem documents."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from domain.errors import Conflict, Unavailable
from gateway.http.form_post import Refused
from gateway.http.problems import RETRY_AFTER_SECONDS, Problem, problems_middleware
from gateway.http.validation import json_object
from parsers.api_request import FieldProblem

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
PROBLEM = "application/problem+json"


def _raising(exc: BaseException) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        raise exc
    return handler


async def _echo_body(request: web.Request) -> web.Response:
    return web.json_response(await json_object(request))


@pytest.fixture
async def client(aiohttp_client: Client) -> TestClient[Any, Any]:
    app = web.Application(middlewares=[problems_middleware])
    app.router.add_get("/problem", _raising(Problem(
        409, "it clashes", errors=[FieldProblem("/a", "is wrong")],
        headers={"Retry-After": "1"})))
    app.router.add_get("/temporary", _raising(Unavailable("database down")))
    app.router.add_get("/conflict", _raising(Conflict("a permanent error of ours")))
    app.router.add_get("/bug", _raising(RuntimeError("boom")))
    app.router.add_get("/refused", _raising(Refused(
        413, "too_large", "a.png is too large", [FieldProblem("/files", "a.png is too large")])))
    app.router.add_post("/body", _echo_body)
    return await aiohttp_client(app)


async def test_problems__problem_becomes_its_document(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/problem")
    assert (resp.status, resp.content_type) == (409, PROBLEM)
    assert resp.headers["Retry-After"] == "1"
    assert await resp.json() == {"type": "about:blank", "title": "Conflict", "status": 409,
                                 "detail": "it clashes",
                                 "errors": [{"pointer": "/a", "detail": "is wrong"}]}


async def test_problems__temporary_error_is_503_with_retry_after(
        client: TestClient[Any, Any]) -> None:
    resp = await client.get("/temporary")
    assert (resp.status, resp.content_type) == (503, PROBLEM)
    assert resp.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert (await resp.json())["detail"] == "storage is temporarily unavailable"


async def test_problems__anything_else_is_500_and_logged(
        client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="intake.http"):
        resp = await client.get("/bug")
    assert (resp.status, resp.content_type) == (500, PROBLEM)
    assert await resp.json() == {"type": "about:blank", "title": "Internal Server Error",
                                 "status": 500}
    assert "unhandled error on GET /bug" in caplog.text


async def test_problems__permanent_error_is_about_the_input(
        client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture) -> None:
    """A permanent GatewayError says the same input would fail again: a 4xx,
    logged with its own text, which the client does not see."""
    with caplog.at_level(logging.WARNING, logger="intake.http"):
        resp = await client.get("/conflict")
    assert (resp.status, resp.content_type) == (409, PROBLEM)
    assert await resp.json() == {"type": "about:blank", "title": "Conflict", "status": 409,
                                 "detail": "the input conflicts with what is stored"}
    assert "a permanent error of ours" in caplog.text
    assert "unhandled error" not in caplog.text


async def test_problems__aiohttp_answers_become_documents(
        client: TestClient[Any, Any]) -> None:
    resp = await client.get("/nowhere")
    assert (resp.status, resp.content_type) == (404, PROBLEM)
    resp = await client.delete("/problem")
    assert (resp.status, resp.content_type) == (405, PROBLEM)
    assert "GET" in resp.headers["Allow"]


async def test_problems__nul_in_the_url_is_400(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/problem", params={"q": "a\x00b"})
    assert resp.status == 400
    assert (await resp.json())["detail"] == "NUL characters are not allowed in the URL"


async def test_problems__refused_form_post_carries_its_reason(
        client: TestClient[Any, Any]) -> None:
    resp = await client.get("/refused")
    assert (resp.status, resp.content_type) == (413, PROBLEM)
    assert await resp.json() == {
        "type": "about:blank", "title": "Content Too Large", "status": 413,
        "detail": "a.png is too large", "reason": "too_large",
        "errors": [{"pointer": "/files", "detail": "a.png is too large"}]}


@pytest.mark.parametrize(("body", "status", "detail"), [
    (b"{not json", 400, "body is not valid JSON"),
    (b"[1]", 422, "body must be a JSON object"),
    (b'{"a": "x\\u0000"}', 422, "NUL characters are not allowed"),
])
async def test_problems__json_body_refused(client: TestClient[Any, Any], body: bytes,
                                           status: int, detail: str) -> None:
    resp = await client.post("/body", data=body, headers={"Content-Type": "application/json"})
    assert (resp.status, resp.content_type) == (status, PROBLEM)
    assert (await resp.json())["detail"].startswith(detail)


async def test_problems__no_body_reads_as_an_empty_object(
        client: TestClient[Any, Any]) -> None:
    resp = await client.post("/body")
    assert (resp.status, await resp.json()) == (200, {})
