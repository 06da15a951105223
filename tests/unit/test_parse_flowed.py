from __future__ import annotations

from parsers.flowed import unflow
from parsers.mail import parse_email


def test_flowed__soft_breaks_joined_per_quote_depth() -> None:
    text = "A long line \nwrapped.\n\n> quoted \n> part.\n>> deeper \n>> one\n-- \nSig"
    assert unflow(text, delsp=False) == (
        "A long line wrapped.\n\n> quoted part.\n>> deeper one\n-- \nSig"
    )


def test_flowed__delsp_and_space_stuffing() -> None:
    assert unflow("Hallo Wel \nt\n From here", delsp=True) == "Hallo Welt\nFrom here"


def test_flowed__applied_to_flowed_parts_only() -> None:
    raw = (
        b"Content-Type: text/plain; charset=utf-8; format=flowed\r\n\r\n"
        b"The printer on floor three \r\nis offline.\r\n"
    )
    assert parse_email(raw).text == "The printer on floor three is offline.\n"
