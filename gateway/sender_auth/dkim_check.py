"""DKIM (RFC 6376) with dkimpy, in three steps: read the signatures; fetch
their keys (all at once, through the message's `Lookups`) while the body is
hashed (signed_message.py); check each signature against its key. No replay
is needed here: a signature names its key. dkimpy's own `verify_sig` would
hide a key's failure to resolve behind False; with the steps apart, a key
that does not answer is temperror, a missing or broken key permerror, a
signature that does not match fail.
The message is dkimpy's as signed_message.py bounds and prepares it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import dkim

from gateway.sender_auth import names
from gateway.sender_auth.lookups import Lookups
from gateway.sender_auth.resolver import ERROR, OK
from gateway.sender_auth.signed_message import BodyKey, Dkim, Received, body_key, parse, screened

MAX_SIGNATURES = 5


@dataclass(slots=True)
class _Signature:
    result: str | None = None    # known before the key: permerror for a broken header
    key_name: str | None = None  # selector._domainkey.domain
    domain: str = ""             # d=, lower case
    sig: Any = None              # dkimpy's parsed tags, header list and field
    include: Any = None
    header: Any = None
    key: bytes = b""             # the key record's text


@dataclass(frozen=True, slots=True)
class DkimOutcome:
    result: str
    domains: tuple[str, ...] = ()  # d= of the signatures that passed


async def check_dkim(received: Received, lookups: Lookups, *,
                     signatures: int) -> DkimOutcome:
    """The DKIM result of the first MAX_SIGNATURES of `signatures` DKIM-Signature
    fields: pass if any passes, else the first one's."""
    if signatures == 0:
        return DkimOutcome("none")
    await lookups.cpu.turn()
    message, found = _read(received, min(signatures, MAX_SIGNATURES))
    if message is None or not found:
        return DkimOutcome("permerror")
    bodies: set[BodyKey] = set()
    for s in found:
        if s.result is None:
            try:
                bodies.add(body_key(s.sig, b"simple/simple"))
            except Exception:  # bad c=, a= or l=: dkimpy's check says permerror
                pass
    keys, _ = await asyncio.gather(
        asyncio.gather(*(lookups.get(s.key_name, "TXT") for s in found
                         if s.key_name is not None)),
        received.hash_body(bodies))
    texts = iter(keys)
    for s in found:
        if s.key_name is None:
            continue
        key = next(texts)
        if key.status == ERROR:
            s.result = "temperror"
        elif key.status != OK or not key.records or not isinstance(key.records[0], tuple):
            s.result = "permerror"  # no key for the signature (RFC 6376 6.1.2)
        else:
            s.key = b"".join(p for p in key.records[0] if isinstance(p, bytes))
    await lookups.cpu.turn()
    _check(message, found)
    passed = tuple(dict.fromkeys(s.domain for s in found if s.result == "pass"))
    if passed:
        return DkimOutcome("pass", passed)
    return DkimOutcome(found[0].result or "permerror")


def _read(received: Received, count: int) -> tuple[Dkim | None, list[_Signature]]:
    try:
        message = parse(Dkim, received)
    except Exception:  # dkimpy's parser raises on header lines it cannot read
        return None, []
    if message is None:
        return None, []
    fields = [value for name, value in message.headers if name.lower() == b"dkim-signature"]
    found = []
    for index in range(min(count, len(fields))):
        signature = _Signature()
        try:
            if not screened(fields[index]):
                raise ValueError("a signature field past the bounds")
            prepared = message.verify_headerprep(index)
            if not prepared:
                break
            sig, include, headers = prepared
            domain = names.domain(sig[b"d"].decode("ascii"))
            selector = sig[b"s"].decode("ascii").lower().strip()
            key_name = names.domain(f"{selector}._domainkey.{domain}") if domain else None
            if domain is None or key_name is None:
                raise ValueError("d= or s= is no domain name")
            signature.domain, signature.key_name = domain, key_name
            signature.sig, signature.include, signature.header = sig, include, headers[index]
        except Exception:  # a broken signature field: its tags, its syntax, its times
            signature.result = "permerror"
        found.append(signature)
    return message, found


def _check(message: Dkim, found: list[_Signature]) -> None:
    for s in found:
        if s.result is not None:
            continue
        try:
            message.pk, message.keysize, message.ktag, message.seqtlsrpt = dkim.evaluate_pk(
                s.key_name, s.key)
        except Exception:
            s.result = "permerror"  # a key record that is no key
            continue
        try:
            valid = message.verify_sig_process(s.sig, s.include, s.header, None)
            s.result = ("fail" if not valid else
                        "policy" if _added_above(message, s.include) else "pass")
        except dkim.ValidationError:  # the body hash differs
            s.result = "fail"
        except Exception:  # a key too small, an algorithm we lack, a malformed b=
            s.result = "permerror"


# The fields threading and the rules read once, from the top (RFC 6376 8.15):
# a signature covers the bottom-most instance of a field it names, so one added
# above it (a new Subject with someone's request tag, an In-Reply-To) reads as
# signed. dkimpy checks this for From only.
_SINGLETONS = (b"from", b"sender", b"reply-to", b"subject", b"date", b"message-id",
               b"to", b"cc", b"in-reply-to", b"references")


def _added_above(message: Dkim, include: list[bytes]) -> bool:
    """A field the signature covers stands in the header more often than h=
    names it: an instance was added after signing, and it is the one read."""
    counts: dict[bytes, int] = {}
    for name, _ in message.headers:
        lowered = name.lower()
        if lowered in _SINGLETONS:
            counts[lowered] = counts.get(lowered, 0) + 1
    return any(counts.get(field, 0) > include.count(field) > 0 for field in _SINGLETONS)
