from __future__ import annotations

import base64
import hashlib
import struct

from parsers.mail import parse_email


def _mixed(*parts: bytes) -> bytes:
    body = b"".join(b"--XYZ\r\n" + part + b"\r\n" for part in parts)
    return (
        b"From: a@example.com\r\nSubject: files\r\n"
        b'Content-Type: multipart/mixed; boundary="XYZ"\r\n\r\n' + body + b"--XYZ--\r\n"
    )


def test_attachments__rfc2231_continued_utf8_name() -> None:
    raw = _mixed(
        b"Content-Type: text/plain\r\n\r\nsee file",
        b"Content-Type: application/pdf\r\nContent-Disposition: attachment;\r\n"
        b" filename*0*=utf-8''Erkl%C3%A4;\r\n filename*1*=rung%20%E2%82%AC.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(b"%PDF-1.4"),
    )
    (attachment,) = parse_email(raw).attachments
    assert attachment.filename == "Erklärung €.pdf"
    assert attachment.sha256 == hashlib.sha256(b"%PDF-1.4").hexdigest()
    assert attachment.size == 8
    assert not attachment.inline


def test_attachments__rfc2047_name_and_inline_content_id() -> None:
    raw = _mixed(
        b"Content-Type: text/html\r\n\r\n<img src=cid:logo@x>",
        b'Content-Type: image/png; name="=?utf-8?Q?Gr=C3=BC=C3=9Fe.png?="\r\n'
        b"Content-ID: <logo@x>\r\nContent-Disposition: inline\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(b"\x89PNG"),
    )
    (attachment,) = parse_email(raw).attachments
    assert attachment.filename == "Grüße.png"
    assert attachment.content_id == "logo@x"
    assert attachment.inline


def test_attachments__uuencoded_in_text_body() -> None:
    encoded = b"begin 644 hello.txt\r\n" + _uu(b"Hello, world!\n") + b"`\r\nend\r\n"
    raw = b"Subject: uu\r\n\r\nSee attached.\r\n\r\n" + encoded
    parsed = parse_email(raw)
    (attachment,) = parsed.attachments
    assert attachment.filename == "hello.txt"
    assert attachment.content == b"Hello, world!\n"
    assert "begin 644" not in parsed.text
    assert parsed.text.strip() == "See attached."


def test_attachments__x_uuencode_transfer_encoding() -> None:
    raw = _mixed(
        b"Content-Type: application/msword; name=notes.doc\r\n"
        b"Content-Transfer-Encoding: x-uuencode\r\n\r\n"
        b"begin 600 notes.doc\r\n" + _uu(b"twelve bytes") + b"`\r\nend",
    )
    (attachment,) = parse_email(raw).attachments
    assert attachment.content == b"twelve bytes"


def test_attachments__tnef_winmail_dat_unpacked() -> None:
    raw = _mixed(
        b"Content-Type: text/plain\r\n\r\nsee attached",
        b'Content-Type: application/ms-tnef; name="winmail.dat"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(_tnef()),
    )
    parsed = parse_email(raw)
    assert [(a.filename, a.content) for a in parsed.attachments] == [
        ("report.txt", b"Quarterly numbers\n")
    ]


def test_attachments__corrupt_tnef_kept_with_defect() -> None:
    raw = _mixed(b'Content-Type: application/ms-tnef; name="winmail.dat"\r\n\r\nnot tnef at all')
    parsed = parse_email(raw)
    assert [a.filename for a in parsed.attachments] == ["winmail.dat"]
    assert any("TNEF" in d for d in parsed.defects)


def test_attachments__nested_message_is_kept_and_readable() -> None:
    inner = b"From: b@example.com\r\nSubject: inner\r\n\r\nInner body\r\n"
    raw = _mixed(
        b"Content-Type: text/plain\r\n\r\nfwd", b"Content-Type: message/rfc822\r\n\r\n" + inner
    )
    (attachment,) = parse_email(raw).attachments
    assert attachment.content_type == "message/rfc822"
    assert attachment.filename == "inner.eml"
    assert attachment.message is not None
    assert attachment.message.subject == "inner"
    assert attachment.message.text.strip() == "Inner body"


def test_attachments__unnamed_part_gets_a_name_from_its_type() -> None:
    raw = _mixed(b"Content-Type: image/jpeg\r\nContent-Transfer-Encoding: base64\r\n\r\n/9j/")
    (attachment,) = parse_email(raw).attachments
    assert attachment.filename == "image.jpg"


def _uu(data: bytes) -> bytes:
    import binascii

    return b"".join(binascii.b2a_uu(data[i : i + 45]) for i in range(0, len(data), 45)).replace(
        b"\n", b"\r\n"
    )


def _tnef() -> bytes:
    """A minimal TNEF stream: version, OEM code page, one attachment (MS-OXTNEF 2.1)."""

    def attribute(level: int, name: int, kind: int, data: bytes) -> bytes:
        checksum = struct.pack("<H", sum(data) & 0xFFFF)
        return bytes([level]) + struct.pack("<HHI", name, kind, len(data)) + data + checksum

    return (
        struct.pack("<IH", 0x223E9F78, 1)
        + attribute(1, 0x9006, 0x8, struct.pack("<I", 0x10000))
        + attribute(1, 0x9007, 0x8, struct.pack("<II", 1252, 0))
        + attribute(2, 0x9002, 0x6, bytes(14))
        + attribute(2, 0x8010, 0x1, b"report.txt\x00")
        + attribute(2, 0x800F, 0x6, b"Quarterly numbers\n")
    )
