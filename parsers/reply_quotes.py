"""Cut the quoted history off a plain-text reply.

Each line is marked: ``e`` empty, ``m`` quote marker (``>``), ``s`` the
first line(s) of a reply header ("On ... wrote:", "-----Original Message-----",
an Outlook "From: / Sent:" block), ``f`` a forwarded-message header, ``t``
text. The reply is what stands before the quotation that the marker string
shows, the approach of mailgun/talon, written for this project: inline replies
(text between quotes) and forwards are kept whole.

A ">" block that ends the text (blank lines or a signature may follow) is
history whatever its length, and so is the attribution directly above it, even
one without a date ("Alice wrote:", "Иван написал(а):"); a quote with the
sender's own text below it (an inline or bottom-posted answer) is kept.
"""

from __future__ import annotations

import re

from parsers.limits import MAX_QUOTE_SCAN_CHARS, MAX_QUOTE_SCAN_LINES
from parsers.reply_headers import (
    FROM_WORDS,
    LEAD_FIRST_WORDS,
    QUOTE_MARK,
    attribution_span,
    has_marks,
    is_forwarded_header,
    shared_header_start,
    splitter_span,
    without_marks,
)
from parsers.signatures import is_signature

_SEPARATOR_LINE = re.compile(r"^\s*[-_=*]{3,}\s*$")
_PARENTHESIS_LINK = re.compile(r"\(https?://|^\s*_?[a-z0-9_]*=[^\s]*\)")


def strip_quotes(text: str) -> str:
    """The reply without the quoted history; the text itself when nothing is quoted."""
    if not text.strip():
        return ""
    head = text[:MAX_QUOTE_SCAN_CHARS].replace("\r\n", "\n")
    scanned = head.split("\n", MAX_QUOTE_SCAN_LINES)[:MAX_QUOTE_SCAN_LINES]
    if _plain(head, scanned):
        return text
    return _strip_marked(text, head, scanned)


# What a line must not have for `_plain` to pass it without marking it: the
# characters a quote, a separator or a reply header starts or ends with.
_PLAIN_NEVER_STARTS = frozenset("-_=*~>")
_PLAIN_NEVER_ENDS = frozenset(":：*")
# A "From:"-style field line has its colon within this many characters.
_FIELD_COLON_WITHIN = max(len(word) for word in (*FROM_WORDS, "Date", "Datum")) + 4
# The first letters of "On <date> ... wrote:" leads, lower-cased.
_LEAD_INITIALS = frozenset(word[0] for word in LEAD_FIRST_WORDS)


def _plain(head: str, lines: list[str]) -> bool:
    """True when no line of `lines` (of `head`) can be marked anything but text or
    empty by `mark_lines`, so nothing is cut: checked without marking them.

    Most messages are a few paragraphs of text, and marking costs microseconds
    a line. Each test stands for a way a line becomes a quote (">"), a
    separator ("-----Original Message-----"), a forward header or a reply
    header ("On ... wrote:", "From: ...", "<sender> wrote:", a line ending in a
    colon): a line that might be one sends the text to `mark_lines`. False
    says only that; `tests/unit/test_reply_shortcut.py` checks the shortcut
    against marking."""
    if ">" in head or "@" in head or has_marks(head):
        return False
    for line in lines:
        text = line.rstrip()
        if not text:
            continue
        if (text[0] in _PLAIN_NEVER_STARTS or text[0].isspace()
                or text[-1] in _PLAIN_NEVER_ENDS):
            return False
        start = text[:_FIELD_COLON_WITHIN]
        if ":" in start or "：" in start or "<" in text or '"' in text:
            return False
        if (text[0].lower()[0] in _LEAD_INITIALS
                and text.split(None, 1)[0].lower() in LEAD_FIRST_WORDS):
            return False
    return True


def _strip_marked(text: str, head: str, scanned: list[str]) -> str:
    """`strip_quotes` by marking each line (see the module's docstring)."""
    lines = _split_shared_lines(scanned)
    # Right-to-left text carries directional marks: matched without them, kept in the output.
    plain = [without_marks(line) for line in lines] if has_marks(head) else lines
    markers = mark_lines(plain)
    spans = _cut(plain, markers)
    if spans is None:
        return text
    kept = [line for start, end in spans for line in lines[start:end]]
    # A quotation was found within the scanned text: what follows it is history too.
    while kept and (not kept[-1].strip() or _SEPARATOR_LINE.match(kept[-1])):
        kept.pop()
    return "\n".join(kept).strip("\n")


def _split_shared_lines(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        cut = shared_header_start(line)
        if cut is None:
            out.append(line)
        else:
            out.append(line[: cut.start()].rstrip("- "))
            out.append(line[cut.end() :])
    return out


def mark_lines(lines: list[str]) -> str:
    markers: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.strip():
            markers.append("e")
        elif is_forwarded_header(line):
            markers.append("f")
        else:
            span = splitter_span(lines, index)
            if span:
                markers.extend("s" * span)
                index += span
                continue
            markers.append("m" if QUOTE_MARK.match(line) else "t")
        index += 1
    return "".join(markers)


def _splitter_before_text(markers: str) -> int | None:
    """First reply header followed, past blank lines, by unquoted text: all below it goes.

    Written as a loop: the equivalent regex, (se*)+((t|f)+e*)+, is quadratic on
    long runs of header lines.
    """
    start = markers.find("s")
    while start >= 0:
        end = start
        while end < len(markers) and markers[end] in "se":
            end += 1
        if end < len(markers) and markers[end] in "tf":
            return start
        start = markers.find("s", end)
    return None


def _trailing_quote(lines: list[str], markers: str) -> tuple[int, int] | None:
    """(start, end) of the ">" block that ends the text, blank lines or a signature aside.

    None when the block is not at the end (an answer is written below it) or when
    nothing but blank lines stands above it.
    """
    end = markers.rfind("m") + 1
    if end == 0:
        return None
    rest = markers[end:]
    if rest.strip("e"):
        if rest.strip("te") or not is_signature("\n".join(lines[end:])):
            return None  # text below the quote: a bottom-posted or inline answer
    start = end - 1
    while start > 0 and (
        markers[start - 1] in "me" or QUOTE_MARK.match(lines[start - 1])  # "> On ... wrote:"
    ):
        start -= 1
    while markers[start] == "e":
        start += 1
    if not markers[:start].strip("e"):
        return None
    return start, end


def _mark_attribution(lines: list[str], markers: str, quote_start: int) -> str:
    """Mark as a reply header the "Alice wrote:" line(s) directly above a trailing quote."""
    above = quote_start - 1
    while above >= 0 and markers[above] == "e":
        above -= 1
    if above < 0 or markers[above] not in "ts":
        return markers
    span = attribution_span(lines, above)
    if span == 2 and markers[above - 1] != "t":
        span = 1 if attribution_span([lines[above]], 0) == 1 else 0
    if not span or (markers[above] == "s" and span == 1):
        return markers  # already a header; or a wrapped one's first line is above it
    first = above - span + 1
    return markers[:first] + "s" * span + markers[above + 1 :]


def _cut(lines: list[str], markers: str) -> list[tuple[int, int]] | None:
    """The (start, end) line ranges to keep; None when nothing is cut."""
    trailing = _trailing_quote(lines, markers)
    if trailing is not None:
        markers = _mark_attribution(lines, markers, trailing[0])
    elif "s" not in markers and not re.search("(me*){3}", markers):
        # Without a reply header, ">" lines with text below them are likely not a quotation.
        markers = markers.replace("m", "t")
    if markers.lstrip("te").startswith("f"):
        return None  # a forward: the forwarded text is the content
    for inline in re.finditer("(?<=m)e*(t[te]*)m", markers):
        before = lines[inline.start() - 1]
        if not (_PARENTHESIS_LINK.search(before) or _PARENTHESIS_LINK.match(lines[inline.start()])):
            # Inline reply: the answers sit between the quotes; only a trailing quote goes,
            # with its attribution, and a signature below it stays for the signature rules.
            if trailing is None:
                return None
            body = len(markers[: trailing[0]].rstrip("es"))
            return [(0, body), (trailing[1], len(lines))]
    start = _splitter_before_text(markers)
    if start is not None:
        return [(0, start)]
    quotation = re.search(r"((?:s|(?:me*){2,}).*me*)[te]*$", markers) or re.search(
        r"((?:se*)+|(?:me*){2,})e*", markers
    )
    if quotation is not None:
        return [(0, quotation.start(1)), (quotation.end(1), len(lines))]
    if trailing is not None:
        # A short quote at the end, under text of the sender's own: it is history too.
        return [(0, trailing[0]), (trailing[1], len(lines))]
    return None
