from __future__ import annotations

import json

from parsers.json_shape import to_json
from parsers.mail import parse_email

RAW = (
    b"From: =?utf-8?Q?J=C3=BCrgen_M=C3=BCller?= <jm@example.com>\r\n"
    b'To: Support <support@desk.example.com>, "Roe, Jane" <jane@example.org>\r\n'
    b"Cc: ops@example.com\r\n"
    b"Reply-To: helpdesk-replies@example.com\r\n"
    b"Subject: =?utf-8?B?RHJ1Y2tlciBkZWZla3Q=?= [#R-1]\r\n"
    b"Date: Mon, 03 Feb 2025 09:12:00 +0100\r\n"
    b"Message-ID: <abc@example.com>\r\n"
    b"In-Reply-To: <ack-1@desk.example.com>\r\n"
    b"References: <x@example.com>\r\n <ack-1@desk.example.com>\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n\r\n"
    b"<p>Der Drucker ist defekt.</p><blockquote>On Mon, Desk wrote: old</blockquote>"
)


def test_email__headers_and_html_only_body() -> None:
    parsed = parse_email(RAW)
    assert parsed.from_ is not None and parsed.from_.name == "Jürgen Müller"
    assert [a.address for a in parsed.to] == ["support@desk.example.com", "jane@example.org"]
    assert parsed.to[1].name == "Roe, Jane"
    assert parsed.subject == "Drucker defekt [#R-1]"
    assert parsed.references == ("x@example.com", "ack-1@desk.example.com")
    assert parsed.in_reply_to == "ack-1@desk.example.com"
    assert parsed.date is not None and parsed.date.isoformat() == "2025-02-03T09:12:00+01:00"
    assert parsed.text.startswith("Der Drucker ist defekt.")
    assert parsed.new_text == "Der Drucker ist defekt."


def test_email__json_shape_is_stable() -> None:
    shape = to_json(parse_email(RAW))
    assert list(shape) == [
        "message_id",
        "in_reply_to",
        "references",
        "date",
        "from",
        "reply_to",
        "to",
        "cc",
        "subject",
        "text",
        "html",
        "new_text",
        "attachments",
        "auto_reply",
        "bounce",
        "list",
        "defects",
    ]
    assert shape["from"] == {"name": "Jürgen Müller", "address": "jm@example.com"}
    assert shape["reply_to"] == [{"name": "", "address": "helpdesk-replies@example.com"}]
    json.dumps(shape)


def test_email__never_raises_on_garbage() -> None:
    for raw in (b"", b"\x00" * 100, b":\r\n\r\n", b"Content-Type: multipart/mixed\r\n\r\n--"):
        parsed = parse_email(raw)
        assert isinstance(parsed.defects, tuple)


def test_email__broken_boundary_read_as_text_with_defect() -> None:
    raw = b'Content-Type: multipart/mixed; boundary="nope"\r\n\r\nplain words\r\n'
    parsed = parse_email(raw)
    assert "plain words" in parsed.text
    assert any("boundary" in d for d in parsed.defects)


def test_email__missing_close_delimiter_recorded() -> None:
    raw = b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n\r\nhello\r\n'
    parsed = parse_email(raw)
    assert parsed.text.strip() == "hello"
    assert "multipart without close delimiter" in parsed.defects


def test_email__from_without_address_uses_reply_to() -> None:
    raw = b'From: "Someone" <>\r\nReply-To: <real@example.com>\r\n\r\nhi'
    parsed = parse_email(raw)
    assert parsed.from_ is not None and parsed.from_.address == "real@example.com"
