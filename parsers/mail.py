"""parse_email: raw RFC 5322 bytes to a ParsedEmail, for any input, within bounded time."""

from __future__ import annotations

from parsers.automatic import auto_reply_reasons, is_list_mail, list_id
from parsers.body_parts import Collected, walk
from parsers.bounces import find_bounce
from parsers.header_block import HeaderBlock
from parsers.header_values import addresses, date, header_text, message_ids
from parsers.html_quotes import text_and_reply
from parsers.limits import MAX_DEFECTS, MAX_FIELD_BYTES, MAX_HTML_TO_TEXT_CHARS
from parsers.mime_tree import Budget, Entity, split_message
from parsers.records import Address, ParsedEmail
from parsers.reply_text import reply_text, without_signature


def parse_email(raw: bytes) -> ParsedEmail:
    """Parse one message. Never raises: what cannot be read is listed in ``defects``."""
    budget = Budget()
    try:
        root = split_message(bytes(raw), budget)
        return _build(root, budget)
    except Exception as exc:  # the contract is "never raises": a bug here must not drop mail
        return _unreadable(raw, f"parser error: {type(exc).__name__}: {exc}"[:300])


def _build(root: Entity, budget: Budget) -> ParsedEmail:
    block = root.block
    # Raw 8-bit headers are most often in the charset the body declares.
    charset = _first_charset(root)
    defects = budget.defects
    headers = [(name, header_text(value, charset)) for name, value in block.fields]
    first: dict[str, str] = {}
    for name, text_value in headers:
        first.setdefault(name, text_value)
    subject = " ".join(first.get("subject", "").replace("\x00", "").split())
    from_ = _sender(block, defects)
    collected = Collected()
    walk(root, collected, budget, _parse_nested)
    text = "\n\n".join(t for t in collected.plain if t.strip())
    html = "\n".join(collected.html) or None
    if not text.strip() and html:
        if len(html) > MAX_HTML_TO_TEXT_CHARS:
            defects.append(f"HTML longer than {MAX_HTML_TO_TEXT_CHARS} characters: text cut")
        text, reply = text_and_reply(html)
        new_text = without_signature(reply, fallback=text)
    else:
        new_text = reply_text(text)
    bounce = find_bounce(root, first, from_.address if from_ else "", subject, text)
    message_id = message_ids(block.get("message-id"), limit=1)
    reply_to_ids = message_ids(block.get("in-reply-to"), limit=1)
    return ParsedEmail(
        message_id=message_id[0] if message_id else None,
        in_reply_to=reply_to_ids[0] if reply_to_ids else None,
        references=message_ids(block.get("references")),
        date=date(block.get("date")),
        from_=from_,
        reply_to=addresses(block.get("reply-to"), defects, "Reply-To"),
        to=addresses(block.get("to"), defects, "To"),
        cc=addresses(block.get("cc"), defects, "Cc"),
        subject=subject,
        text=text,
        html=html,
        new_text=new_text,
        attachments=tuple(collected.attachments),
        auto_reply=bool(auto_reply_reasons(first, subject)) or bounce is not None,
        bounce=bounce,
        list_mail=is_list_mail(first),
        list_id=list_id(first),
        defects=_bounded(defects),
        headers=tuple(headers),
    )


def _parse_nested(entity: Entity) -> ParsedEmail:
    return _build(entity, Budget())  # already split; it collects its own defects


def _first_charset(root: Entity) -> str | None:
    stack = [root]
    while stack:
        entity = stack.pop(0)
        if "charset" in entity.params:
            return entity.params["charset"]
        stack.extend(entity.children)
    return None


def _sender(block: HeaderBlock, defects: list[str]) -> Address | None:
    """From; when it has no address, the first of Sender, Reply-To, Return-Path that does."""
    named: Address | None = None
    for field in ("from", "sender", "reply-to", "return-path"):
        for value in block.get_all(field):
            for candidate in addresses(value, defects, field):
                if "@" in candidate.address:
                    if field != "from":
                        defects.append(f"From has no address; {field} used")
                    return candidate
                named = named or candidate
    return named


def _bounded(defects: list[str]) -> tuple[str, ...]:
    unique = list(dict.fromkeys(defects))
    if len(unique) <= MAX_DEFECTS:
        return tuple(unique)
    return (*unique[:MAX_DEFECTS], f"{len(unique) - MAX_DEFECTS} more defects")


def _unreadable(raw: bytes, defect: str) -> ParsedEmail:
    # Nothing clever here: this runs after a failure and must not fail itself.
    try:
        text = bytes(raw[:MAX_FIELD_BYTES]).decode("utf-8", errors="replace")
    except Exception:  # not even bytes
        text = ""
    return ParsedEmail(
        message_id=None,
        in_reply_to=None,
        references=(),
        date=None,
        from_=None,
        reply_to=(),
        to=(),
        cc=(),
        subject="",
        text=text,
        html=None,
        new_text=text,
        attachments=(),
        auto_reply=False,
        bounce=None,
        list_mail=False,
        list_id=None,
        defects=(defect,),
        headers=(),
    )
