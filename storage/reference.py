"""Public request references: short, human-quotable, derived from the inbox id.

The 40-bit inbox id is shuffled by a small Feistel network (a bijection, so two
ids never share a reference and no lookup table or retry is needed) and
written as eight Crockford base32 characters, e.g. ``7KQ2-9XMD``. Shuffling
only hides the volume and order of requests; it is not a secret: reading a
request always needs a token.
"""

from __future__ import annotations

import hashlib

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U
_DECODE = {c: i for i, c in enumerate(_ALPHABET)} | {"O": 0, "I": 1, "L": 1}
_HALF_BITS = 20
_HALF_MASK = (1 << _HALF_BITS) - 1
_ROUNDS = 4
MAX_ID = (1 << (2 * _HALF_BITS)) - 1


def _round(value: int, round_no: int) -> int:
    digest = hashlib.blake2b(f"{round_no}:{value}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & _HALF_MASK


def _permute(value: int, rounds: range) -> int:
    left, right = value >> _HALF_BITS, value & _HALF_MASK
    for i in rounds:
        left, right = right, left ^ _round(right, i)
    return (left << _HALF_BITS) | right


def _unpermute(value: int) -> int:
    left, right = value >> _HALF_BITS, value & _HALF_MASK
    for i in reversed(range(_ROUNDS)):
        left, right = right ^ _round(left, i), left
    return (left << _HALF_BITS) | right


def reference_for(item_id: int) -> str:
    if not 0 < item_id <= MAX_ID:
        raise ValueError(f"id out of range for a reference: {item_id}")
    value = _permute(item_id, range(_ROUNDS))
    chars = "".join(_ALPHABET[(value >> shift) & 31] for shift in range(35, -1, -5))
    return f"{chars[:4]}-{chars[4:]}"


def id_for(reference: str) -> int | None:
    """The inbox id behind a reference, forgiving case, hyphens and look-alikes."""
    text = reference.strip().upper().replace("-", "")
    if len(text) != 8 or any(c not in _DECODE for c in text):
        return None
    value = 0
    for c in text:
        value = (value << 5) | _DECODE[c]
    item_id = _unpermute(value)
    return item_id if 0 < item_id <= MAX_ID else None
