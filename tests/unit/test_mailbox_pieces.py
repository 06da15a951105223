"""The mailbox channel's pure pieces: IMAP spellings, batches, Message-IDs."""

from __future__ import annotations

import pytest

from gateway.config.loader import InvalidConfigError, build_config
from gateway.mailbox.client import Sized, encode_folder, uid_set
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
