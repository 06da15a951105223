"""One address we may send to: exactly one addr-spec, parsed and checked.

Every address that can end up in an envelope (a form's or the API's email
field, an email's Reply-To or From, a stored requester) goes through
`parse_address` and travels on as the `Mailbox` it returns. There is no
display name, no angle brackets, no group, no comment, no quoting and no
list: text that holds anything but one plain `local@domain` is refused, so
nothing downstream (smtplib, a relay) can split it into several recipients.

The syntax, the lengths, Unicode (NFC, unsafe characters such as bidi and
zero-width ones) and IDNA are checked by `email-validator`, a well-kept
library that does exactly this and no more (no DNS look-up here: parsers are
pure). On top of it, stricter rules for mail that we send ourselves:

- quoted local parts and domain literals are refused (that is where commas,
  `@` and spaces hide; no person needs them to fill in a form);
- the domain must be a public one: a dot, a real top-level domain, not a
  special-use name (RFC 6761: localhost, .local, .test, .invalid, ...), so an
  acknowledgement cannot be aimed at the relay's own host or an internal name;
- `%` and `!` are refused in the local part: relays that still honour the
  "percent hack" or UUCP bang paths would forward to another address than the
  one we checked and counted.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

# RFC 5321 4.5.3.1: local part 64 octets, domain 255, a path 256 including the
# angle brackets, so an address of at most 254.
MAX_LOCAL = 64
MAX_DOMAIN = 255
MAX_ADDRESS = 254
# Characters that only occur in the other forms of an address (display names,
# groups, comments, quoting, domain literals, routes, lists) or that relays
# route on. Refused before the library sees the text, whatever it would make of it.
_NEVER = frozenset(' \t\r\n\x00,;:<>()[]"\\%!')
NOT_AN_ADDRESS = "this is not an email address"


class AddressError(ValueError):
    """Text that is not exactly one address we may send to; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class Mailbox:
    """One checked address: what an envelope and a To header are made from."""

    local: str  # lower case, NFC; ASCII unless the address needs SMTPUTF8
    domain: str  # lower case ASCII: IDNA A-labels for an internationalised domain

    @property
    def addr_spec(self) -> str:
        """`local@domain`, the one canonical spelling (stored, sent, compared)."""
        return f"{self.local}@{self.domain}"

    @property
    def smtputf8(self) -> bool:
        """Whether sending needs SMTPUTF8 (RFC 6531): a non-ASCII local part."""
        return not self.local.isascii()

    def __str__(self) -> str:
        return self.addr_spec


def parse_address(text: object) -> Mailbox:
    """Exactly one addr-spec as a Mailbox, else AddressError with the reason."""
    if not isinstance(text, str):
        raise AddressError("an email address must be text")
    return _checked(text)


# Addresses checked lately, by their text: customers write again and again, and
# the check (email-validator's IDNA and Unicode work) costs more than the rest of
# an API request's parse. Bounded; what it refuses is not kept (lru_cache keeps
# no exceptions), and a Mailbox is immutable.
@functools.lru_cache(maxsize=4096)
def _checked(text: str) -> Mailbox:
    if not text:
        raise AddressError("the email address is empty")
    # Bounded before any parsing (the library's IDNA work is not linear in
    # length): a character is one octet at least.
    if len(text) > MAX_ADDRESS:
        raise AddressError(f"an email address has at most {MAX_ADDRESS} octets")
    found = sorted({c for c in text if c in _NEVER or not c.isprintable()})
    if found:
        shown = ", ".join(repr(c) for c in found[:5])
        raise AddressError(f"one plain address only, without {shown}")
    if text.count("@") != 1:
        raise AddressError("an email address has exactly one @")
    try:
        # Lower case first, as the gateway always stored addresses; then NFC.
        checked = validate_email(
            text.lower(), check_deliverability=False, allow_smtputf8=True, allow_quoted_local=False,
            allow_domain_literal=False, allow_display_name=False, allow_empty_local=False,
            globally_deliverable=True, strict=True)
    except EmailNotValidError as exc:
        raise AddressError(str(exc)) from None
    local, domain = checked.local_part, checked.ascii_domain
    # The library counts the local part in characters; RFC 5321 in octets.
    if len(local.encode()) > MAX_LOCAL:
        raise AddressError(f"the part before the @ has at most {MAX_LOCAL} octets")
    if len(domain) > MAX_DOMAIN or len(f"{local}@{domain}".encode()) > MAX_ADDRESS:
        raise AddressError(f"an email address has at most {MAX_ADDRESS} octets")
    return Mailbox(local=local, domain=domain)


def mailbox_or_none(text: object) -> Mailbox | None:
    """The Mailbox, or None when `text` is not one address we may send to."""
    try:
        return parse_address(text)
    except AddressError:
        return None
