"""Split a message into its MIME entities (RFC 2045, RFC 2046), within fixed caps.

A bytes-level splitter rather than email.feedparser: it finds delimiter lines
with one compiled regex per multipart (fast even on 25 MiB), tolerates a
missing close delimiter, and stops at MAX_MIME_DEPTH, MAX_PARTS and
MAX_BOUNDARY_SCAN_BYTES, recording what it left unsplit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from parsers.header_block import HeaderBlock, split_entity
from parsers.header_values import content_type_params
from parsers.limits import MAX_BOUNDARY_SCAN_BYTES, MAX_MIME_DEPTH, MAX_PARTS
from parsers.transfer import decode_transfer


@dataclass(frozen=True, slots=True)
class Entity:
    block: HeaderBlock
    content_type: str
    params: dict[str, str]
    disposition: str
    disposition_params: dict[str, str]
    children: tuple[Entity, ...]
    # The entity a message/rfc822 body holds, already split.
    message: Entity | None

    @property
    def body(self) -> bytes:
        return self.block.body

    @property
    def transfer_encoding(self) -> str:
        return _transfer_encoding(self.block)

    @property
    def filename(self) -> str | None:
        """The declared file name (Content-Disposition filename, else Content-Type name)."""
        name = self.disposition_params.get("filename") or self.params.get("name") or ""
        return name.strip() or None


@dataclass(slots=True)
class Budget:
    """What is left to spend on this message; shared by all nesting levels."""

    parts_left: int = MAX_PARTS
    scan_bytes_left: int = MAX_BOUNDARY_SCAN_BYTES
    defects: list[str] = field(default_factory=list)


def split_message(
    raw: bytes, budget: Budget, depth: int = 0, charset_hint: str | None = None
) -> Entity:
    """The entity tree of ``raw``; never raises on malformed structure.

    ``charset_hint`` is the nearest enclosing charset label: raw 8-bit file
    names are most often in the charset the rest of the message uses.
    """
    block = split_entity(raw)
    budget.defects.extend(block.defects)
    ctype, params = content_type_params(block.get("content-type"), budget.defects, charset_hint)
    charset_hint = params.get("charset") or charset_hint
    if ctype.count("/") != 1 or " " in ctype:
        if ctype:
            budget.defects.append(f"invalid content type {ctype!r} read as text/plain")
        ctype = "text/plain"
    disposition, disposition_params = content_type_params(
        block.get("content-disposition"), budget.defects, charset_hint
    )
    children: tuple[Entity, ...] = ()
    message: Entity | None = None
    if ctype.startswith("multipart/") or ctype == "message/rfc822":
        if depth >= MAX_MIME_DEPTH:
            budget.defects.append(f"MIME nesting deeper than {MAX_MIME_DEPTH} left unsplit")
        elif ctype == "message/rfc822":
            inner, _ = decode_transfer(block.body, _transfer_encoding(block))
            message = split_message(inner, budget, depth + 1)
        else:
            children = _split_multipart(
                block.body, params.get("boundary"), budget, depth, charset_hint
            )
            if not children:
                ctype = "text/plain"
    return Entity(
        block=block,
        content_type=ctype,
        params=params,
        disposition=disposition,
        disposition_params=disposition_params,
        children=children,
        message=message,
    )


def _transfer_encoding(block: HeaderBlock) -> str:
    value = block.get("content-transfer-encoding")
    return value.decode("ascii", errors="replace").strip().lower() if value else ""


def _split_multipart(
    body: bytes, boundary: str | None, budget: Budget, depth: int, charset_hint: str | None
) -> tuple[Entity, ...]:
    if not boundary:
        budget.defects.append("multipart without boundary read as text")
        return ()
    bodies = split_at_boundary(body, boundary.encode("utf-8", errors="replace"), budget)
    if bodies is None:
        budget.defects.append("multipart boundary not found; body read as text")
        return ()
    children = []
    for part in bodies:
        if budget.parts_left <= 0:
            budget.defects.append(f"MIME parts past {MAX_PARTS} ignored")
            break
        budget.parts_left -= 1
        children.append(split_message(part, budget, depth + 1, charset_hint))
    return tuple(children)


def split_at_boundary(body: bytes, boundary: bytes, budget: Budget) -> list[bytes] | None:
    """Bodies between delimiter lines; None when there is no delimiter at all."""
    if len(body) > budget.scan_bytes_left:
        budget.defects.append("boundary scan budget spent; multipart left unsplit")
        return None
    budget.scan_bytes_left -= len(body)
    # Delimiter lines only (RFC 2046 5.1.1): "--boundaryX" or a mid-line "--boundary"
    # are not ours. The regex runs in C, so lines that merely look alike cost little.
    delimiter = re.compile(rb"^--" + re.escape(boundary) + rb"(--)?[ \t]*\r?$", re.MULTILINE)
    starts: list[tuple[int, int]] = []  # (line start, start of the next line)
    closed = False
    for found in delimiter.finditer(body):
        next_line = found.end() + 1 if body[found.end() : found.end() + 1] == b"\n" else found.end()
        starts.append((found.start(), next_line))
        if found.group(1):
            closed = True
            break
        if len(starts) > budget.parts_left:
            break
    if not starts:
        return None
    if not closed:
        budget.defects.append("multipart without close delimiter")
        starts.append((len(body), len(body)))
    bodies = []
    for (_, begin), (end, _) in zip(starts, starts[1:], strict=False):
        part = body[begin:end]
        # The line break before a delimiter belongs to the delimiter (RFC 2046 5.1.1).
        if part.endswith(b"\r\n"):
            part = part[:-2]
        elif part.endswith((b"\n", b"\r")):
            part = part[:-1]
        bodies.append(part)
    return bodies
