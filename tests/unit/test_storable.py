"""`needs_change` (the hot-path check) agrees with `storable` (the fix) on
every JSON-like value: it says True exactly when storing would change it."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from storage.storable import needs_change, storable

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
