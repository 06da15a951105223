"""A person's export (right of access) as one zip archive.

    README.txt                      what each file is
    requests.json                   every request and message (schema below)
    requests.schema.json            that JSON Schema (draft 2020-12)
    mails/<REF>-<n>.eml             an email exactly as received
    submissions/<REF>-<n>.json      an API or form submission exactly as received
    attachments/<REF>-<n>-<k>-<name>  an attachment's content

Names inside the archive are built from references and numbers; an
attachment's own name is cut to a safe ASCII tail (no directory, no dot
first), so a hostile name cannot reach outside its folder when unpacked.
"""

from __future__ import annotations

import json
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from sqlalchemy.ext.asyncio import AsyncEngine

from storage.engine import utcnow
from storage.exports import ExportedRequest, raw_input, requests_of
from storage.uploads import read_blob

FORMAT = "intake-export/1"
MAX_NAME = 80

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")

_STRINGS = {"type": ["string", "null"]}
_ADDRESSES = {"type": "array", "items": {"type": "object"}}
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://intake.invalid/schemas/intake-export-1.json",
    "title": "A person's requests and messages (intake export)",
    "type": "object",
    "required": ["format", "requester", "exported_at", "requests"],
    "additionalProperties": False,
    "properties": {
        "format": {"const": FORMAT},
        "requester": {"type": "string", "description": "the address the export is for"},
        "exported_at": {"type": "string", "format": "date-time"},
        "requests": {"type": "array", "items": {"$ref": "#/$defs/request"}},
    },
    "$defs": {
        "request": {
            "type": "object",
            "required": ["reference", "role", "status", "queue", "channel", "subject",
                         "created_at", "messages"],
            "additionalProperties": False,
            "properties": {
                "reference": {"type": "string"},
                "role": {"enum": ["requester", "participant"],
                         "description": "requester: they opened it; participant: they "
                                        "wrote on someone else's (only their messages)"},
                "status": {"type": "string"}, "queue": {"type": "string"},
                "channel": {"type": "string"}, "priority": _STRINGS, "type": _STRINGS,
                "category": _STRINGS, "subject": {"type": "string"},
                "requester_email": _STRINGS, "requester_name": _STRINGS,
                "custom_fields": {"type": ["object", "null"]},
                "tags": {"type": ["array", "null"]},
                "created_at": {"type": "string"}, "updated_at": _STRINGS,
                "resolved_at": _STRINGS,
                "messages": {"type": "array", "items": {"$ref": "#/$defs/message"}},
            },
        },
        "message": {
            "type": "object",
            "required": ["direction", "created_at", "subject", "text", "original",
                         "attachments"],
            "additionalProperties": False,
            "properties": {
                "direction": {"enum": ["in", "out"],
                              "description": "in: theirs; out: ours to them"},
                "created_at": {"type": "string"}, "message_id": _STRINGS,
                "in_reply_to": _STRINGS, "from_address": _STRINGS, "from_name": _STRINGS,
                "to": _ADDRESSES, "cc": _ADDRESSES, "subject": {"type": "string"},
                "text": {"type": "string"}, "html": _STRINGS,
                "original": {"type": ["string", "null"],
                             "description": "the archive file with the bytes as received"},
                "attachments": {"type": "array", "items": {"$ref": "#/$defs/attachment"}},
            },
        },
        "attachment": {
            "type": "object",
            "required": ["filename", "content_type", "size", "sha256", "file"],
            "additionalProperties": False,
            "properties": {
                "filename": _STRINGS, "content_type": {"type": "string"},
                "size": {"type": "integer", "minimum": 0},
                "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "file": {"type": ["string", "null"],
                         "description": "the archive file with the content"},
            },
        },
    },
}

README = """\
Your data held by the service desk (intake export, {format})
Made {when} for {address}.

README.txt
    This file.
requests.json
    Every request you opened (role "requester": with your messages and the
    replies we sent you) and every request of someone else's you wrote on
    (role "participant": with your messages only). Times are UTC (ISO 8601).
requests.schema.json
    The JSON Schema (draft 2020-12) that requests.json follows.
mails/<reference>-<n>.eml
    Each email you sent us, byte for byte as we received it.
submissions/<reference>-<n>.json
    Each web form or API submission, byte for byte as we received it.
attachments/<reference>-<n>-<k>-<name>
    The files attached to your messages (<k>: their order in message <n>).
"""


@dataclass(frozen=True, slots=True)
class ExportSummary:
    requests: int
    messages: int
    files: int


def safe_name(name: str | None) -> str:
    """An attachment's name as a file name inside the archive: ASCII letters,
    digits, dot, dash and underscore; no directory part, no leading dot."""
    base = re.split(r"[\\/]", name or "")[-1]
    ascii_name = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode()
    cleaned = _SAFE.sub("_", ascii_name).lstrip("._")
    return cleaned[-MAX_NAME:] or "file"


def _stamp(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


async def write_archive(engine: AsyncEngine, address: str, target: IO[bytes]) -> ExportSummary:
    """Write the export of `address` into `target` (a binary file)."""
    address = address.strip().lower()
    document: dict[str, Any] = {"format": FORMAT, "requester": address,
                                "exported_at": utcnow().isoformat(), "requests": []}
    counts = {"requests": 0, "messages": 0, "files": 0}
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        async for request in requests_of(engine, address):
            document["requests"].append(await _request(engine, archive, request, counts))
        archive.writestr("requests.json", json.dumps(document, indent=2, ensure_ascii=False))
        archive.writestr("requests.schema.json", json.dumps(SCHEMA, indent=2))
        archive.writestr("README.txt", README.format(format=FORMAT, address=address,
                                                     when=document["exported_at"]))
    return ExportSummary(counts["requests"], counts["messages"], counts["files"])


async def _request(engine: AsyncEngine, archive: zipfile.ZipFile, request: ExportedRequest,
                   counts: dict[str, int]) -> dict[str, Any]:
    row = request.row
    reference = _SAFE.sub("_", row["reference"])
    counts["requests"] += 1
    out: dict[str, Any] = {k: _stamp(v) for k, v in row.items() if k != "id"}
    out["role"] = request.role
    out["messages"] = []
    for n, message in enumerate(request.messages, start=1):
        counts["messages"] += 1
        m = message.row
        original = None
        if m["inbox_item_id"] is not None:
            found = await raw_input(engine, m["inbox_item_id"])
            if found is not None:
                channel, raw = found
                folder, suffix = (("mails", "eml") if channel in ("smtp", "lmtp", "imap")
                                  else ("submissions", "json"))
                original = f"{folder}/{reference}-{n}.{suffix}"
                archive.writestr(original, raw)
                counts["files"] += 1
        files = []
        for k, attachment in enumerate(message.attachments, start=1):
            name = f"attachments/{reference}-{n}-{k}-{safe_name(attachment['filename'])}"
            stored = False
            with archive.open(name, "w", force_zip64=True) as sink:
                async for piece in read_blob(engine, attachment["sha256"]):
                    sink.write(piece)
                    stored = True
            counts["files"] += 1
            files.append({"filename": attachment["filename"],
                          "content_type": attachment["content_type"],
                          "size": attachment["size"], "sha256": attachment["sha256"],
                          "file": name if stored or attachment["size"] == 0 else None})
        out["messages"].append({
            **{k: _stamp(v) for k, v in m.items()
               if k not in ("id", "request_id", "inbox_item_id")},
            "original": original, "attachments": files})
    return out
