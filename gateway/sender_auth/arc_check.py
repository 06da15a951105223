"""ARC (RFC 8617) chain validation with dkimpy's ARC verifier: "pass",
"fail" or "none". The keys its seals and signatures name are fetched first,
all at once; dkimpy then runs with a lookup that answers from those (replay
on miss, lookups.py, should it ask for anything else). The message is
dkimpy's as signed_message.py bounds and prepares it; a chain of more than
MAX_SETS sets, or a field past the bounds, is not looked at: "fail". ARC has
no temporary error (RFC 8601): a key that does not answer fails the chain.
The verdict is recorded only; it never overrides DMARC (that would be local
policy, trusting the sealers).
"""

from __future__ import annotations

import asyncio

import dkim
from dkim.util import parse_tag_value

from gateway.sender_auth.lookups import Lookups, Miss
from gateway.sender_auth.resolver import ERROR, OK
from gateway.sender_auth.signed_message import (
    Arc,
    BodyKey,
    Received,
    body_key,
    parse,
    screened,
)

MAX_SETS = 5
_RUNS = 3
_SIGNED = (b"arc-seal", b"arc-message-signature")
_FIELDS = (*_SIGNED, b"arc-authentication-results")


async def check_arc(received: Received, lookups: Lookups) -> str:
    await lookups.cpu.turn()
    chain, sets, key_names, bodies = _read(received)
    if chain is None:
        return "fail"
    if sets == 0:
        return "none"
    if sets > MAX_SETS:
        return "fail"
    await asyncio.gather(*(lookups.get(name, "TXT") for name in key_names),
                         received.hash_body(bodies))
    for _ in range(_RUNS):
        await lookups.cpu.turn()
        result = _verify(chain, lookups)
        if result is not None and not lookups.misses:
            return result
        await lookups.fetch_misses()
    return "fail"


def _read(received: Received) -> tuple[Arc | None, int, list[str], set[BodyKey]]:
    """The chain, its number of sets, the keys and body hashes it will need."""
    try:
        chain = parse(Arc, received)
        if chain is None or not all(screened(value) for name, value in chain.headers
                                    if name.lower() in _FIELDS):
            return None, 0, [], set()
        sets, headers = chain.sorted_arc_headers()
    except Exception:
        return None, 0, [], set()
    names: list[str] = []
    bodies: set[BodyKey] = set()
    if 0 < sets <= MAX_SETS:
        for _, (field, value) in headers:
            if field.lower() not in _SIGNED:
                continue
            try:
                tags = parse_tag_value(value)
                names.append(f"{tags[b's'].decode('ascii')}._domainkey."
                             f"{tags[b'd'].decode('ascii')}")
                if b"bh" in tags:
                    bodies.add(body_key(tags, b"relaxed/relaxed"))
            except Exception:  # a broken set: dkimpy's verify says so
                continue
    return chain, sets, names[: 2 * MAX_SETS], bodies


def _verify(chain: Arc, lookups: Lookups) -> str | None:
    """The chain's state, or None when it needs a key not fetched yet."""
    def get_txt(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            text = name.decode("ascii")
        except UnicodeDecodeError:
            return None
        answer = lookups.cached(text, "TXT")
        if answer.status == ERROR:
            raise dkim.DnsTimeoutError("DNS TXT lookup failed")
        if answer.status != OK or not answer.records or not isinstance(answer.records[0], tuple):
            return None
        return b"".join(p for p in answer.records[0] if isinstance(p, bytes))

    try:
        state, _, _ = chain.verify(dnsfunc=get_txt)
    except Miss:
        return None
    except Exception:  # dkimpy's own (a broken set) and its slips on hostile input
        return "fail"
    if state == dkim.CV_Pass:
        return "pass"
    if state == dkim.CV_None:
        return "none"
    return "fail"
