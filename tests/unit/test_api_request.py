from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from parsers.api_request import ApiRequest, parse_api_request


def test_api_request__valid() -> None:
    body = {"requester": {"email": "A@B.example", "name": "A"}, "subject": " Two  words ",
            "body": "text", "custom_fields": {"n": 1, "ok": True}}
    parsed = parse_api_request(json.dumps(body).encode())
    assert parsed == ApiRequest("a@b.example", "A", "Two words", "text", {"n": 1, "ok": True})


def test_api_request__all_problems_reported_at_once() -> None:
    problems = parse_api_request(b'{"requester": {"email": 1}, "subject": "", "extra": 1}')
    assert isinstance(problems, list)
    assert {p.pointer for p in problems} == {"/extra", "/requester/email", "/subject", "/body"}


def test_api_request__not_an_object() -> None:
    for body in (b"[]", b'"x"', b"\xff", b""):
        problems = parse_api_request(body)
        assert isinstance(problems, list) and problems[0].pointer == ""


def test_api_request__limits() -> None:
    body = {"requester": {"email": "a@b.example"}, "subject": "s" * 999, "body": "b"}
    problems = parse_api_request(json.dumps(body).encode())
    assert isinstance(problems, list) and problems[0].pointer == "/subject"


@given(st.binary(max_size=300))
def test_api_request__never_raises(body: bytes) -> None:
    parse_api_request(body)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=20))
def test_api_request__never_raises_on_any_json(value: object) -> None:
    parse_api_request(json.dumps(value).encode())
