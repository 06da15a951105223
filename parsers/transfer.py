"""Undo Content-Transfer-Encoding (RFC 2045 section 6), leniently."""

from __future__ import annotations

import binascii
import re

_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
_UU_LINE_BREAK = re.compile(rb"\r?\n|\r")


def decode_transfer(body: bytes, encoding: str) -> tuple[bytes, str | None]:
    """Decoded bytes and a defect when the encoding was bad or unknown.

    7bit and 8bit bodies carry SMTP's CRLF line ends, which belong to the
    transport, not the content: they become LF. Quoted-printable line breaks
    stand for the canonical CRLF (RFC 2045 6.7) and are kept, as are base64
    and binary content, byte for byte.
    """
    if encoding in ("", "7bit", "8bit", "7-bit", "8-bit"):
        return body.replace(b"\r\n", b"\n"), None
    if encoding == "binary":
        return body, None
    if encoding == "base64":
        return decode_base64(body)
    if encoding == "quoted-printable":
        return binascii.a2b_qp(body), None
    if encoding in ("x-uuencode", "uuencode", "x-uue", "uue"):
        decoded = decode_uu_body(body)
        if decoded is None:
            return body, "bad uuencoded body kept as is"
        return decoded, None
    return body, f"unknown transfer encoding {encoding!r}; body kept as is"


def decode_base64(body: bytes) -> tuple[bytes, str | None]:
    try:
        return binascii.a2b_base64(body), None
    except binascii.Error:
        pass
    # Stray or missing padding, or garbage: keep what decodes.
    clean = _NOT_BASE64.sub(b"", body)
    if len(clean) % 4 == 1:
        clean = clean[:-1]
    try:
        return binascii.a2b_base64(clean + b"=" * (-len(clean) % 4)), "bad base64 repaired"
    except binascii.Error:
        return b"", "undecodable base64 dropped"


def decode_uu_lines(lines: list[bytes]) -> bytes:
    """Lines between "begin" and "end"; a short or padded line decodes as far as it goes."""
    out = []
    for line in lines:
        if not line.strip() or line.strip() == b"`":
            continue
        try:
            out.append(binascii.a2b_uu(line))
        except binascii.Error:
            # Encoders that drop trailing spaces: decode the length the line claims.
            length = ((line[0] - 32) & 63) * 4 // 3 + 3
            length = (length // 4) * 4 + 1
            try:
                out.append(binascii.a2b_uu(line[:length]))
            except binascii.Error:
                continue
    return b"".join(out)


def decode_uu_body(body: bytes) -> bytes | None:
    """A whole x-uuencode body: "begin mode name", lines, "end"."""
    lines = _UU_LINE_BREAK.split(body)
    for index, line in enumerate(lines):
        if line.startswith(b"begin "):
            rest = lines[index + 1 :]
            end = next((i for i, candidate in enumerate(rest) if candidate.strip() == b"end"), None)
            return decode_uu_lines(rest[:end])
    # Some mailers send the encoded lines alone, without "begin" and "end".
    decoded = decode_uu_lines([line for line in lines if line.strip() != b"end"])
    return decoded or None
