"""Split an entity into its header fields and body, within fixed bounds.

Done on bytes, without the email package: its header classes are quadratic on
some inputs, and a lenient split copes with bare CR or LF line ends, NUL
bytes and header lines that are not fields at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from parsers.limits import MAX_FIELD_BYTES, MAX_HEADER_BLOCK_BYTES, MAX_HEADER_FIELDS

_BLANK_LINE = re.compile(rb"\r?\n\r?\n|\r\r")
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_FIELD_NAME = re.compile(rb"([!-9;-~]+)[ \t]*:")
# Lines such as "---- Original email message ----" that some tools put above the header.
_MAX_LEADING_JUNK = 2


@dataclass(frozen=True, slots=True)
class HeaderBlock:
    fields: tuple[tuple[str, bytes], ...]
    """(lower-cased name, unfolded raw value) in order of appearance."""
    body: bytes
    defects: tuple[str, ...]

    def get(self, name: str) -> bytes | None:
        for key, value in self.fields:
            if key == name:
                return value
        return None

    def get_all(self, name: str) -> list[bytes]:
        return [value for key, value in self.fields if key == name]


def split_entity(raw: bytes) -> HeaderBlock:
    """Header fields and body of one RFC 5322 entity."""
    defects: list[str] = []
    if raw[:1] in (b"\n",) or raw[:2] == b"\r\n":
        # No header at all: the entity is all body (RFC 2046 default type).
        return HeaderBlock((), raw[2 if raw[:1] == b"\r" else 1 :], ())
    match = _BLANK_LINE.search(raw, 0, MAX_HEADER_BLOCK_BYTES + 4)
    if match is None:
        if len(raw) > MAX_HEADER_BLOCK_BYTES:
            defects.append(f"header section longer than {MAX_HEADER_BLOCK_BYTES} bytes cut")
            head, body = raw[:MAX_HEADER_BLOCK_BYTES], raw[MAX_HEADER_BLOCK_BYTES:]
        else:
            head, body = raw, b""
    else:
        head, body = raw[: match.start()], raw[match.end() :]
    fields: list[tuple[str, bytes]] = []
    name: str | None = None
    value: list[bytes] = []
    size = 0
    cut_fields = 0
    junk = 0
    for line in _LINE_BREAK.split(head):
        if line[:1] in (b" ", b"\t") and name is not None:
            size += len(line)
            if size <= MAX_FIELD_BYTES:
                value.append(line)
            continue
        if name is not None:
            fields.append((name, _finish(value, size, name, defects)))
            name = None
        found = _FIELD_NAME.match(line)
        if found is None:
            if line.strip() and not line.startswith(b"From "):
                if not fields:
                    junk += 1
                    if junk > _MAX_LEADING_JUNK:
                        # Not a header at all: the message has no header section.
                        return HeaderBlock((), raw, ("no header section",))
                defects.append("header line without a field name ignored")
            continue
        if len(fields) >= MAX_HEADER_FIELDS:
            cut_fields += 1
            continue
        name = found.group(1).decode("ascii").lower()
        rest = line[found.end() :]
        size = len(rest)
        value = [rest[:MAX_FIELD_BYTES]]
    if name is not None:
        fields.append((name, _finish(value, size, name, defects)))
    if not fields and junk:
        return HeaderBlock((), raw, ("no header section",))
    if cut_fields:
        defects.append(f"{cut_fields} header fields past {MAX_HEADER_FIELDS} ignored")
    return HeaderBlock(tuple(fields), body, tuple(defects))


def _finish(parts: list[bytes], size: int, name: str, defects: list[str]) -> bytes:
    if size > MAX_FIELD_BYTES:
        defects.append(f"header {name} longer than {MAX_FIELD_BYTES} bytes cut")
    # Unfolding (RFC 5322 section 2.2.3) keeps the white space of the fold.
    value = b"".join(parts).replace(b"\x00", b"")
    return value.strip(b" \t")
