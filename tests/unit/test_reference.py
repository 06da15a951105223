from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from storage.reference import MAX_ID, id_for, reference_for


@given(st.integers(min_value=1, max_value=MAX_ID))
def test_reference__round_trip(item_id: int) -> None:
    ref = reference_for(item_id)
    assert len(ref) == 9 and ref[4] == "-"
    assert id_for(ref) == item_id
    assert id_for(ref.lower().replace("-", "")) == item_id


def test_reference__distinct_and_not_sequential() -> None:
    refs = [reference_for(i) for i in range(1, 5001)]
    assert len(set(refs)) == 5000
    assert refs != sorted(refs)


def test_reference__look_alikes_forgiven() -> None:
    ref = reference_for(1)  # contains no ambiguous characters itself
    assert id_for(ref.replace("0", "O").replace("1", "I")) == 1


def test_reference__garbage_rejected() -> None:
    for text in ("", "ABC", "UUUU-UUUU", "7PY9-9T9S-X", "!!!!-!!!!"):
        assert id_for(text) is None
