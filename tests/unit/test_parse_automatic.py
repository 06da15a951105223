from __future__ import annotations

import pytest

from parsers.automatic import is_bounce_of_own_mail, is_own_outbound
from parsers.json_shape import to_json
from parsers.mail import parse_email

PLAIN = b"From: Ann <ann@example.com>\r\nSubject: Printer\r\nMessage-ID: <1@example.com>\r\n"


@pytest.mark.parametrize(
    "header",
    [
        b"Auto-Submitted: auto-replied",
        b"Auto-Submitted: auto-generated",
        b"X-Autoreply: yes",
        b"X-Autorespond: Out of office",
        b"Precedence: bulk",
        b"Precedence: junk",
        b"Precedence: auto_reply",
        b"X-Auto-Response-Suppress: All",
    ],
)
def test_automatic__auto_reply_headers(header: bytes) -> None:
    assert parse_email(PLAIN + header + b"\r\n\r\nhello").auto_reply


@pytest.mark.parametrize(
    "subject",
    [
        "Out of Office: Printer",
        "Automatic reply: Printer",
        "Abwesenheitsnotiz",
        "Réponse automatique",
    ],
)
def test_automatic__out_of_office_subjects(subject: str) -> None:
    raw = b"From: a@example.com\r\nSubject: " + subject.encode() + b"\r\n\r\naway"
    assert parse_email(raw).auto_reply


def test_automatic__person_and_auto_submitted_no_are_not_automatic() -> None:
    parsed = parse_email(PLAIN + b"Auto-Submitted: no\r\n\r\nMy printer is broken")
    assert not parsed.auto_reply
    assert parsed.bounce is None
    assert not parsed.list_mail


def test_automatic__list_id() -> None:
    parsed = parse_email(PLAIN + b"List-Id: Users <users.lists.example.com>\r\n\r\nhi")
    assert parsed.list_mail
    assert parsed.list_id == "users.lists.example.com"


DSN = b"""From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: support@desk.example.com
Subject: Undelivered Mail Returned to Sender
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; gone@example.org
Original-Recipient: rfc822;gone@example.org
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 user unknown

--B
Content-Type: text/rfc822-headers

From: support@desk.example.com
To: gone@example.org
Subject: [#R-7] We received your request
Message-ID: <ack-7@desk.example.com>

--B--
"""


def test_automatic__dsn_bounce_details() -> None:
    parsed = parse_email(DSN.replace(b"\n", b"\r\n"))
    bounce = parsed.bounce
    assert bounce is not None
    assert bounce.kind == "dsn"
    assert bounce.permanent
    assert bounce.reporting_mta == "mx.example.net"
    assert bounce.original_message_id == "ack-7@desk.example.com"
    (recipient,) = bounce.recipients
    assert (recipient.address, recipient.action, recipient.status) == (
        "gone@example.org",
        "failed",
        "5.1.1",
    )
    assert parsed.auto_reply
    shape = to_json(parsed)["bounce"]
    assert shape["permanent"] and shape["recipients"][0]["status"] == "5.1.1"
    assert is_bounce_of_own_mail(parsed, "desk.example.com")
    assert not is_bounce_of_own_mail(parsed, "other.example.com")


def test_automatic__delayed_dsn_is_temporary() -> None:
    raw = DSN.replace(b"Action: failed", b"Action: delayed").replace(b"5.1.1", b"4.4.1")
    bounce = parse_email(raw).bounce
    assert bounce is not None and not bounce.permanent


def test_automatic__bounce_with_returned_message_rfc822() -> None:
    raw = DSN.replace(b"Content-Type: text/rfc822-headers", b"Content-Type: message/rfc822")
    bounce = parse_email(raw).bounce
    assert bounce is not None and bounce.original_message_id == "ack-7@desk.example.com"


def test_automatic__free_form_bounce_by_sender_and_subject() -> None:
    raw = (
        b"From: postmaster@example.net\r\nSubject: Mail delivery failed\r\n"
        b"X-Failed-Recipients: gone@example.org\r\n\r\nMessage-ID: <ack-9@desk.example.com>\r\n"
    )
    bounce = parse_email(raw).bounce
    assert bounce is not None and bounce.kind == "heuristic"
    assert [r.address for r in bounce.recipients] == ["gone@example.org"]
    assert bounce.original_message_id == "ack-9@desk.example.com"


def test_automatic__own_outbound_mail_coming_back() -> None:
    parsed = parse_email(
        b"From: support@desk.example.com\r\nMessage-ID: <x1@Desk.Example.com>\r\n\r\n."
    )
    assert is_own_outbound(parsed, "desk.example.com")
    assert not is_own_outbound(parse_email(PLAIN + b"\r\nhi"), "desk.example.com")


def test_automatic__corpus_bounce_has_original_message_id() -> None:
    from tests.corpus import require_corpus

    raw = (require_corpus() / "mime" / "raw" / "mail055.box").read_bytes()
    bounce = parse_email(raw).bounce
    assert bounce is not None and bounce.permanent
    assert bounce.original_message_id is not None


def test_automatic__read_receipt_is_automatic() -> None:
    raw = (
        b"From: a@example.com\r\nSubject: Read: Printer\r\n"
        b"Content-Type: multipart/report; report-type=disposition-notification; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nYour message was read.\r\n--b--\r\n"
    )
    parsed = parse_email(raw)
    assert parsed.auto_reply
    assert parsed.bounce is None
