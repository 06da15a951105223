"""Cut the quoted history off a plain-text reply.

Each line is marked: ``e`` empty, ``m`` quote marker (``>``), ``s`` the
first line(s) of a reply header ("On ... wrote:", "-----Original Message-----",
an Outlook "From: / Sent:" block), ``f`` a forwarded-message header, ``t``
text. The reply is what stands before the quotation that the marker string
shows, the approach of mailgun/talon, written for this project: inline replies
(text between quotes) and forwards are kept whole.
"""

from __future__ import annotations

import re

from parsers.limits import MAX_QUOTE_SCAN_CHARS, MAX_QUOTE_SCAN_LINES
from parsers.reply_headers import (
    QUOTE_MARK,
    is_forwarded_header,
    shared_header_start,
    splitter_span,
)

_SEPARATOR_LINE = re.compile(r"^\s*[-_=*]{3,}\s*$")
_PARENTHESIS_LINK = re.compile(r"\(https?://|^\s*_?[a-z0-9_]*=[^\s]*\)")


def strip_quotes(text: str) -> str:
    """The reply without the quoted history; the text itself when nothing is quoted."""
    if not text.strip():
        return ""
    head = text[:MAX_QUOTE_SCAN_CHARS].replace("\r\n", "\n")
    lines = _split_shared_lines(head.split("\n", MAX_QUOTE_SCAN_LINES)[:MAX_QUOTE_SCAN_LINES])
    markers = mark_lines(lines)
    kept, cut = _cut(lines, markers)
    if not cut:
        return text
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


def _cut(lines: list[str], markers: str) -> tuple[list[str], bool]:
    # Without a reply header, a couple of ">" lines are likely not a quotation.
    if "s" not in markers and not re.search("(me*){3}", markers):
        markers = markers.replace("m", "t")
    if markers.lstrip("te").startswith("f"):
        return lines, False  # a forward: the forwarded text is the content
    for inline in re.finditer("(?<=m)e*(t[te]*)m", markers):
        before = lines[inline.start() - 1]
        if not (_PARENTHESIS_LINK.search(before) or _PARENTHESIS_LINK.match(lines[inline.start()])):
            # Inline reply: the answers sit between the quotes; only a trailing quote goes.
            body = len(markers.rstrip("me"))
            if "m" not in markers[body:]:
                return lines, False
            return lines[:body], True
    start = _splitter_before_text(markers)
    if start is not None:
        return lines[:start], True
    quotation = re.search(r"((?:s|(?:me*){2,}).*me*)[te]*$", markers) or re.search(
        r"((?:se*)+|(?:me*){2,})e*", markers
    )
    if quotation is not None:
        return lines[: quotation.start(1)] + lines[quotation.end(1) :], True
    return lines, False
