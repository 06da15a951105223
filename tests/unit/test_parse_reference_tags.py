from __future__ import annotations

import pytest

from parsers.reference_tags import find_reference_tags


def test_reference_tags__default_format() -> None:
    assert find_reference_tags("Re: printer [#R-1042]") == ("R-1042",)


def test_reference_tags__several_once_each_in_order() -> None:
    assert find_reference_tags("[#B-2] Re: [#A-1] Fw: [#B-2]") == ("B-2", "A-1")


def test_reference_tags__spaces_and_case_tolerated() -> None:
    assert find_reference_tags("AW: [ ticket#77 ] x", "[Ticket#{ref}]") == ("77",)


def test_reference_tags__none_and_empty_ref() -> None:
    assert find_reference_tags("printer broken") == ()
    assert find_reference_tags("[#]") == ()


def test_reference_tags__format_without_placeholder_is_rejected() -> None:
    with pytest.raises(ValueError):
        find_reference_tags("x", "[#ref]")
