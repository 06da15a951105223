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


def _stock_getaddr(arg: str) -> tuple[str | None, str | None]:
    from aiosmtpd.smtp import SMTP

    return SMTP._getaddr(object.__new__(SMTP), arg)


def _our_getaddr(arg: str) -> tuple[str | None, str | None]:
    from gateway.smtp import IntakeSMTP

    return IntakeSMTP._getaddr(object.__new__(IntakeSMTP), arg)


def test_getaddr__fast_path_agrees_with_aiosmtpd() -> None:
    cases = ["<a@b.example>", "<a@b.example> SIZE=100 BODY=8BITMIME", "<>", "<a.b+c@x-y.z>",
             '<"quoted local"@b.example>', "<@relay:a@b.example>", "a@b.example",
             "<a@b.example> (comment) SIZE=1", "<a..b@c>", "<a@b.example>\tSIZE=5",
             "<J\u00fcrgen@b.example>", "<a@[127.0.0.1]>", "<a@b.example",
             "<a@b..c>", "<a@-b.c>", "<a@b.c.>", "<a@b-.c>", "<a@b_c.d>"]
    for arg in cases:
        assert _our_getaddr(arg) == _stock_getaddr(arg), arg


local = st.from_regex(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,10}(\.[A-Za-z0-9_-]{1,5}){0,2}",
                      fullmatch=True)
domain = st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True)


@given(local, domain, st.sampled_from(["", " SIZE=10", "  BODY=8BITMIME SIZE=1"]))
def test_getaddr__same_as_aiosmtpd_on_generated_paths(lp: str, dom: str, rest: str) -> None:
    arg = f"<{lp}@{dom}>{rest}"
    assert _our_getaddr(arg) == _stock_getaddr(arg)
