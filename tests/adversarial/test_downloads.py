"""Attachments with hostile stored names and types download, on both databases.

Whatever name a sender gave a file (CR/LF, quotes, path separators, `..`, control
and bidi characters, non-ASCII, over-long), every download answers 200 with the
exact bytes and a Content-Disposition built safely (RFC 6266: an ASCII fallback
`filename` and the UTF-8 `filename*` of RFC 8187), offering a plain base name; the
original is kept in storage and in the API's JSON.
"""

from __future__ import annotations

import hashlib
import re
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any
from urllib.parse import unquote

import pytest
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.http.downloads import content_disposition, media_type
from gateway.http.shared import WRITER
from gateway.pipeline.worker import Pipeline
from storage.engine import insert_new
from storage.inbox import NewItem
from storage.models import attachments, blobs, messages, requests
from tests.helpers import AppClient, auth

NAMES = [
    "report\r\nX-Injected: 1.pdf",
    "a\nb.txt",
    "a\rb.txt",
    "file.txt\r\n\r\n<html>split</html>",
    '"; filename="evil.exe',
    'quote".txt',
    "back\\slash.txt",
    "../../etc/passwd",
    "..\\..\\windows\\system32\\cmd.exe",
    "/absolute/path.txt",
    "C:\\Users\\x\\a.txt",
    "..",
    ".",
    "...",
    "",
    "   ",
    ".bashrc",
    "trailing dots...",
    "\x00nul.txt",
    "tab\there.txt",
    "\x1b[31mred.txt",
    "\x7fdel.txt",
    "%2e%2e%2fpasswd",
    "naïve résumé.pdf",
    "日本語の資料.txt",
    "\u202egnp.exe",
    "line\u2028separator\u0085.txt",
    "emoji 😀.png",
    "a;b,c=d.txt",
    "x" * 490 + ".pdf",
    "ü" * 250,
]
TYPES = [
    "text/html\r\nX-Evil: 1",
    'image/png; name="a\r\nb"',
    "ä/ö",
    "",
    "notatype",
    "*/*",
    "text/html; charset=utf-8",
    "application/" + "x" * 185,
]
# RFC 6266 with RFC 8187's ext-value; the fallback is a quoted-string of safe ASCII.
DISPOSITION = re.compile(
    r'^attachment; filename="([A-Za-z0-9 !#$&+,\-.=@^_`{}~();\[\]]+)"; '
    r"filename\*=UTF-8''([A-Za-z0-9!#$&+\-.^_`|~%]+)$")
TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
MEDIA_TYPE = re.compile(rf"^{TOKEN}/{TOKEN}(; ?{TOKEN}=({TOKEN}|\"[^\"\\\x00-\x1f\x7f]*\"))*$")


def _check_disposition(value: str, stored: str | None) -> tuple[str, str]:
    match = DISPOSITION.match(value)
    assert match, value
    plain, encoded = match.group(1), unquote(match.group(2), errors="strict")
    for name in (plain, encoded):
        assert "/" not in name and "\\" not in name and ".." not in name, (stored, name)
        assert not name.startswith(".") and name == name.strip(), (stored, name)
        assert not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in name), (stored, name)
        assert not any(c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029"
                       for c in name), (stored, name)
        assert 0 < len(name) <= 255
    return plain, encoded


@pytest.mark.parametrize("name", NAMES + [None])
def test_downloads__content_disposition_is_safe_for_any_name(name: str | None) -> None:
    _check_disposition(content_disposition(name, fallback="attachment-7"), name)


@pytest.mark.parametrize(("name", "plain", "encoded"), [
    ("../../etc/passwd", "passwd", "passwd"),
    ("..\\..\\windows\\system32\\cmd.exe", "cmd.exe", "cmd.exe"),
    ("C:\\Users\\x\\a.txt", "a.txt", "a.txt"),
    ("report\r\nX-Injected: 1.pdf", "reportX-Injected_ 1.pdf", "reportX-Injected: 1.pdf"),
    ("naïve résumé.pdf", "naive resume.pdf", "naïve résumé.pdf"),
    ("日本語の資料.txt", "attachment-7.txt", "日本語の資料.txt"),
    ("\u202egnp.exe", "gnp.exe", "gnp.exe"),
    ("..", "attachment-7", "attachment-7"),
    (None, "attachment-7", "attachment-7"),
    ("photo.png", "photo.png", "photo.png"),
    ("a\ud800b.txt", "a_b.txt", "a\ufffdb.txt"),
])
def test_downloads__offers_a_plain_base_name(name: str | None, plain: str,
                                            encoded: str) -> None:
    assert _check_disposition(content_disposition(name, fallback="attachment-7"),
                              name) == (plain, encoded)


@pytest.mark.parametrize("kind", TYPES)
def test_downloads__media_type_is_one_header_value(kind: str) -> None:
    value = media_type(kind)
    assert MEDIA_TYPE.match(value), value
    assert value in (kind, "application/octet-stream")


async def _request_with_message(http: AppClient, token: str, pipeline: Pipeline) -> str:
    body = {"requester": {"email": "ann@example.com"}, "subject": "files", "body": "x"}
    async with http.post("/v1/requests", json=body, headers=auth(token)) as resp:
        assert resp.status == 201
        reference = str((await resp.json())["reference"])
    await pipeline.drain()
    return reference


async def _store_attachments(engine: AsyncEngine, reference: str,
                             files: list[tuple[str | None, str, bytes]]) -> list[int]:
    """Attachments stored as a parser may have stored them, names and types verbatim."""
    ids = []
    async with engine.begin() as conn:
        message_id = (await conn.execute(
            select(messages.c.id).join(requests, requests.c.id == messages.c.request_id)
            .where(requests.c.reference == reference))).scalars().first()
        for name, kind, content in files:
            sha = hashlib.sha256(content).hexdigest()
            await conn.execute(insert_new(conn, blobs), {"sha256": sha, "size": len(content),
                                                         "content": content})
            row = await conn.execute(attachments.insert().returning(attachments.c.id), {
                "message_id": message_id, "sha256": sha, "filename": name,
                "content_type": kind, "size": len(content), "content_id": None,
                "inline": False})
            ids.append(row.scalar_one())
    return ids


async def test_downloads__every_stored_name_downloads(
        app_client: AppClient, engine: AsyncEngine, admin_token: str,
        pipeline: Pipeline) -> None:
    ref = await _request_with_message(app_client, admin_token, pipeline)
    # PostgreSQL text cannot hold NUL (so no such name is stored there).
    names: list[str | None] = [n for n in [*NAMES, None] if engine.dialect.name == "sqlite"
                               or n is None or "\x00" not in n]
    files = [(name, TYPES[i % len(TYPES)], f"content {i}".encode())
             for i, name in enumerate(names)]
    ids = await _store_attachments(engine, ref, files)
    failures = []
    for attachment_id, (name, kind, content) in zip(ids, files, strict=True):
        async with app_client.get(f"/v1/requests/{ref}/attachments/{attachment_id}",
                                  headers=auth(admin_token)) as resp:
            if resp.status != 200:
                failures.append(f"{name!r}: {resp.status}")
                continue
            assert await resp.read() == content
            _check_disposition(resp.headers["Content-Disposition"], name)
            assert resp.headers["Content-Type"] == media_type(kind)
            assert MEDIA_TYPE.match(resp.headers["Content-Type"]), resp.headers["Content-Type"]
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            assert resp.headers["Content-Security-Policy"] == "sandbox"
            assert "X-Injected" not in resp.headers and "X-Evil" not in resp.headers
    assert failures == []
    # The original names are kept, in storage and in the API's JSON.
    async with app_client.get(f"/v1/requests/{ref}", headers=auth(admin_token)) as resp:
        listed = {a["id"]: a for m in (await resp.json())["messages"]
                  for a in m["attachments"]}
    assert [listed[i]["filename"] for i in ids] == names


def _mail_with(filename_param: str, content: bytes) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Ann <ann@example.com>"
    msg["To"] = "support@localhost"
    msg["Subject"] = "a file"
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg.set_content("see the file")
    msg.add_attachment(content, maintype="application", subtype="pdf", filename="x.pdf")
    raw = msg.as_bytes()
    # The name as a sender's client may write it (RFC 2231 escapes carry any byte).
    return raw.replace(b'filename="x.pdf"', filename_param.encode())


@pytest.mark.parametrize("param", [
    "filename*=utf-8''report%0D%0AX-Injected%3A%201.pdf",
    "filename*=utf-8''..%2F..%2Fetc%2Fpasswd",
    'filename="..\\\\..\\\\boot.ini"',
    "filename*=utf-8''%22%3B%20filename%3D%22evil.exe",
])
async def test_downloads__names_from_mail_download(
        app: web.Application, app_client: AppClient, engine: AsyncEngine, admin_token: str,
        pipeline: Pipeline, param: str) -> None:
    content = b"%PDF-1.4 hostile name"
    accepted = await app[WRITER].submit(NewItem("smtp", _mail_with(param, content), {
        "mail_from": "ann@example.com", "rcpt_tos": ["support@localhost"],
        "peer": ["127.0.0.1", 1], "helo": "client.example"}))
    await pipeline.drain()
    async with app_client.get(f"/v1/requests/{accepted.reference}",
                              headers=auth(admin_token)) as resp:
        request: dict[str, Any] = await resp.json()
    [attachment] = [a for m in request["messages"] for a in m["attachments"]]
    async with app_client.get(f"/v1/requests/{accepted.reference}/attachments/"
                              f"{attachment['id']}", headers=auth(admin_token)) as resp:
        assert resp.status == 200
        assert await resp.read() == content
        _check_disposition(resp.headers["Content-Disposition"], attachment["filename"])
