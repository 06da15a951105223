"""What an inbox item becomes: parse it and describe the request to store.

Email goes through the full parser; what makes a reply find its request is
passed on as thread hints (gateway/threading.py decides with them). Automatic
mail (auto-replies, bounces, our own mail coming back) is kept and shown but
never acknowledged; on its own it does not become open work.
"""

from __future__ import annotations

from typing import Any

from gateway.config import Config
from parsers.api_request import parse_api_request
from parsers.automatic import is_own_outbound
from parsers.json_shape import to_json
from parsers.mail import parse_email
from parsers.records import ParsedEmail
from parsers.reference_tags import find_reference_tags
from storage.processing import ClaimedItem
from storage.records import NewAttachment, NewMessage, NewRequest, ThreadHints

MAX_DEFECTS_SHOWN = 20


def _parents(parsed: ParsedEmail) -> tuple[str, ...]:
    """In-Reply-To first, then References from the most recent back, once each."""
    ordered = ([parsed.in_reply_to] if parsed.in_reply_to else []) + list(
        reversed(parsed.references))
    return tuple(dict.fromkeys(ordered))


def _acknowledgement(parsed: ParsedEmail, own: bool) -> tuple[bool, str]:
    if own:
        return False, "our own mail came back"
    if parsed.bounce is not None:
        return False, "delivery report"
    if parsed.auto_reply:
        return False, "automatic reply (RFC 3834)"
    if parsed.list_mail:
        return False, f"mailing-list mail ({parsed.list_id or 'List-Id'})"
    if parsed.from_ is None:
        return False, "no sender address"
    return True, "new request from a person"


def email_request(item: ClaimedItem, config: Config) -> NewRequest:
    parsed = parse_email(item.raw)
    own = is_own_outbound(parsed, config.message_id_domain)
    automatic = own or parsed.auto_reply or parsed.bounce is not None
    sender = parsed.from_.address.lower() if parsed.from_ else None
    details = to_json(parsed)
    flags: dict[str, Any] = {
        "auto_reply": parsed.auto_reply, "bounce": details["bounce"], "list": parsed.list_mail,
        "list_id": parsed.list_id, "own_outbound": own,
        "defects": list(parsed.defects[:MAX_DEFECTS_SHOWN]),
    }
    message = NewMessage(
        subject=parsed.subject, text=parsed.text, new_text=parsed.new_text,
        from_address=sender, from_name=parsed.from_.name or None if parsed.from_ else None,
        message_id=parsed.message_id, in_reply_to=parsed.in_reply_to,
        references=list(parsed.references), to=details["to"], cc=details["cc"],
        html=parsed.html, flags=flags,
        attachments=[NewAttachment(a.filename, a.content_type, a.content, a.content_id,
                                   a.inline) for a in parsed.attachments],
    )
    hints = ThreadHints(
        message_id=parsed.message_id, parent_ids=_parents(parsed),
        bounce_of=parsed.bounce.original_message_id if parsed.bounce else None,
        tags=find_reference_tags(parsed.subject, config.threading.subject_tag),
        sender=sender, automatic=automatic,
    )
    send, why = _acknowledgement(parsed, own)
    queue = config.default_queue
    envelope = {k: item.meta.get(k) for k in ("mail_from", "rcpt_tos", "peer")}
    return NewRequest(
        queue=queue, message=message, requester_email=sender,
        requester_name=message.from_name, hints=hints,
        # Automatic mail with nothing to attach to is kept, but not as open work.
        status="closed" if automatic else "new", tags=["automatic"] if automatic else [],
        events=[
            ("received", "system", {"channel": item.channel, "envelope": envelope,
                                    "received_at": item.received_at.isoformat()}),
            ("parsed", "system", {"parser": "full", "defects": flags["defects"],
                                  "auto_reply": parsed.auto_reply,
                                  "bounce": parsed.bounce is not None,
                                  "list": parsed.list_mail, "own_outbound": own}),
            ("routed", "system", {"queue": queue, "reason": "default queue"}),
            ("acknowledgement", "system", {"send": send, "reason": why}),
        ],
    )


def api_request(item: ClaimedItem, config: Config) -> NewRequest:
    parsed = parse_api_request(item.raw)
    if isinstance(parsed, list):  # validated before it was accepted; only a bug gets here
        raise ValueError(f"stored API body no longer validates: {parsed[0]}")
    message = NewMessage(
        subject=parsed.subject, text=parsed.body, new_text=parsed.body,
        from_address=parsed.requester_email, from_name=parsed.requester_name,
    )
    queue = config.default_queue
    return NewRequest(
        queue=queue, message=message, requester_email=parsed.requester_email,
        requester_name=parsed.requester_name, custom_fields=parsed.custom_fields,
        events=[
            ("received", "system", {"channel": item.channel,
                                    "token_id": item.meta.get("token_id"),
                                    "received_at": item.received_at.isoformat()}),
            ("routed", "system", {"queue": queue, "reason": "default queue"}),
            ("acknowledgement", "system", {"send": True, "reason": "new request from a person"}),
        ],
    )
