"""The organizational domain (RFC 7489 3.2): the registrable domain under the
whole Public Suffix List (publicsuffixlist's copy, loaded once), its private
section included, as OpenDMARC reads it: under the ICANN section alone,
attacker.github.io and victim.github.io would share github.io and align."""

from __future__ import annotations

import functools

from publicsuffixlist import PublicSuffixList


@functools.cache
def _list() -> PublicSuffixList:
    return PublicSuffixList()


def load() -> None:
    """Read the list now (about 50 ms) rather than in the first message's check."""
    _list()


def org_domain(domain: str) -> str:
    """`domain`'s organizational domain; itself when it is a public suffix."""
    found = _list().privatesuffix(domain)
    return found if isinstance(found, str) else domain
