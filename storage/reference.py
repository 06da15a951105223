"""Public request references: short, human-quotable, derived from the inbox id.

The 40-bit inbox id is shuffled by a small Feistel network (a bijection, so two
ids never share a reference and no lookup table or retry is needed) and
written as eight Crockford base32 characters, e.g. ``7KQ2-9XMD``. Shuffling
only hides the volume and order of requests; it is not a secret: reading a
request always needs a token.

Each install keys the shuffle with its own secret (`References`, made from
the database's install key: storage/install_key.py), so two installs' first
references differ and volume cannot be read off them. Ids stored before the
install had a key keep the unkeyed shuffle they were given: those references
were handed out and must still resolve. The keyed ids are first shuffled
among themselves (the keyed network, cycle-walked to stay at or above the
first keyed id) and then put through the unkeyed one, so a keyed reference
never equals an older one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U
_DECODE = {c: i for i, c in enumerate(_ALPHABET)} | {"O": 0, "I": 1, "L": 1}
_HALF_BITS = 20
_HALF_MASK = (1 << _HALF_BITS) - 1
_ROUNDS = 4
MAX_ID = (1 << (2 * _HALF_BITS)) - 1


def _round(value: int, round_no: int, key: bytes) -> int:
    # An empty key is blake2b unkeyed: the shuffle every reference had before keys.
    digest = hashlib.blake2b(f"{round_no}:{value}".encode(), digest_size=4, key=key).digest()
    return int.from_bytes(digest, "big") & _HALF_MASK


def _permute(value: int, key: bytes = b"") -> int:
    left, right = value >> _HALF_BITS, value & _HALF_MASK
    for i in range(_ROUNDS):
        left, right = right, left ^ _round(right, i, key)
    return (left << _HALF_BITS) | right


def _unpermute(value: int, key: bytes = b"") -> int:
    left, right = value >> _HALF_BITS, value & _HALF_MASK
    for i in reversed(range(_ROUNDS)):
        left, right = right ^ _round(left, i, key), left
    return (left << _HALF_BITS) | right


# References remembered per install (a few batches' worth).
RECENT_REFERENCES = 4096


class References:
    """The references of one install: `key` shuffles the ids from `keyed_from` on;
    lower ids keep the unkeyed shuffle. Without a key, every id is unkeyed."""

    def __init__(self, key: bytes = b"", keyed_from: int = MAX_ID + 1) -> None:
        # Up to half the id space: cycle walking then takes two steps on average
        # (a trillion inbox items would be needed to come near the bound).
        if key and not 0 < keyed_from <= MAX_ID // 2:
            raise ValueError(f"keyed_from out of range: {keyed_from}")
        if len(key) > 64:
            raise ValueError("a reference key is at most 64 bytes (blake2b)")
        self._key = key
        self._from = keyed_from if key else MAX_ID + 1
        # The pipeline asks for an item's reference several times while storing
        # it (rows, events, answers, logs), and each is a few keyed hash rounds.
        self._recent: dict[int, str] = {}

    def __reduce__(self) -> tuple[type[References], tuple[bytes, int]]:
        # Pickled (to a build process) as its key alone, without what it remembers.
        return References, (self._key, self._from)

    def _walk(self, value: int, step: Callable[[int, bytes], int]) -> int:
        # Cycle walking: the keyed network is a bijection of all 40-bit values, so
        # stepping until the value is back in [keyed_from, MAX_ID] is one of that
        # range (expected steps: 2**40 / the range's size, at most two).
        while True:
            value = step(value, self._key)
            if value >= self._from:
                return value

    def reference_for(self, item_id: int) -> str:
        found = self._recent.get(item_id)
        if found is not None:
            return found
        if not 0 < item_id <= MAX_ID:
            raise ValueError(f"id out of range for a reference: {item_id}")
        value = _permute(self._walk(item_id, _permute) if item_id >= self._from else item_id)
        chars = "".join(_ALPHABET[(value >> shift) & 31] for shift in range(35, -1, -5))
        reference = f"{chars[:4]}-{chars[4:]}"
        if len(self._recent) >= RECENT_REFERENCES:
            self._recent.clear()  # bounded: a batch's items are asked about together
        self._recent[item_id] = reference
        return reference

    def id_for(self, reference: str) -> int | None:
        """The inbox id behind a reference, forgiving case, hyphens and look-alikes."""
        text = reference.strip().upper().replace("-", "")
        if len(text) != 8 or any(c not in _DECODE for c in text):
            return None
        value = 0
        for c in text:
            value = (value << 5) | _DECODE[c]
        item_id = _unpermute(value)
        if not 0 < item_id <= MAX_ID:
            return None
        return item_id if item_id < self._from else self._walk(item_id, _unpermute)


def canonical(reference: str) -> str | None:
    """A reference as we write it (upper case, hyphen, look-alikes mended), or None
    for text that cannot be one; the same under every key, so no key is needed."""
    item_id = UNKEYED.id_for(reference)
    return None if item_id is None else UNKEYED.reference_for(item_id)


# Unkeyed: what installs without a key (and tools with no database) use.
UNKEYED = References()
reference_for = UNKEYED.reference_for
id_for = UNKEYED.id_for
