"""gateway/heap.py: what a long-running process does with the cycle collector."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gateway import heap


@pytest.fixture
def collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_settle__freezes_what_exists_and_spaces_young_collections(collector: None) -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    kept = [[n] for n in range(1000)]  # containers made before settling
    heap.settle()
    assert gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, 10, 10)
    # A cycle made after it is still found by a full collection.
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
