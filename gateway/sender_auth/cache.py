"""A bounded cache of DNS answers, each kept until its own expiry: least
recently used first out when the entries or their bytes are over the bound."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        # key -> (expires at, value, its size)
        self._entries: OrderedDict[K, tuple[float, V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K, now: float) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: K, value: V, ttl: float, now: float, size: int) -> None:
        if ttl <= 0 or self._max_entries <= 0 or size > self._max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (now + ttl, value, size)
        self._bytes += size
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            self._drop(next(iter(self._entries)))

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def _drop(self, key: K) -> None:
        self._bytes -= self._entries.pop(key)[2]
