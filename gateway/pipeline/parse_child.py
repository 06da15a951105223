"""A parsing process (gateway/pipeline/parsing.py starts it): mail in, what the
parser read out, one at a time, over its standard input and output.

Each message is an 8-byte length and the raw mail; each answer a status byte
(0: parsed, 1: the parser raised, with its text), an 8-byte length and the
pickled ParsedEmail (or the text). It imports the parser alone (about 30 MiB),
and gives the memory of each parse back to the system before the next one, so
the process stays as small as its largest parse only while it parses.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pickle
import struct
import sys
from collections.abc import Callable
from typing import BinaryIO

from parsers.mail import parse_email

LENGTH = struct.Struct("!Q")
PARSED, RAISED = b"\x00", b"\x01"


def _trimmer() -> Callable[[], object]:
    """glibc's malloc_trim: freed heap is returned to the system at once, not
    kept for a next message that may never be as large."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    trim = getattr(libc, "malloc_trim", None)
    return (lambda: trim(0)) if trim is not None else (lambda: None)


def _read(stream: BinaryIO, size: int) -> bytes | None:
    data = stream.read(size)
    return data if len(data) == size else None


def serve(source: BinaryIO, sink: BinaryIO) -> None:
    trim = _trimmer()
    while (head := _read(source, LENGTH.size)) is not None:
        raw = _read(source, LENGTH.unpack(head)[0])
        if raw is None:
            return  # the gateway went away mid-message
        try:
            status, answer = PARSED, pickle.dumps(parse_email(raw),
                                                  protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - reported to the gateway, which decides
            status, answer = RAISED, f"{type(exc).__name__}: {exc}".encode()
        del raw
        sink.write(status + LENGTH.pack(len(answer)))
        sink.write(answer)
        sink.flush()
        del answer
        trim()


def main() -> None:
    # Answers go to a copy of stdout; anything a library prints goes to stderr
    # instead of into the answers.
    sink = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(sys.stdin.buffer, sink)


if __name__ == "__main__":
    main()
