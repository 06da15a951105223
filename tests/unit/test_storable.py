"""`needs_change` (the hot-path check) agrees with `storable` (the fix) on
every JSON-like value: it says True exactly when storing would change it.
`stored_as_is` (the faster check for JSON columns) says True exactly when the
columns' encoder writes the value as it writes its storable form."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import example, given
from hypothesis import strategies as st

from storage.engine import json_text
from storage.storable import (
    ENCODED_AT_ONCE,
    is_storable,
    needs_change,
    storable,
    stored_as_is,
)

# Text with the characters that matter: NUL, lone surrogates, non-ASCII.
texts = st.text(alphabet=st.sampled_from(["a", "Z", " ", "é", "☃", "\x00", "\ud800",
                                          "\udfff", "😀"]), max_size=6)
leaves = (texts | st.integers() | st.booleans() | st.none()
          | st.floats(allow_nan=True, allow_infinity=True))
values = st.recursive(
    leaves,
    lambda inner: (st.lists(inner, max_size=4)
                   | st.dictionaries(texts | st.integers(), inner, max_size=4)),
    max_leaves=20)


@given(values)
def test_needs_change__exactly_when_storable_changes_the_value(value: Any) -> None:
    assert needs_change(value) == (repr(storable(value)) != repr(value))


def test_needs_change__the_cases_by_name() -> None:
    assert needs_change({"a": "x\x00"}) and needs_change({"a": "\ud800"})
    assert needs_change({"a": [1, None, "\x00"]}) and needs_change({"a": float("nan")})
    assert needs_change({1: "a"}) and needs_change({"k\x00": 1})
    assert not needs_change({"a": "é", "b": True, "c": [1, None, "plain"], "d": 2.5})


def _written(value: Any) -> str | None:
    """What a JSON column holds for `value`, or None when the database refuses it
    (PostgreSQL's jsonb: a NUL, a lone surrogate, NaN as the stdlib writes it)."""
    text = json_text(value)

    def refuse(constant: str) -> Any:
        raise ValueError(constant)

    try:
        read = json.loads(text, parse_constant=refuse)
    except ValueError:
        return None
    return None if needs_change(read) else text


@given(values)
@example({0: -9223372036854775809})  # refused by orjson, written alike by the stdlib
def test_stored_as_is__exactly_when_the_column_holds_the_storable_form(value: Any) -> None:
    stored = _written(storable(value))
    assert stored is not None  # the fix always gives a value both databases take
    try:
        orjson.dumps(value)
    except TypeError:  # refused by orjson: the walk answers, as `needs_change` does
        assert stored_as_is(value) == (not needs_change(value))
        assert not stored_as_is(value) or _written(value) == stored
    else:
        assert stored_as_is(value) == (_written(value) == stored)


def test_stored_as_is__the_cases_by_name() -> None:
    for changed in ({"a": "x\x00"}, {"a": "\ud800"}, {"a": [1, None, "\x00"]}, {1: "a"},
                    {"k\x00": 1}, {"a": float("nan"), "b": "\ud800"}, "\x00", [2**70, "\x00"]):
        assert not stored_as_is(changed), changed
    # NaN and Infinity: the encoder writes null, as it writes storable's None.
    for kept in ({"a": "é", "b": [1, None, "plain"], "c": 2.5}, {"a": float("nan")},
                 [float("inf")], {"text": "a literal \\u0000, not a NUL"}, 2**70):
        assert stored_as_is(kept), kept
        assert json_text(kept) == json_text(storable(kept))


def test_is_storable__found_in_any_slice_of_a_long_text() -> None:
    long = "é" * (ENCODED_AT_ONCE + 10)
    assert is_storable(long) and is_storable(long + "😀" + long)
    assert not is_storable(long + "\ud800") and not is_storable("\udfff" + long)
    assert not is_storable(long + "\x00") and not is_storable("a\x00b")
