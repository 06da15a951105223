from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from parsers.minimal import parse_minimal


def test_minimal__fields() -> None:
    raw = (b"From: =?utf-8?q?J=C3=BCrgen?= <JU@Example.com>\r\nTo: a@x, B <b@x>\r\n"
           b"Subject: =?utf-8?b?w4RyZ2Vy?=\r\nMessage-ID: <1@x>\r\nIn-Reply-To: <0@x>\r\n"
           b"References: <a@x> <0@x>\r\n\r\nHallo\r\n")
    parsed = parse_minimal(raw)
    assert parsed.subject == "\u00c4rger"
    assert (parsed.from_name, parsed.from_address) == ("J\u00fcrgen", "ju@example.com")
    assert parsed.to == [("", "a@x"), ("B", "b@x")]
    assert (parsed.message_id, parsed.in_reply_to) == ("<1@x>", "<0@x>")
    assert parsed.references == ["<a@x>", "<0@x>"]
    assert parsed.text.strip() == "Hallo"


def test_minimal__html_only_mail_has_text() -> None:
    raw = b"Content-Type: text/html\r\n\r\n<p>Hi</p>\r\n"
    assert "Hi" in parse_minimal(raw).text


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_minimal__never_raises(raw: bytes) -> None:
    parse_minimal(raw)
