"""Attachment records: content hash, the part's name or a sensible fallback, inline or not."""

from __future__ import annotations

import hashlib
import re

from parsers.limits import MAX_FIELD_BYTES
from parsers.mime_tree import Entity
from parsers.records import Attachment, ParsedEmail

# A fixed table, not the mimetypes module: that one reads the host's mime.types files.
_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/pjpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/bmp": ".bmp",
    "image/tiff": ".tif",
    "image/webp": ".webp",
    "image/svg+xml": ".svg",
    "image/heic": ".heic",
    "text/plain": ".txt",
    "text/html": ".html",
    "text/calendar": ".ics",
    "text/csv": ".csv",
    "text/vcard": ".vcf",
    "text/x-vcard": ".vcf",
    "application/pdf": ".pdf",
    "application/zip": ".zip",
    "application/json": ".json",
    "application/xml": ".xml",
    "application/msword": ".doc",
    "application/vnd.ms-excel": ".xls",
    "application/pkcs7-signature": ".p7s",
    "application/x-pkcs7-signature": ".p7s",
    "application/pgp-signature": ".asc",
    "audio/mpeg": ".mp3",
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
}
_UNSAFE_NAME = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


def fallback_name(ctype: str, content_id: str | None, nested: ParsedEmail | None) -> str:
    """A name for an unnamed part, so agents and storage always have one to show."""
    if nested is not None:
        title = _UNSAFE_NAME.sub("_", nested.subject).strip(" ._")[:120]
        return f"{title or 'message'}.eml"
    extension = _EXTENSIONS.get(ctype)
    if extension:
        return f"{ctype.split('/')[0]}{extension}"
    if content_id:
        return _UNSAFE_NAME.sub("_", content_id.split("@")[0])[:120] or "file"
    return "file"


def make_attachment(
    data: bytes,
    filename: str | None,
    ctype: str,
    content_id: str | None,
    inline: bool,
    message: ParsedEmail | None = None,
) -> Attachment:
    return Attachment(
        filename=filename,
        content_type=ctype,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        content_id=content_id,
        inline=inline,
        content=data,
        message=message,
    )


def content_id_of(entity: Entity) -> str | None:
    """Content-ID without angle brackets (RFC 2392), as HTML refers to it by cid:."""
    value = entity.block.get("content-id")
    if not value:
        return None
    text = value[:MAX_FIELD_BYTES].decode("utf-8", errors="replace").strip()
    return text.strip("<>").strip() or None
