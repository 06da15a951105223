"""What the checks need from the message's header: the RFC5322.From domain
DMARC is about, and whether there are signatures or ARC sets to look at.
Read with the parsers' bounded, lenient header splitter."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.sender_auth import names
from parsers.header_block import split_entity
from parsers.header_values import addresses
from parsers.limits import MAX_HEADER_BLOCK_BYTES

_ARC = ("arc-seal", "arc-message-signature", "arc-authentication-results")


@dataclass(frozen=True, slots=True)
class Fields:
    from_domain: str | None  # None: not exactly one From address with a domain name
    dkim_signatures: int
    arc: bool


def read_fields(raw: bytes) -> Fields:
    # The splitter looks no further than this for the header's end; cut here,
    # it does not copy a large body it would not read.
    block = split_entity(raw[: MAX_HEADER_BLOCK_BYTES + 4])
    from_domain = None
    froms = block.get_all("from")
    if len(froms) == 1:
        found = addresses(froms[0], [], "from")
        if len(found) == 1 and "@" in found[0].address:
            from_domain = names.domain(found[0].address.rpartition("@")[2])
    names_seen = [name for name, _ in block.fields]
    return Fields(from_domain=from_domain,
                  dkim_signatures=names_seen.count("dkim-signature"),
                  arc=any(name in _ARC for name in names_seen))
