"""Tell automatic mail (auto-replies, list traffic, our own mail looping back) from people's."""

from __future__ import annotations

import re

from parsers.records import ParsedEmail

# RFC 3834 section 5 and the de-facto headers of Exchange, Google and others.
_AUTO_HEADERS = ("x-autoreply", "x-autorespond", "x-autoresponse", "x-auto-response-suppress")
_AUTO_PRECEDENCE = {"bulk", "junk", "auto_reply"}
_OUT_OF_OFFICE = re.compile(
    r"^\s*(?:auto(?:matic|matische)?\s*(?:reply|response|antwort)|auto(?:reply|response)\b|"
    r"out of (?:the )?office|abwesenheit|automatische antwort|réponse automatique|"
    r"respuesta automática|risposta automatica|automatisch antwoord|afwezig|"
    r"fuera de la oficina|absence|frånvaro|autosvar|automaattinen vastaus|"
    r"odpowiedź automatyczna|автоответ|i am (?:currently )?(?:out|away)|on vacation|"
    r"auto:)",
    re.IGNORECASE,
)


def auto_reply_reasons(headers: dict[str, str], subject: str) -> tuple[str, ...]:
    """Why the mail looks automatic; empty when nothing says so. Keys are lower-cased names."""
    reasons: list[str] = []
    submitted = headers.get("auto-submitted", "").strip().lower()
    if submitted and not submitted.startswith("no"):
        reasons.append(f"Auto-Submitted: {submitted}")
    reasons.extend(f"{name} present" for name in _AUTO_HEADERS if name in headers)
    precedence = headers.get("precedence", "").strip().lower()
    if precedence in _AUTO_PRECEDENCE:
        reasons.append(f"Precedence: {precedence}")
    if _OUT_OF_OFFICE.match(subject):
        reasons.append("out-of-office subject")
    if "disposition-notification" in headers.get("content-type", "").lower():
        reasons.append("read receipt (RFC 8098)")
    return tuple(reasons)


def list_id(headers: dict[str, str]) -> str | None:
    """The RFC 2919 List-Id, without angle brackets."""
    value = headers.get("list-id", "").strip()
    if not value:
        return None
    found = re.search(r"<([^<>]+)>", value)
    return found.group(1).strip() if found else value


def is_list_mail(headers: dict[str, str]) -> bool:
    return "list-id" in headers or headers.get("precedence", "").strip().lower() == "list"


def message_id_domain(message_id: str | None) -> str | None:
    if not message_id or "@" not in message_id:
        return None
    return message_id.rsplit("@", 1)[1].strip(" <>").lower() or None


def is_own_outbound(parsed: ParsedEmail, our_domain: str) -> bool:
    """True when ``parsed`` is a message we sent coming back in (a mail loop).

    ``our_domain`` is the right-hand side of the Message-IDs the gateway
    generates; the caller passes it from its configuration.
    """
    return message_id_domain(parsed.message_id) == our_domain.strip().lower()


def is_bounce_of_own_mail(parsed: ParsedEmail, our_domain: str) -> bool:
    """True when ``parsed`` reports that one of our own messages could not be delivered."""
    if parsed.bounce is None:
        return False
    return message_id_domain(parsed.bounce.original_message_id) == our_domain.strip().lower()
