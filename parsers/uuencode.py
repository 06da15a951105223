"""Files uuencoded inside a text body ("begin 644 name" ... "end"), as old mailers send them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from parsers.limits import MAX_UUENCODE_BLOCKS
from parsers.transfer import decode_uu_lines

_BEGIN = re.compile(r"^begin(?:-base64)? [0-7]{3,4} (.+?)\r?$", re.MULTILINE)
_END = re.compile(r"^end\r?$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class UuFile:
    filename: str
    content: bytes


def extract_uuencoded(text: str) -> tuple[str, tuple[UuFile, ...]]:
    """The text with uuencoded blocks removed, and the files they held."""
    if "begin " not in text:
        return text, ()
    files: list[UuFile] = []
    pieces: list[str] = []
    position = 0
    for _ in range(MAX_UUENCODE_BLOCKS):
        begin = _BEGIN.search(text, position)
        if begin is None:
            break
        end = _END.search(text, begin.end())
        if end is None:
            break
        lines = text[begin.end() : end.start()].strip("\r\n").splitlines()
        data = decode_uu_lines([line.encode("latin-1", errors="replace") for line in lines])
        files.append(UuFile(filename=begin.group(1).strip(), content=data))
        pieces.append(text[position : begin.start()])
        position = end.end()
    pieces.append(text[position:])
    return "".join(pieces), tuple(files)
