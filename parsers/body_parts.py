"""Walk the MIME tree: body text and HTML on one side, attachments on the other."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from parsers.attachments import content_id_of, fallback_name, make_attachment
from parsers.charsets import decode_bytes
from parsers.flowed import unflow
from parsers.mime_tree import Budget, Entity
from parsers.records import Attachment, ParsedEmail
from parsers.tnef import is_tnef, unpack_tnef
from parsers.transfer import decode_transfer
from parsers.uuencode import extract_uuencoded

_BODY_TYPES = ("text/plain", "text/html")
_OCTETS = "application/octet-stream"  # uuencode and TNEF do not say what they carry
_META_CHARSET = re.compile(rb"<meta[^>]{0,200}charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)


@dataclass(slots=True)
class Collected:
    """What the walk found, in document order."""

    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)


def walk(
    entity: Entity, out: Collected, budget: Budget, parse_nested: Callable[[Entity], ParsedEmail]
) -> None:
    """Sort the leaves of ``entity`` into plain text, HTML and attachments.

    A text part is body unless it is named or marked as an attachment; a second
    HTML document is an attachment of its own. ``parse_nested`` turns a
    message/rfc822 part into a ParsedEmail (passed in to avoid an import cycle).
    """
    if entity.children:
        for child in entity.children:
            walk(child, out, budget, parse_nested)
        return
    ctype = entity.content_type
    data, defect = decode_transfer(entity.body, entity.transfer_encoding)
    if defect:
        budget.defects.append(defect)
    filename = entity.filename
    is_body = ctype in _BODY_TYPES and entity.disposition != "attachment" and filename is None
    if is_body and ctype == "text/html" and out.html:
        is_body = False  # a second HTML document is content of its own, not more body
    if is_body:
        label = entity.params.get("charset")
        if label is None and ctype == "text/html":
            found = _META_CHARSET.search(data[:4096])
            label = found.group(1).decode("ascii") if found else None
        text, defect = decode_bytes(data, label)
        text = text.replace("\r\n", "\n")
        if defect:
            budget.defects.append(defect)
        if ctype == "text/html":
            out.html.append(text)
            return
        if entity.params.get("format", "").lower() == "flowed":
            text = unflow(text, delsp=entity.params.get("delsp", "").lower() == "yes")
        text, files = extract_uuencoded(text)
        out.plain.append(text)
        for file in files:
            out.attachments.append(
                make_attachment(file.content, file.filename, _OCTETS, None, False)
            )
        return
    if is_tnef(ctype, filename):
        unpacked = unpack_tnef(data)
        if unpacked is not None and unpacked.files:
            for item in unpacked.files:
                out.attachments.append(
                    make_attachment(item.content, item.filename, _OCTETS, None, False)
                )
            if unpacked.body and not out.plain:
                out.plain.append(unpacked.body)
            return
        budget.defects.append("unreadable TNEF kept as winmail.dat")
    nested = None
    if entity.message is not None:
        nested = parse_nested(entity.message)
    content_id = content_id_of(entity)
    inline = entity.disposition == "inline" or (not entity.disposition and content_id is not None)
    name = filename or fallback_name(ctype, content_id, nested)
    out.attachments.append(make_attachment(data, name, ctype, content_id, inline, nested))
