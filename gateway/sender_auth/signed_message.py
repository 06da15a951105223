"""A message as dkimpy checks its DKIM signatures and ARC sets: the header
section alone, the body hashed apart (body_hash.py), and hostile header
fields bounded before dkimpy's regexes see them.

The body, the one part whose cost grows with the message, is hashed before
dkimpy runs, on the event loop a slice at a time (`Received.hash_body`),
once per way of hashing it for DKIM and ARC together. dkimpy then finds bh=
already computed. A worker thread was tried first: hashlib gives up the GIL
on every update and takes it straight back, and the event loop, waiting for
it, stalled for 50 to 150 ms at a time (a convoy); a slice on the loop
holds it for about a millisecond.

dkimpy does the rest: the signature fields, header canonicalization and
hashing, the keys, RSA, the ARC chain rules. Past a bound the message is
not given to it (DKIM permerror, ARC fail), so what it does on the loop
stays within milliseconds:

- the header section: MAX_HEAD_BYTES and MAX_FIELDS fields (dkimpy's header
  selection costs h= entries times fields);
- one DKIM-Signature or ARC field: MAX_SIGNATURE_BYTES, and MAX_WHITESPACE
  white-space characters (dkimpy's b= checks are quadratic in white space:
  30,000 spaces took 3 s);
- h=: MAX_SIGNED_FIELDS entries.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

import dkim
from dkim.canonicalization import CanonicalizationPolicy

from gateway.sender_auth.body_hash import BodyHasher, body_hash, slices, split_message

MAX_HEAD_BYTES = 128 * 1024  # Postfix cuts header sections at 100 KB
MAX_FIELDS = 1000
MAX_SIGNATURE_BYTES = 8 * 1024  # a 4096-bit RSA signature, folded, is under 1 KB
MAX_WHITESPACE = 512
MAX_SIGNED_FIELDS = 150
_SPACE = re.compile(rb"\s+")

# (body canonicalization, a=, l=): the ways a body is hashed.
BodyKey = tuple[bytes, bytes, int | None]


class _Quiet(logging.LoggerAdapter):  # type: ignore[type-arg]
    """dkimpy logs what it finds wrong in a message at ERROR: hostile input,
    not our error, so at DEBUG."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        super().log(logging.DEBUG, msg, *args, **kwargs)

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 (logging's name)
        return bool(self.logger.isEnabledFor(logging.DEBUG))


LIBRARY_LOG = _Quiet(logging.getLogger("intake.sender_auth.dkimpy"), {})


def screened(value: bytes) -> bool:
    """A signature field small and plain enough for dkimpy's regexes."""
    spaces = sum(value.count(c) for c in (b" ", b"\t", b"\r", b"\n"))
    return len(value) <= MAX_SIGNATURE_BYTES and spaces <= MAX_WHITESPACE


def body_key(sig: dict[bytes, bytes], default_c: bytes) -> BodyKey:
    """How a signature's tags say to hash the body; raises on bad tags (dkimpy
    says so again, as permerror, when it checks the signature)."""
    policy = CanonicalizationPolicy.from_c_value(sig.get(b"c", default_c))
    length = int(sig[b"l"]) if b"l" in sig else None
    if length is not None and length < 0:
        raise dkim.MessageFormatError("negative l=")
    if sig[b"a"] not in dkim.HASH_ALGORITHMS:
        raise dkim.MessageFormatError("unknown a=")
    return policy.body_algorithm.name, sig[b"a"], length


@dataclass(slots=True)
class Received:
    """One message being verified: its bytes, where dkimpy's parser ends its
    header section (None: past MAX_HEAD_BYTES), and its body digests."""

    raw: bytes
    head: bytes | None = field(default=None, init=False)
    body_start: int = field(default=0, init=False)
    digests: dict[BodyKey, bytes] = field(default_factory=dict, init=False)
    # DKIM's and ARC's hashing, one after the other: the second finds the first's.
    hashing: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    def __post_init__(self) -> None:
        parts = split_message(self.raw, MAX_HEAD_BYTES)
        if parts is not None:
            self.head, self.body_start = parts

    async def hash_body(self, keys: set[BodyKey]) -> None:
        """Compute the digests not computed yet, a slice at a time, letting the
        event loop run between slices."""
        async with self.hashing:
            await self._hash_body(keys)

    async def _hash_body(self, keys: set[BodyKey]) -> None:
        for key in sorted(keys - self.digests.keys(), key=repr):
            canonicalization, algorithm, length = key
            hashing = BodyHasher(canonicalization == b"relaxed",
                                 dkim.HASH_ALGORITHMS[algorithm], length)
            for piece in slices(self.raw, self.body_start):
                hashing.update(piece)
                await asyncio.sleep(0)
            self.digests[key] = hashing.digest()

    def digest(self, key: BodyKey) -> bytes:
        if key not in self.digests:  # not foreseen (cannot happen): hashed here, in one go
            canonicalization, algorithm, length = key
            self.digests[key] = body_hash(self.raw, canonicalization == b"relaxed",
                                          dkim.HASH_ALGORITHMS[algorithm], length,
                                          self.body_start)
        return self.digests[key]


class _BodyApart:
    """dkimpy's `verify_sig_process` with bh= checked against our digest;
    dkimpy itself holds the header section only."""

    received: Received
    _default_c = b"simple/simple"

    def verify_sig_process(self, sig: dict[bytes, bytes], include_headers: list[bytes],
                           sig_header: Any, dnsfunc: Any) -> Any:
        if len(include_headers) > MAX_SIGNED_FIELDS:
            raise dkim.MessageFormatError("too many signed header fields")
        if b"bh" in sig:
            digest = self.received.digest(body_key(sig, self._default_c))
            if digest != base64.b64decode(_SPACE.sub(b"", sig[b"bh"])):
                raise dkim.ValidationError("body hash mismatch")
            sig = {tag: value for tag, value in sig.items() if tag != b"bh"}
        return super().verify_sig_process(  # type: ignore[misc]
            sig, include_headers, sig_header, dnsfunc)


class Dkim(_BodyApart, dkim.DKIM):  # type: ignore[misc]
    pass


class Arc(_BodyApart, dkim.ARC):  # type: ignore[misc]
    _default_c = b"relaxed/relaxed"  # ARC's default (dkimpy sets it before checking)


M = TypeVar("M", Dkim, Arc)


def parse(kind: type[M], received: Received) -> M | None:
    """The message as dkimpy's DKIM or ARC verifier, or None past the bounds."""
    if received.head is None:
        return None
    message = kind(received.head + b"\r\n", logger=LIBRARY_LOG, minkey=1024)
    if len(message.headers) > MAX_FIELDS:
        return None
    message.received = received
    return message
