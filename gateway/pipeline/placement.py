"""Where an inbound email belongs: a pure decision over what is stored.

Order of evidence, strongest first:
1. the same Message-ID from the same sender is stored already: a duplicate
   delivery, stored once;
2. a delivery report naming one of our messages: the request that message
   belongs to;
3. In-Reply-To, then References (most recent first), matching any stored
   message, the customer's or ours;
4. a reference tag in the subject, but only from someone who already takes
   part in that request: a stranger quoting a ticket number gets a new request.
"""

from __future__ import annotations

from collections.abc import Mapping

from storage.records import KnownMessage, Placed, Placement, TaggedRequest, ThreadHints


def place(hints: ThreadHints, known: Mapping[str, KnownMessage],
          tagged: Mapping[str, TaggedRequest]) -> Placement:
    sender = (hints.sender or "").lower()
    if hints.message_id:
        seen = known.get(hints.message_id)
        if seen is not None and seen.direction == "in" and (
                (seen.from_address or "").lower() == sender):
            return Placement(Placed.DUPLICATE, f"Message-ID {hints.message_id} is stored already",
                             seen.request_id)
    if hints.bounce_of:
        ours = known.get(hints.bounce_of)
        if ours is not None:
            return Placement(Placed.THREAD, f"delivery report for message {hints.bounce_of}",
                             ours.request_id)
    for parent in hints.parent_ids:
        match = known.get(parent)
        if match is not None:
            return Placement(Placed.THREAD, f"replies to message {parent}", match.request_id)
    refused: list[str] = []
    for tag in hints.tags:
        request = tagged.get(tag)
        if request is None:
            continue
        if sender and sender in request.participants:
            return Placement(Placed.THREAD, f"subject tag {request.reference} from a participant",
                             request.request_id)
        refused.append(request.reference)
    if refused:
        return Placement(Placed.NEW, f"subject tag {', '.join(refused)} ignored: "
                                f"{sender or 'the sender'} takes no part in it")
    return Placement(Placed.NEW, "no stored message or tag matched")
