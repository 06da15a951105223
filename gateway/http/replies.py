"""What an agent's reply carries besides its text, checked before anything is
stored: copies (each exactly one addr-spec, parsers/addresses.py), files
(base64, bounded in count and in decoded size together), an HTML part, a
canned response rendered for the request, and the agent's name.

The HTML part is the agent's own HTML, sanitised by ammonia's allow-list (nh3:
no script, style, event handler or `javascript:` link survives); a reply sent
without HTML is plain text alone, as before. Without `body`, the text part is
made from the HTML. A reply by an agent (a token issued for an agent) is
signed with their name above the queue's signature and comes "from" them:
`Name (Queue name) <queue address>`.
"""

from __future__ import annotations

import base64
import binascii
import html as html_escape
from dataclasses import dataclass, replace
from typing import Any

import nh3
from aiohttp import web

from gateway.http import canned
from gateway.http.access import Acting
from gateway.http.bodies import MAX_REPLY_ATTACHMENT_BYTES, Reply
from gateway.http.problems import invalid
from gateway.http.shared import ENGINE
from parsers.addresses import AddressError, parse_address
from parsers.html_text import html_to_text
from storage import agents
from storage.records import NewAttachment, NewMessage

NOT_ATTACHABLE = ("multipart", "message")  # structures, not files


@dataclass(frozen=True, slots=True)
class ReplyParts:
    text: str  # what the agent wrote, signed; the queue's signature follows
    cc: list[dict[str, str]]
    html: str | None  # sanitised; the agent's name and the signature follow
    attachments: list[NewAttachment]
    agent_name: str | None


def _copies(reply: Reply) -> list[dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for index, text in enumerate(reply.cc):
        try:
            mailbox = parse_address(text)
        except AddressError as exc:
            raise invalid(f"/cc/{index}", exc.reason) from None
        found.setdefault(mailbox.addr_spec, {"name": "", "address": mailbox.addr_spec})
    return list(found.values())


def _files(reply: Reply) -> list[NewAttachment]:
    files, total = [], 0
    for index, item in enumerate(reply.attachments):
        if item.content_type.split("/")[0].lower() in NOT_ATTACHABLE:
            raise invalid(f"/attachments/{index}/content_type",
                          "must be a file's media type, not multipart/* or message/*")
        try:
            content = base64.b64decode(item.content_base64, validate=True)
        except (binascii.Error, ValueError):
            raise invalid(f"/attachments/{index}/content_base64",
                          "must be base64 (RFC 4648, with padding)") from None
        total += len(content)
        if total > MAX_REPLY_ATTACHMENT_BYTES:
            raise invalid("/attachments", f"must be at most {MAX_REPLY_ATTACHMENT_BYTES} "
                                          "bytes together (decoded)")
        files.append(NewAttachment(filename=item.filename,
                                   content_type=item.content_type.lower(), content=content))
    return files


async def _canned_text(request: web.Request, acting: Acting, reply: Reply) -> str:
    if reply.canned_response is None:
        return ""
    found = await agents.get_canned(request.app[ENGINE], reply.canned_response)
    if found is None or found["queue"] not in acting.queues(request):
        raise invalid("/canned_response", "no canned response with this id in your queues")
    try:
        return canned.render(found["body"], canned.context(acting.request,
                                                           acting.token.agent_name))
    except canned.RenderError as exc:
        raise invalid("/canned_response",
                      f"cannot be rendered for this request: {exc}") from None


async def parts(request: web.Request, acting: Acting, reply: Reply) -> ReplyParts:
    """Everything the reply carries, checked (422 naming the field otherwise)."""
    cc, files = _copies(reply), _files(reply)
    clean_html = nh3.clean(reply.html) if reply.html and reply.html.strip() else None
    inserted = await _canned_text(request, acting, reply)
    written = reply.body.strip() or (html_to_text(clean_html).strip() if clean_html else "")
    text = "\n\n".join(part for part in (written, inserted.strip()) if part)
    if not text:
        raise invalid("/body", "is required and must be text")
    if inserted.strip() and clean_html:
        clean_html += _as_html(inserted)
    name = acting.token.agent_name
    if name:
        text = f"{text}\n\n{name}"
    return ReplyParts(text=text, cc=cc, html=clean_html, attachments=files, agent_name=name)


def _as_html(text: str) -> str:
    """Plain text as HTML paragraphs (escaped; line breaks kept)."""
    paragraphs = [p for p in text.strip().split("\n\n") if p.strip()]
    return "".join("<p>" + html_escape.escape(p).replace("\n", "<br>\n") + "</p>\n"
                   for p in paragraphs)


def finish(message: NewMessage, found: ReplyParts) -> NewMessage:
    """The composed reply (outbound.agent_reply) with what the API added."""
    changes: dict[str, Any] = {"cc": found.cc, "attachments": found.attachments}
    if found.html is not None:
        # What agent_reply put after the agent's text (the queue's signature), and
        # the agent's name, close the HTML part as they close the text.
        tail = message.text[len(found.text):] if message.text.startswith(found.text) else ""
        name = _as_html(found.agent_name) if found.agent_name else ""
        changes["html"] = found.html + name + _as_html(tail)
    if found.agent_name:
        changes["from_name"] = (f"{found.agent_name} ({message.from_name})"
                                if message.from_name else found.agent_name)
    return replace(message, **changes)
