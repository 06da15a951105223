from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from storage.reference import MAX_ID, References, canonical, id_for, reference_for


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


def test_reference__keyed_per_install() -> None:
    """Two installs' keys give two different first references, and neither is the
    unkeyed 7PY9-9T9S every install used to start at."""
    first, second = References(b"k" * 32, 1), References(b"q" * 32, 1)
    assert reference_for(1) == "7PY9-9T9S"
    assert len({first.reference_for(1), second.reference_for(1), "7PY9-9T9S"}) == 3
    # In order, keyed references do not count up in any visible way either.
    refs = [first.reference_for(i) for i in range(1, 2001)]
    assert len(set(refs)) == 2000 and refs != sorted(refs)


@given(st.binary(min_size=16, max_size=64), st.integers(min_value=1, max_value=MAX_ID // 2),
       st.integers(min_value=1, max_value=MAX_ID))
def test_reference__keyed_round_trip_and_older_ids_unchanged(
        key: bytes, keyed_from: int, item_id: int) -> None:
    refs = References(key, keyed_from)
    ref = refs.reference_for(item_id)
    assert refs.id_for(ref) == item_id
    if item_id < keyed_from:
        assert ref == reference_for(item_id)  # handed out before the key: still the same
    else:
        # Never the reference an older (unkeyed) id was given.
        older = id_for(ref)
        assert older is not None and older >= keyed_from


def test_reference__keyed_ids_never_take_an_older_reference() -> None:
    refs = References(b"s" * 32, 1001)
    older = {reference_for(i) for i in range(1, 1001)}
    newer = {refs.reference_for(i) for i in range(1001, 6001)}
    assert not older & newer
    assert all(refs.id_for(r) is not None and refs.id_for(r) <= 1000 for r in older)


def test_reference__canonical_spelling_needs_no_key() -> None:
    ref = References(b"z" * 32, 1).reference_for(77)
    assert canonical(ref.lower().replace("-", "")) == ref
    assert canonical("not-a-ref") is None
