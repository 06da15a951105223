"""Recipes for the huge adversarial inputs, so the repository stays small.

Each function takes the sizes from the table in cases.toml and returns bytes.
"""

from __future__ import annotations

import base64
import struct


def deep_multipart(depth: int) -> bytes:
    """``depth`` multiparts, each the only part of the one above."""
    head = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(depth)
    )
    return b"Subject: deep\r\n" + head + b"Content-Type: text/plain\r\n\r\nbottom\r\n"


def deep_rfc822(depth: int) -> bytes:
    """``depth`` messages, each attached to the one above as message/rfc822."""
    return (
        b"Subject: nested messages\r\n"
        + b"Content-Type: message/rfc822\r\n\r\nSubject: level\r\n" * depth
        + b"\r\nbottom\r\n"
    )


def many_parts(parts: int) -> bytes:
    body = b"--b\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n" * parts
    return (
        b"Subject: many parts\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        + body
        + b"--b--\r\n"
    )


def many_parameters(parameters: int) -> bytes:
    params = b"; ".join(b'p%d="v%d"' % (i, i) for i in range(parameters))
    return b"Subject: many parameters\r\nContent-Type: text/plain; " + params + b"\r\n\r\nbody\r\n"


def many_rfc2231_sections(sections: int) -> bytes:
    params = b";\r\n ".join(b"filename*%d*=a%%41" % i for i in range(sections))
    return (
        b"Subject: sections\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: application/octet-stream; " + params + b"\r\n\r\nx\r\n--b--\r\n"
    )


def many_addresses(addresses: int) -> bytes:
    to = b",\r\n ".join(b'"User %d" <user%d@example.com>' % (i, i) for i in range(addresses))
    return b"Subject: many addresses\r\nFrom: a@example.com\r\nTo: " + to + b"\r\n\r\nbody\r\n"


def nested_comments(depth: int) -> bytes:
    return b"Subject: comments\r\nFrom: " + b"(" * depth + b"a@example.com\r\n\r\nbody\r\n"


def many_fields(fields: int) -> bytes:
    return b"Subject: fields\r\n" + b"X-Filler: value\r\n" * fields + b"\r\nbody\r\n"


def long_line(megabytes: int) -> bytes:
    return b"Subject: " + b"A" * (megabytes * 1024 * 1024)


def many_encoded_words(words: int) -> bytes:
    return b"Subject: " + b"=?utf-8?B?w6Q=?= " * words + b"\r\n\r\nbody\r\n"


def big_quoted_reply(megabytes: int) -> bytes:
    quote = b"> quoted history line\r\n" * (megabytes * 1024 * 1024 // 23)
    return b"Subject: big\r\n\r\nNew text.\r\n\r\nOn Mon, A <a@example.com> wrote:\r\n" + quote


def big_attachment(megabytes: int) -> bytes:
    data = base64.encodebytes(b"\x00\x01" * (megabytes * 1024 * 1024 // 2))
    return (
        b"Subject: big file\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee file\r\n--b\r\n"
        b"Content-Type: application/octet-stream; name=big.bin\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + data + b"--b--\r\n"
    )


def big_html(megabytes: int) -> bytes:
    html = b"<div><p>hello <b>world</b></p></div>" * (megabytes * 1024 * 1024 // 37)
    return b"Subject: big html\r\nContent-Type: text/html\r\n\r\n" + html


def many_uuencode_blocks(blocks: int) -> bytes:
    block = b"begin 644 f.txt\r\n#86)C\r\n`\r\nend\r\n"
    return b"Subject: uu\r\n\r\ntext\r\n" + block * blocks


def tnef_of_tiny_attributes(attributes: int) -> bytes:
    """A winmail.dat of many empty attributes (tnefparse is quadratic in their number)."""
    header = struct.pack("<IH", 0x223E9F78, 1)
    tiny = bytes([1]) + struct.pack("<HHI", 0x8004, 1, 0) + b"\x00\x00"
    data = base64.encodebytes(header + tiny * attributes)
    return (
        b"Subject: tnef\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b'Content-Type: application/ms-tnef; name="winmail.dat"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + data + b"--b--\r\n"
    )
