"""gateway/smtp_data.py: DATA read a block at a time gives what aiosmtpd's
line-at-a-time loop gives, however the client's bytes arrive."""

from __future__ import annotations

import asyncio

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.smtp_data import TOO_LONG, TOO_MUCH, read_data

NEXT = b"QUIT\r\n"  # what the client sends after the data: left in the stream


def aiosmtpd_loop(stream: bytes, size_limit: int, line_limit: int) -> tuple[bytes | str, bytes]:
    """aiosmtpd's DATA loop over `stream` (what follows the DATA command), a
    CRLF-ended line at a time: the data or the refusal, and what is left."""
    position, kept, counted, refusal = 0, [], 0, None
    while True:
        end = stream.index(b"\r\n", position) + 2
        line, position = stream[position:end], end
        if line == b".\r\n":
            break
        counted += len(line)
        if refusal is None and size_limit and counted > size_limit:
            refusal = TOO_MUCH
        if refusal is None and len(line) > line_limit:
            refusal = TOO_LONG
        kept.append(line[1:] if line.startswith(b".") else line)
    return (refusal if refusal is not None else b"".join(kept)), stream[position:]


async def read_in_pieces(stream: bytes, cuts: list[int], size_limit: int, line_limit: int,
                         stream_limit: int | None = None) -> tuple[bytes | str, bytes]:
    # aiosmtpd makes its stream's limit the line limit; any other limit only
    # cuts the blocks elsewhere (often inside a line, as a slow client would).
    reader = asyncio.StreamReader(limit=stream_limit or line_limit)
    reading = asyncio.create_task(read_data(reader, size_limit=size_limit,
                                            line_limit=line_limit))
    start = 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        if cut > start:
            reader.feed_data(stream[start:cut])
            start = cut
        await asyncio.sleep(0)
    result = await asyncio.wait_for(reading, 5)
    left = await asyncio.wait_for(reader.readexactly(len(reader._buffer)), 5)  # type: ignore[attr-defined]
    return result, left


LINE = st.binary(max_size=40).map(lambda b: b.replace(b"\r\n", b"\n\r")) | st.sampled_from(
    [b"", b".", b"..", b".a", b"a.", b"\r", b"\n", b".\r", b"\n.", b"From a"])


@settings(max_examples=400, deadline=None)
@given(lines=st.lists(LINE, max_size=30), data=st.data(),
       size_limit=st.sampled_from([0, 30, 200, 10**6]), line_limit=st.integers(8, 60),
       stream_limit=st.none() | st.integers(5, 64))
@example(lines=[], data=None, size_limit=0, line_limit=8, stream_limit=None)
@example(lines=[b"."], data=None, size_limit=0, line_limit=8, stream_limit=None)
# A line over the limit that arrives in two blocks, each part within it.
@example(lines=[b"a" * 14, b"x" * 12 + b"y" * 12, b"b"], data=None, size_limit=0,
         line_limit=30, stream_limit=20)
async def test_read_data__as_aiosmtpds_loop(lines: list[bytes], data: st.DataObject | None,
                                            size_limit: int, line_limit: int,
                                            stream_limit: int | None) -> None:
    stream = b"".join(line + b"\r\n" for line in lines) + b".\r\n" + NEXT
    cuts = (data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
            if data is not None else [])
    expected, left = aiosmtpd_loop(stream, size_limit, line_limit)
    got, got_left = await read_in_pieces(stream, cuts, size_limit, line_limit, stream_limit)
    assert got_left == left
    if isinstance(expected, str) and isinstance(got, str) and got != expected:
        # Both limits passed within one line: aiosmtpd's own answer then depends
        # on how the line arrived (it marks a line too long as soon as its
        # stream's limit is passed); either refusal is right.
        data_lines = stream[: len(stream) - len(left)].split(b"\r\n")
        assert any(len(line) + 2 > line_limit for line in data_lines)
        assert size_limit and len(stream) - len(left) - 3 > size_limit
        return
    assert got == expected


async def test_read_data__a_large_message_in_few_reads() -> None:
    body = b"".join(b".line %d of a long message, dots and all\r\n" % n for n in range(5000))
    stream = body + b".\r\n" + NEXT
    got, left = await read_in_pieces(stream, [65536 * n for n in range(1, 8)], 0, 1001)
    assert got == body.replace(b"\r\n.", b"\r\n")[1:] and left == NEXT


async def test_read_data__refused_data_is_read_to_its_end_and_not_kept() -> None:
    long_line = b"x" * 5000 + b"\r\n"
    got, left = await read_in_pieces(b"a\r\n" + long_line * 3 + b".\r\n" + NEXT,
                                     [100, 2000, 7000], 0, 1001)
    assert (got, left) == (TOO_LONG, NEXT)
    got, left = await read_in_pieces(b"abc\r\n" * 100 + b".\r\n" + NEXT, [7, 333], 250, 1001)
    assert (got, left) == (TOO_MUCH, NEXT)


async def test_read_data__a_line_at_the_limit_whose_crlf_arrives_in_two_blocks() -> None:
    # 28 octets and CRLF: exactly the limit of 30. The first block ends with its CR.
    stream = b"z" * 28 + b"\r\nabc\r\n.\r\n" + NEXT
    got, left = await read_in_pieces(stream, [33], 0, 30, stream_limit=20)
    assert (got, left) == (b"z" * 28 + b"\r\nabc\r\n", NEXT)
