"""The data of an SMTP transaction, read a block at a time.

aiosmtpd reads DATA a line at a time, awaiting its stream for each line: 60
awaits for a 4 KB message, and most of the time a session spends in DATA.
`read_data` asks the stream for everything up to the end-of-data line at once
(the stream hands over what it holds whenever that passes its limit), then
checks line lengths and removes the dot-stuffing (RFC 5321 4.5.2) over whole
blocks, in C. What it gives and refuses is what aiosmtpd's loop does:

- the data ends at the first line that is one dot (RFC 5321 4.1.1.4): CRLF,
  dot, CRLF, where the first CRLF may be the one that ended the DATA command;
- a line is CRLF-terminated; a lone CR or LF stays inside it (the handler
  refuses such data: gateway/smtp.py `has_bare_line_ending`);
- a line longer than `line_limit` octets, its CRLF counted, or data of more
  than `size_limit` octets (dots and line ends counted, the end line not) are
  read to the end of data and then refused, whichever came first in the
  data; nothing more of it is kept. Within one line the size is checked
  first, over the part of the line read so far: a line known too long before
  its end is refused as too long, as aiosmtpd refuses one that passes its
  stream's limit.
"""

from __future__ import annotations

import asyncio

END = b"\r\n.\r\n"
CRLF = b"\r\n"
TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"
TOO_MUCH = "552 Error: Too much mail data"


async def read_data(reader: asyncio.StreamReader, *, size_limit: int | None,
                    line_limit: int) -> bytes | str:
    """The message's data with its dot-stuffing removed, or the refusal to send
    once the data was read to its end. `size_limit` 0 or None: no limit."""
    # The CRLF that ended the DATA command is put back in front of what the
    # client sent after it, so the end line always follows a CRLF, on the
    # first line too. The stream is this session's alone, and read here only.
    reader._buffer[:0] = CRLF  # type: ignore[attr-defined]
    parts: list[bytes] = []
    size = 0  # octets of data so far
    tail = b""  # the line begun and not yet ended, while it matters
    refusal: str | None = None
    first, done = True, False
    while not done:
        try:
            block = await reader.readuntil(END)
            done = True
        except asyncio.LimitOverrunError as overrun:
            # The end is not in what the stream holds, or further than its limit:
            # all it holds but the start of a possible end line, or up to the end.
            block = await reader.readexactly(overrun.consumed)
        if first:
            block, first = block[len(CRLF):], False
        if done:
            block = block[:-3]  # the end line's dot and CRLF; the CRLF before it ends a line
        if refusal is None:
            lines = (tail + block).split(CRLF)  # a CRLF may span two blocks
            refusal = _refusal(lines, size - len(tail), size_limit or 0, line_limit, done)
            if refusal is None:
                parts.append(block)
                tail = lines[-1]  # bounded: longer than a line may be is refused
            else:
                parts.clear()  # refused: nothing more is kept
        size += len(block)
    if refusal is not None:
        return refusal
    return (CRLF + b"".join(parts)).replace(b"\r\n.", CRLF)[len(CRLF):]


def _refusal(lines: list[bytes], counted: int, size_limit: int, line_limit: int,
             done: bool) -> str | None:
    """What refuses the data, if anything, given the `lines` of the line begun
    before this block and the block (the last one still open unless `done`) and
    the octets `counted` before that line began; the first refusal met, a line
    at a time, as aiosmtpd reads them."""
    *ended, rest = lines
    # The open line's length so far, without a CR that may begin its CRLF.
    open_length = len(rest) - rest.endswith(b"\r")
    total = counted + sum(map(len, lines)) + len(CRLF) * len(ended)
    if ((not size_limit or total <= size_limit)
            and max(map(len, ended), default=0) + len(CRLF) <= line_limit
            and (done or open_length + len(CRLF) <= line_limit)):
        return None  # the usual block: nothing over, known in C
    for line in ended:
        counted += len(line) + len(CRLF)
        if size_limit and counted > size_limit:
            return TOO_MUCH
        if len(line) + len(CRLF) > line_limit:
            return TOO_LONG
    if size_limit and counted + len(rest) > size_limit:
        return TOO_MUCH
    if not done and open_length + len(CRLF) > line_limit:
        return TOO_LONG
    return None
