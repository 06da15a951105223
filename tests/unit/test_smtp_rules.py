from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.smtp import has_bare_line_ending


def test_bare_line_ending__detected() -> None:
    assert not has_bare_line_ending(b"Subject: a\r\n\r\nbody\r\n")
    assert has_bare_line_ending(b"Subject: a\nX-Evil: b\r\n")
    assert has_bare_line_ending(b"Subject: a\rX-Evil: b\r\n")
    assert has_bare_line_ending(b"body\n.\r\n")
    assert has_bare_line_ending(b"body\r\r\n")
    assert has_bare_line_ending(b"body\n\r")


@given(st.lists(st.binary(max_size=20).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
                max_size=10))
def test_bare_line_ending__clean_crlf_lines_pass(lines: list[bytes]) -> None:
    assert not has_bare_line_ending(b"".join(line + b"\r\n" for line in lines))
