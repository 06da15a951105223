"""The mailbox channel's pure pieces: IMAP spellings, batches, Message-IDs."""

from __future__ import annotations

import asyncio

import pytest

from gateway.config.loader import InvalidConfigError, build_config
from gateway.mailbox.client import (
    MAX_LINE_BYTES,
    ImapError,
    Sized,
    _Fetch,
    _Protocol,
    encode_folder,
    uid_set,
)
from gateway.mailbox.fetcher import BATCH_BYTES, BATCH_MESSAGES, HEADER_LIMIT, batches, message_id


@pytest.mark.parametrize(("name", "spelt"), [
    ("INBOX", '"INBOX"'),
    ("Sent Items", '"Sent Items"'),
    ("Entwürfe", '"Entw&APw-rfe"'),              # RFC 3501 5.1.3's own kind of example
    ("R&D", '"R&-D"'),
    ("日本語", '"&ZeVnLIqe-"'),
    ('a"b\\c', '"a\\"b\\\\c"'),
])
def test_encode_folder__modified_utf7_quoted(name: str, spelt: str) -> None:
    assert encode_folder(name) == spelt


def test_uid_set__ranges() -> None:
    assert uid_set([5, 1, 2, 3, 9, 10, 7]) == "1:3,5,7,9:10"
    assert uid_set([4]) == "4"
    assert uid_set([]) == ""


def test_batches__bounded_by_count_and_bytes() -> None:
    small = [Sized(uid, 1000, None) for uid in range(1, BATCH_MESSAGES * 2 + 2)]
    assert [len(b) for b in batches(small, 10**9)] == [BATCH_MESSAGES, BATCH_MESSAGES, 1]
    big = [Sized(uid, BATCH_BYTES // 2 + 1, None) for uid in range(1, 4)]
    assert [len(b) for b in batches(big, 10**9)] == [1, 1, 1]
    # Over the size limit: only its header part is fetched, so it costs little.
    huge = [Sized(uid, 10**9, None) for uid in range(1, 4)]
    assert [len(b) for b in batches(huge, 1000)] == [3]
    assert 3 * HEADER_LIMIT < BATCH_BYTES


def test_message_id__from_the_header_section_only() -> None:
    raw = b"Subject: x\r\nMessage-Id:  <a@b>\r\n\r\nMessage-ID: <body@x>\r\n"
    assert message_id(raw) == "<a@b>"
    assert message_id(b"Subject: x\r\n\r\nMessage-ID: <body@x>\r\n") is None
    # Bare LF line ends: the header section ends at the first blank line of either kind.
    assert message_id(b"Subject: x\nMessage-ID: <a@b>\n\nbody\r\n\r\n") == "<a@b>"
    assert message_id(b"Subject: x\n\nMessage-ID: <body@x>\r\n\r\n") is None
    assert message_id(b"Subject: x\r\n\r\nbody\n\nMessage-ID: <body@x>\n") is None
    assert message_id(b"Message-ID: <only@head>") == "<only@head>"
    assert message_id(b"Message-ID: <cut@\r\n\r\nx>") is None


def _mailbox(**values: object) -> dict[str, object]:
    return {"name": "support", "host": "imap.example.com", "user": "support@example.com",
            "password_env": "PW", "after": "move", "move_to": "Done"} | values


@pytest.mark.parametrize(("values", "problem"), [
    ({"password_env": None}, "either password_env or [mailbox.oauth2]"),
    ({"after": "move", "move_to": None}, "needs move_to"),
    ({"move_to": "INBOX"}, "move_to cannot be one of the folders"),
    ({"tls": "none"}, "only to a loopback address"),
    ({"folders": ["INBOX", "INBOX"]}, "named twice"),
    ({"folders": ["bad\nname"]}, "not a folder name"),
    ({"name": "no spaces"}, "name"),
    ({"oauth2": {"token_url": "ftp://x", "client_id": "c", "refresh_token_env": "R"}},
     "token_url"),
])
def test_mailbox_config__mistakes_named(values: dict[str, object], problem: str) -> None:
    with pytest.raises(InvalidConfigError) as raised:
        build_config({"mailbox": [_mailbox(**values)]}, "<test>", {})
    assert problem in str(raised.value)


def test_mailbox_config__defaults_and_two_names() -> None:
    config = build_config({"mailbox": [_mailbox(), _mailbox(name="sales", tls="starttls")]},
                          "<test>", {})
    first, second = config.mailbox
    assert first.address == ("imap.example.com", 993) and second.address[1] == 143
    assert first.folders == ["INBOX"] and first.mode == "intake" and first.idle
    with pytest.raises(InvalidConfigError, match="duplicate mailbox"):
        build_config({"mailbox": [_mailbox(), _mailbox()]}, "<test>", {})


class _Transport:
    def __init__(self) -> None:
        self.written = b""

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        pass


def _reply(count: int) -> bytes:
    parts = [b"* %d FETCH (UID %d BODY[] {%d}\r\n%s)\r\n" % (n, n + 10, len(b"m%d\r\n" % n),
                                                            b"m%d\r\n" % n)
             for n in range(1, count + 1)]
    return b"".join(parts) + b"A1 OK Fetch completed.\r\n"


async def _read(data: bytes, chunk: int) -> list[object]:
    loop = asyncio.get_running_loop()
    protocol = _Protocol(loop, None)
    protocol.transport = _Transport()
    protocol.state = "SELECTED"
    command = _Fetch("A1", "1:*", "(UID BODY.PEEK[])", prefix="UID", loop=loop)
    protocol.pending_async_commands[command.untagged_resp_name] = command
    for start in range(0, len(data), chunk):
        protocol.data_received(data[start:start + chunk])
    await asyncio.wait_for(command.wait(), 2)
    assert command.response.result == "OK"
    return list(command.response.lines)


async def test_reader__any_split_of_the_data_reads_the_same() -> None:
    data = _reply(5)
    whole = await _read(data, len(data))
    assert whole[1] == bytearray(b"m1\r\n") and whole[-1] == b"Fetch completed."
    for chunk in (1, 2, 3, 7, 64):
        assert await _read(data, chunk) == whole


async def test_reader__thousands_of_lines_in_one_read_need_no_recursion() -> None:
    # aioimaplib's own reader recursed once per line: past ~1,000 lines in one
    # read, RecursionError.
    lines = await _read(_reply(3000), 10**9)
    assert len(lines) == 3 * 3000 + 1 and lines[-2] == b")"


async def test_reader__an_endless_line_is_refused() -> None:
    loop = asyncio.get_running_loop()
    protocol = _Protocol(loop, None)
    protocol.transport = _Transport()
    protocol.state = "SELECTED"
    with pytest.raises(ImapError, match="a line of over"):
        for _ in range(MAX_LINE_BYTES // 65536 + 2):
            protocol.data_received(b"x" * 65536)


def test_internal_date__imap_form_as_rfc3339() -> None:
    from gateway.mailbox.client import _internal_date

    assert _internal_date(b"05-Dec-2026 03:24:06 +0000") == "2026-12-05T03:24:06+00:00"
    assert _internal_date(b" 5-Dec-2026 03:24:06 -0500") == "2026-12-05T03:24:06-05:00"
    assert _internal_date(b"31-Feb-2026 03:24:06 +0000") is None
    assert _internal_date(b"\x00garbage") is None
