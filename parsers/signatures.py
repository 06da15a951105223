"""Split the sender's signature off the end of a reply.

Looks only at the last lines, bottom-up, for what people and mail apps put
there: a "-- " delimiter (RFC 3676 section 4.3) or a dash line, a "-Name"
sign-off, "Sent from my iPhone"-style lines, and closings such as "Regards,"
followed by a few short lines. The first line of a message is never a
signature: a one-line "Thanks!" is the message.
"""

from __future__ import annotations

import re

_WINDOW = 15  # lines at the end that may hold a signature
_TAIL_CHARS = 4096
_MAX_LINE = 80
_DELIMITER = re.compile(r"^\s*(?:-{2,}|_{3,}|-{2} ?|={3,})\s*$")
_DASH_NAME = re.compile(r"^-\s*[^\W\d_][\w.'’]*(?:\s[\w.'’]+){0,2}\s*$")
_DEVICE = re.compile(
    r"^(?:Sent|Envoyé|Enviado|Gesendet|Inviato|Verzonden|Verstuurd|Skickat|Sendt|Wysłane|"
    r"Odesláno|Отправлено|Get|Von meinem|Sent with|Sent using|Sent via|Sent on)\b[^,;:]{0,50}?"
    r"\b(?:from|de|desde|von|mit|da|vanaf|från|fra|z|с|из|with|using|via|on|for|iPhone|iPad|"
    r"Android|BlackBerry|Outlook|mobile|Mobile)\b[^,;:]{0,45}$",
    re.IGNORECASE,
)
_LINK = re.compile(r"<https?://[^\s<>]{0,300}>")
_DEVICE_WORDS = re.compile(
    r"iPhone|iPad|Android|BlackBerry|Samsung|Galaxy|Outlook|mobile|móvil|mobil|Handy|"
    r"smartphone|phone|HTC|Sparrow|Mail for|Windows|Nokia|Huawei|Xiaomi|Pixel|device|tablet|"
    r"Yahoo|AOL|Gmail|ProtonMail|Superhuman|Spark|Airmail|Mail App|Mail\.ru|мобильн",
    re.IGNORECASE,
)
_CLOSING = re.compile(
    r"^(?:(?:best|kind|warm|many)?\s*(?:regards|wishes)|thanks?(?: you)?(?: (?:so|very) much)?"
    r"(?: in advance)?|thx|cheers|sincerely|yours(?: truly| sincerely)?|best|br|"
    r"(?:mit )?(?:freundlichen|besten|herzlichen|liebe|viele)(?: grüßen| grüssen| grüße| grüsse)?|"
    r"(?:viele )?grüße|gruß|lg|mfg|cordialement|bien à vous|bien cordialement|merci|"
    r"(?:un )?saludo|saludos|atentamente|cordiali saluti|distinti saluti|grazie|"
    r"met vriendelijke groet|groeten|hälsningar|mvh|med vänlig hälsning|pozdrawiam|"
    r"s pozdravem|с уважением|obrigad[oa]|atenciosamente)"
    r"(?=$|[\s,.!:;-])",  # a whole word: "Best," but not "Bestellung", "Br" but not "Brian"
    re.IGNORECASE,
)


def split_signature(text: str) -> tuple[str, str | None]:
    """(text without signature, signature) ; the signature is None when none is found."""
    head, text = text[:-_TAIL_CHARS], text[-_TAIL_CHARS:]
    if head and "\n" in text:
        # Only the tail can hold a signature; keep the cut on a line boundary.
        cut = text.index("\n") + 1
        head, text = head + text[:cut], text[cut:]
    body, signature = _split(text)
    return head + body if signature is not None else head + text, signature


def _split(text: str) -> tuple[str, str | None]:
    lines = text.splitlines(keepends=True)
    filled = [index for index, line in enumerate(lines) if line.strip()]
    if len(filled) < 2:
        return text, None
    window = [index for index in filled[-_WINDOW:] if index != filled[0]]
    start = _find_start(lines, window)
    if start is None:
        return text, None
    body = "".join(lines[:start]).rstrip()
    if not body.strip():
        return text, None
    return body, "".join(lines[start:]).strip("\r\n")


def is_signature(text: str) -> bool:
    """Whether ``text`` as a whole reads as a signature (used for what follows a quote)."""
    if len(text) > _TAIL_CHARS:
        return False
    lines = text.strip("\r\n").splitlines(keepends=True)
    filled = [index for index, line in enumerate(lines) if line.strip()]
    if not filled or len(filled) > _WINDOW:
        return False
    return _find_start(lines, filled) == filled[0]


def _find_start(lines: list[str], window: list[int]) -> int | None:
    # The topmost candidate wins: what follows it must all look like a signature.
    for position, index in enumerate(window):
        line = lines[index].strip()
        after = [lines[i].strip() for i in window[position + 1 :]]
        if _DELIMITER.match(lines[index].rstrip("\r\n")):
            return index
        if _is_device_line(line) and all(_is_device_line(a) for a in after):
            return index
        if len(after) <= 6 and all(len(a) <= _MAX_LINE for a in after):
            bullets_after = any(a.startswith(("-", "*", "•")) for a in after)
            if (
                _DASH_NAME.match(lines[index])
                and not bullets_after
                and not _bullet_before(lines, index)
            ):
                return index
            if _is_closing(line) and len(after) >= 1:
                if all(len(a) <= 40 or _is_device_line(a) for a in after):
                    return index
    return None


def _is_closing(line: str) -> bool:
    """ "Regards," or "Thanks, Bob" ; not "Thanks for your attention." """
    found = _CLOSING.match(line)
    if found is None:
        return False
    rest = line[found.end() :].strip(" ,.!-")
    return len(rest.split()) <= 2 and len(line) <= 40


def _is_device_line(line: str) -> bool:
    if "<http" in line:  # Outlook mobile: "Get Outlook for iOS<https://aka.ms/o0ukef>"
        line = _LINK.sub(" ", line).strip()
    return len(line) <= 70 and bool(_DEVICE.match(line)) and bool(_DEVICE_WORDS.search(line))


def _bullet_before(lines: list[str], index: int) -> bool:
    for previous in reversed(lines[:index]):
        if previous.strip():
            return previous.lstrip().startswith(("-", "*", "•"))
    return False
