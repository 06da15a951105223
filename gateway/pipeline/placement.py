"""Where an inbound email belongs: a pure decision over what is stored.

Order of evidence, strongest first:
1. the same Message-ID from the same sender is stored already: a duplicate
   delivery, stored once;
2. a delivery report naming one of *our* messages: the request that message
   belongs to;
3. In-Reply-To, then References (most recent first), matching any stored
   message, the customer's or ours;
4. a reference tag in the subject.

3 and 4 let a message in only when its sender may write there (`refusal`): a
participant of the request (storage/participants.py: the requester, people
copied on its first mail or on our mail, people a participant copied later)
or one of our own addresses. Knowing a Message-ID proves nothing: ours and the
customer's travel in the References of every later mail of the thread, to
whoever is copied, forwarded to or archived. Anyone else gets a new request
whose timeline says which request it named and why it was not let in. So does
a sender whose From sender authentication found forged (`sender_check`
FAILED: DMARC fails for a domain that publishes quarantine or reject), even
one whose address takes part.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.sender_auth import names
from parsers.auth_results import Verdicts
from parsers.header_values import address_pairs
from parsers.records import ParsedEmail
from storage.records import (
    KnownMessage,
    Placed,
    Placement,
    SenderCheck,
    TaggedRequest,
    ThreadHints,
)

# What one mail may name, looked up per item of a batch: In-Reply-To and the
# most recent References find any real thread (clients trim References to the
# last few tens), and a subject carries one tag; a hostile mail naming more
# costs no more than this.
MAX_PARENTS = 50
MAX_TAGS = 5


def sender_check(parsed: ParsedEmail, verdicts: Verdicts | None = None) -> SenderCheck:
    """What sender authentication says of the From address read here.

    FAILED when From is forged (DMARC fails for a domain whose policy is
    quarantine or reject), or when the verdicts cannot be about the address
    read: From holds more than one address (RFC 7489 6.6.1; the parser takes
    the first, DMARC none or another), or the results name another From domain
    (`From: victim@bank.example <me@evil.example>`). NOT_FROM when the parser
    took the sender from Sender, Reply-To or Return-Path (From had no address):
    any header may name anyone, and From is the one DMARC vouches for.
    VERIFIED when DMARC passes for this From's domain; else UNKNOWN."""
    if verdicts is not None and verdicts.forged_from:
        return SenderCheck.FAILED
    if parsed.from_ is None:
        return SenderCheck.UNKNOWN
    try:
        in_from = {address.strip().lower() for _, address in
                   address_pairs([value for name, value in parsed.headers if name == "from"])
                   if address.strip()}
    except Exception:  # stdlib parser bugs on hostile input: From is not confirmed
        return SenderCheck.NOT_FROM
    fell_back = any(d.startswith("From has no address") for d in parsed.defects)
    address = parsed.from_.address.strip().lower()
    if address not in in_from or fell_back:
        return SenderCheck.NOT_FROM
    if verdicts is None:
        return SenderCheck.UNKNOWN
    # Both sides in one form (A-labels): an IDN sender's results name xn--...
    domain = names.domain(address.rpartition("@")[2])
    if len(in_from) > 1 or (verdicts.from_domain is not None
                            and names.domain(verdicts.from_domain) != domain):
        return SenderCheck.FAILED
    if verdicts.dmarc == "pass" and verdicts.from_domain is not None:
        return SenderCheck.VERIFIED
    return SenderCheck.UNKNOWN


def vouches_elsewhere(verdicts: Verdicts, check: SenderCheck) -> bool:
    """The verdicts speak of another From than the one read here (`sender_check`
    FAILED while DMARC itself did not fail): their DMARC result is no one's."""
    return check == SenderCheck.FAILED and not verdicts.forged_from


def refusal(sender: str, *, takes_part: bool, ours: bool, check: SenderCheck) -> str | None:
    """Why this sender may not write into a request (None: they may).

    `check` is what sender authentication found; UNKNOWN (not checked) trusts
    the address as far as it goes: only into requests its owner takes part in.
    """
    who = sender or "the sender"
    if check == SenderCheck.FAILED:
        return f"{who} failed sender authentication"
    if check == SenderCheck.NOT_FROM:
        return f"From names no address ({who} is from another header)"
    if takes_part or ours:
        return None
    return f"{who} takes no part in it"


def place(hints: ThreadHints, known: Mapping[str, KnownMessage],
          tagged: Mapping[str, TaggedRequest]) -> Placement:
    sender = (hints.sender or "").lower()
    # A forged sender's mail is never taken for a duplicate of the genuine one
    # (it would be dropped unseen, and the forgery with it).
    if hints.message_id and hints.sender_check != SenderCheck.FAILED:
        seen = known.get(hints.message_id)
        if seen is not None and seen.direction == "in" and (
                (seen.from_address or "").lower() == sender):
            return Placement(Placed.DUPLICATE, f"Message-ID {hints.message_id} is stored already",
                             seen.request_id)
    if hints.bounce_of and hints.sender_check != SenderCheck.FAILED:
        ours = known.get(hints.bounce_of)
        # Only our own mail bounces back to us: a report naming the customer's
        # Message-ID (which others know) is no delivery report of ours.
        if ours is not None and ours.direction == "out":
            return Placement(Placed.THREAD, f"delivery report for message {hints.bounce_of}",
                             ours.request_id)
    refused: dict[str, str] = {}  # by the reference of the request named: why not

    def why_not(participants: frozenset[str]) -> str | None:
        return refusal(sender, takes_part=bool(sender) and sender in participants,
                       ours=hints.sender_ours, check=hints.sender_check)

    for parent in hints.parent_ids:
        match = known.get(parent)
        if match is None:
            continue
        reason = why_not(match.participants)
        if reason is None:
            return Placement(Placed.THREAD, f"replies to message {parent}", match.request_id)
        reference = match.reference or f"#{match.request_id}"
        refused.setdefault(reference, f"reply to message {parent} of request {reference} "
                                      f"ignored: {reason}")
    for tag in hints.tags:
        request = tagged.get(tag)
        if request is None:
            continue
        reason = why_not(request.participants)
        if reason is None:
            return Placement(Placed.THREAD, f"subject tag {request.reference} from a participant",
                             request.request_id)
        refused.setdefault(request.reference,
                           f"subject tag {request.reference} ignored: {reason}")
    if refused:
        return Placement(Placed.NEW, "; ".join(refused.values()), refused=tuple(refused))
    return Placement(Placed.NEW, "no stored message or tag matched")
