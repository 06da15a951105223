"""Split the sender's signature off the end of a reply.

Looks only at the last lines, bottom-up, for what people and mail apps put
there: a "-- " delimiter (RFC 3676 section 4.3) or a dash line, a "-Name"
sign-off, "Sent from my iPhone"-style lines (any device or app, in the
languages of reply_phrases.py), closings such as "Regards," followed by a few
short lines, and a bare "Kind regards" ending the message. The first line of a
message is never a signature: a one-line "Thanks!" is the message. Directional
marks of right-to-left text are ignored for matching and kept in the output.
"""

from __future__ import annotations

import re

from parsers.reply_headers import has_marks, without_marks
from parsers.reply_phrases import APP_LINES, DEVICE_LINES, SIGN_OFFS

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
    r"Yahoo|AOL|Gmail|ProtonMail|Superhuman|Spark|Airmail|Mail App|Mail\.ru|мобильн|"
    r"smartfon|telefon|телефон|смартфон|móvil|celular|cellulare|telefoon|puhelin|tablet",
    re.IGNORECASE,
)
_CLOSING = re.compile(
    r"^(?:(?:best|kind|warm|many)?\s*(?:regards|wishes)|thanks?(?: you)?(?: (?:so|very) much)?"
    r"(?: in advance)?|thx|cheers|sincerely|yours(?: truly| sincerely)?|best|br|"
    r"(?:mit )?(?:freundlichen|besten|herzlichen|liebe|viele)(?: grüßen| grüssen| grüße| grüsse)?|"
    r"(?:viele )?grüße|gruß|lg|mfg|cordialement|bien à vous|bien cordialement|merci|"
    r"(?:un )?saludo|saludos|atentamente|cordiali saluti|distinti saluti|grazie|"
    r"met vriendelijke groet|groeten|hälsningar|mvh|med vänlig hälsning|pozdrawiam|"
    r"s pozdravem|с уважением|obrigad[oa]|atenciosamente|"
    + "|".join(re.escape(phrase.text) for phrase in sorted(SIGN_OFFS, key=lambda p: -len(p.text)))
    + r")"
    r"(?=$|[\s,.!:;،-])",  # a whole word: "Best," but not "Bestellung", "Br" but not "Brian"
    re.IGNORECASE,
)


# "Sent from my %device%" as (prefix, suffix) pairs, lower-cased, longest prefix first.
def _device_template(text: str, app: bool) -> tuple[str, str, bool]:
    prefix, _device, suffix = text.lower().partition("%device%")
    return prefix, suffix, app


# (prefix, suffix, is an app advert) per template, longest prefix first.
_DEVICE_TEMPLATES = tuple(
    sorted(
        {_device_template(phrase.text, phrase in APP_LINES) for phrase in DEVICE_LINES + APP_LINES},
        key=lambda template: -len(template[0]),
    )
)
_DEVICE_PREFIXES = tuple({prefix for prefix, _suffix, _app in _DEVICE_TEMPLATES if prefix})
_DEVICE_SUFFIXES = tuple({suffix for prefix, suffix, _app in _DEVICE_TEMPLATES if not prefix})
_MAX_DEVICE = 40
# Closings that end a message alone, with no name below them ("Kind regards").
_BARE_SIGN_OFFS = frozenset(phrase.text for phrase in SIGN_OFFS)


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
    # Directional marks (right-to-left text) are ignored for matching, kept in the output.
    start = _find_start(_plain(text, lines), window)
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
    return _find_start(_plain(text, lines), filled) == filled[0]


def _plain(text: str, lines: list[str]) -> list[str]:
    return [without_marks(line) for line in lines] if has_marks(text) else lines


def _find_start(lines: list[str], window: list[int]) -> int | None:
    # The topmost candidate wins: what follows it must all look like a signature.
    stripped = [lines[index].strip() for index in window]
    for position, index in enumerate(window):
        line = stripped[position]
        after = stripped[position + 1 :]
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
            if not after and _is_bare_sign_off(line):
                return index
    return None


def _is_closing(line: str) -> bool:
    """ "Regards," or "Thanks, Bob" ; not "Thanks for your attention." """
    found = _CLOSING.match(line)
    if found is None:
        return False
    rest = line[found.end() :].strip(" ,.!-")
    return len(rest.split()) <= 2 and len(line) <= 40


def _is_bare_sign_off(line: str) -> bool:
    """ "Kind regards," ending the message with no name after it."""
    return line.rstrip(" ,.!;:-–—،").lower() in _BARE_SIGN_OFFS


def _is_device_line(line: str) -> bool:
    if "<http" in line:  # Outlook mobile: "Get Outlook for iOS<https://aka.ms/o0ukef>"
        line = _LINK.sub(" ", line).strip()
    if len(line) > 70:
        return False
    if _DEVICE.match(line) and _DEVICE_WORDS.search(line):
        return True
    return _is_table_device_line(line)


def _is_table_device_line(line: str) -> bool:
    """ "Sent from my Wiko View", "Von meinem iPhone gesendet", "iPhoneから送信" (any device)."""
    text = line.rstrip(" .!")
    lowered = text.lower()
    if not (lowered.startswith(_DEVICE_PREFIXES) or lowered.endswith(_DEVICE_SUFFIXES)):
        return False
    for prefix, suffix, app in _DEVICE_TEMPLATES:
        if lowered.startswith(prefix) and lowered.endswith(suffix):
            device = text[len(prefix) : len(text) - len(suffix)].strip(" '’-")
            if _plausible_device(device) and (not app or _DEVICE_WORDS.search(device)):
                return True
    return False


def _plausible_device(device: str) -> bool:
    """A short product name ("Wiko View", "Outlook for Android", "iPhone'a"), not a sentence."""
    if not device or len(device) > _MAX_DEVICE or len(device.split()) > 5:
        return False
    if any(mark in device for mark in ",;:?!"):
        return False
    # "Sent from Outlook", "iPhone"; a lower-case word only when it names a device ("my phone").
    if device.startswith(("iPhone", "iPad", "iPod", "iOS")):
        return True
    return not device[0].islower() or bool(_DEVICE_WORDS.search(device))


def _bullet_before(lines: list[str], index: int) -> bool:
    for previous in reversed(lines[:index]):
        if previous.strip():
            return previous.lstrip().startswith(("-", "*", "•"))
    return False
