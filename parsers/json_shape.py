"""The stable JSON shape of a parsed email (``intake parse FILE.eml --json``)."""

from __future__ import annotations

from typing import Any

from parsers.records import Address, Bounce, ParsedEmail


def to_json(parsed: ParsedEmail) -> dict[str, Any]:
    return {
        "message_id": parsed.message_id,
        "in_reply_to": parsed.in_reply_to,
        "references": list(parsed.references),
        "date": parsed.date.isoformat() if parsed.date is not None else None,
        "from": address_json(parsed.from_) if parsed.from_ is not None else None,
        "reply_to": [address_json(a) for a in parsed.reply_to],
        "to": [address_json(a) for a in parsed.to],
        "cc": [address_json(a) for a in parsed.cc],
        "subject": parsed.subject,
        "text": parsed.text,
        "html": parsed.html,
        "new_text": parsed.new_text,
        "attachments": [
            {
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "sha256": a.sha256,
                "content_id": a.content_id,
                "inline": a.inline,
            }
            for a in parsed.attachments
        ],
        "auto_reply": parsed.auto_reply,
        "bounce": bounce_json(parsed.bounce) if parsed.bounce is not None else None,
        "list": parsed.list_mail,
        "defects": list(parsed.defects),
    }


def address_json(address: Address) -> dict[str, str]:
    return {"name": address.name, "address": address.address}


def bounce_json(bounce: Bounce) -> dict[str, Any]:
    return {
        "permanent": bounce.permanent,
        "kind": bounce.kind,
        "original_message_id": bounce.original_message_id,
        "reporting_mta": bounce.reporting_mta,
        "recipients": [
            {
                "address": r.address,
                "action": r.action,
                "status": r.status,
                "diagnostic": r.diagnostic,
            }
            for r in bounce.recipients
        ],
    }
