"""Undo format=flowed (RFC 3676): join soft-wrapped lines back into paragraphs."""

from __future__ import annotations

_SIGNATURE_SEPARATOR = "-- "


def unflow(text: str, delsp: bool) -> str:
    """Text of a ``format=flowed`` body with its soft line breaks removed (RFC 3676 4.1-4.5)."""
    out: list[str] = []
    paragraph: list[str] = []
    paragraph_depth = 0
    for raw_line in text.split("\n"):
        line = raw_line.rstrip("\r")
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        if content.startswith(" "):
            content = content[1:]  # space-stuffing (4.4)
        if paragraph and depth != paragraph_depth:
            out.append(_quoted(paragraph_depth, "".join(paragraph)))  # 4.5: depth changed
            paragraph = []
        flowed = content.endswith(" ") and content != _SIGNATURE_SEPARATOR
        if flowed:
            paragraph.append(content[:-1] if delsp else content)
            paragraph_depth = depth
            continue
        paragraph.append(content)
        out.append(_quoted(depth, "".join(paragraph)))
        paragraph = []
    if paragraph:
        out.append(_quoted(paragraph_depth, "".join(paragraph)))
    return "\n".join(out)


def _quoted(depth: int, content: str) -> str:
    return ">" * depth + (" " if depth and content else "") + content
