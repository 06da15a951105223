"""Who may write into a request: the pure rules behind threading (no database).

`refusal` takes the sender-authentication verdict that a later step will
supply; `established` is who takes part in a request; `place` and `place_all`
decide with both.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.pipeline.placement import place, refusal, sender_check
from parsers.mail import parse_email
from storage.participants import MAX_THREAD_MESSAGES, established
from storage.placing import Known, place_all
from storage.processing import ClaimedItem
from storage.records import (
    KnownMessage,
    NewMessage,
    NewRequest,
    Placed,
    SenderCheck,
    TaggedRequest,
    ThreadHints,
)

ALICE = "alice@example.com"
PEOPLE = frozenset({ALICE, "bob@example.com"})


@pytest.mark.parametrize(("takes_part", "ours", "check", "refused"), [
    (True, False, SenderCheck.UNKNOWN, None),
    (True, False, SenderCheck.VERIFIED, None),
    (False, True, SenderCheck.UNKNOWN, None),  # our own addresses (agents)
    (False, False, SenderCheck.UNKNOWN, "takes no part in it"),
    (False, False, SenderCheck.VERIFIED, "takes no part in it"),  # verified, still a stranger
    (True, False, SenderCheck.FAILED, "failed sender authentication"),
    (False, True, SenderCheck.FAILED, "failed sender authentication"),
    (True, False, SenderCheck.NOT_FROM, "From names no address"),
])
def test_refusal__verdict_and_participation(takes_part: bool, ours: bool, check: SenderCheck,
                                            refused: str | None) -> None:
    reason = refusal(ALICE, takes_part=takes_part, ours=ours, check=check)
    if refused is None:
        assert reason is None
    else:
        assert reason is not None and refused in reason


@pytest.mark.parametrize(("headers", "check"), [
    ("From: Alice <alice@example.com>", SenderCheck.UNKNOWN),
    ('From: "alice@example.com" <mallory@evil.example>', SenderCheck.UNKNOWN),
    ("From: Alice\r\nReply-To: alice@example.com", SenderCheck.NOT_FROM),
    ("From: Alice\r\nSender: alice@example.com", SenderCheck.NOT_FROM),
    ("Return-Path: <alice@example.com>", SenderCheck.NOT_FROM),
])
def test_sender_check__address_must_come_from_from(headers: str, check: SenderCheck) -> None:
    parsed = parse_email(f"{headers}\r\nSubject: x\r\n\r\nbody\r\n".encode())
    assert parsed.from_ is not None
    assert sender_check(parsed) == check


def _to(*addresses: str) -> list[dict[str, str]]:
    return [{"name": "", "address": a} for a in addresses]


def test_established__only_the_request_lets_people_in() -> None:
    rows = [
        ("in", ALICE, _to("support@localhost"), _to("Bob@Example.com")),  # the first mail
        ("out", "support@localhost", _to("alice-home@example.com"), []),  # our mail
        ("in", "mallory@evil.example", _to("support@localhost"), _to("eve@evil.example")),
        ("in", "bob@example.com", _to("support@localhost"), _to("carol@example.com")),
        ("in", "eve@evil.example", [], _to("trent@evil.example")),
        ("in", ALICE, "not a list", [{"address": ""}, {"name": "x"}, "junk"]),
    ]
    assert established("Alice@Example.com", rows) == {
        ALICE, "support@localhost", "bob@example.com", "alice-home@example.com",
        "carol@example.com"}
    assert established(None, []) == frozenset()


def _hints(sender: str, *, parents: tuple[str, ...] = (), tags: tuple[str, ...] = (),
           bounce_of: str | None = None, check: SenderCheck = SenderCheck.UNKNOWN,
           message_id: str = "new@example.com", copied: tuple[str, ...] = ()) -> ThreadHints:
    return ThreadHints(message_id=message_id, parent_ids=parents, tags=tags,
                       bounce_of=bounce_of, sender=sender, sender_check=check, copied=copied)


KNOWN = {
    "a1@example.com": KnownMessage(1, "in", ALICE, PEOPLE, "AAAA-AAAA"),
    "ack@ours": KnownMessage(1, "out", "support@localhost", PEOPLE, "AAAA-AAAA"),
    "m1@evil.example": KnownMessage(2, "in", "mallory@evil.example",
                                    frozenset({"mallory@evil.example"}), "MMMM-MMMM"),
}
TAGGED = {"AAAA-AAAA": TaggedRequest(1, "AAAA-AAAA", PEOPLE)}


def test_place__stranger_naming_victim_and_own_thread_lands_on_own() -> None:
    placement = place(_hints("mallory@evil.example",
                             parents=("a1@example.com", "ack@ours", "m1@evil.example"),
                             tags=("AAAA-AAAA",)), KNOWN, TAGGED)
    assert (placement.kind, placement.request_id) == (Placed.THREAD, 2)


def test_place__stranger_gets_new_request_naming_what_was_refused() -> None:
    placement = place(_hints("MALLORY@evil.example", parents=("ack@ours", "a1@example.com"),
                             tags=("AAAA-AAAA",)), KNOWN, TAGGED)
    assert placement.kind == Placed.NEW and placement.refused == ("AAAA-AAAA",)
    assert "reply to message ack@ours of request AAAA-AAAA ignored" in placement.reason
    assert "mallory@evil.example takes no part in it" in placement.reason


def test_place__participant_who_failed_authentication_gets_new_request() -> None:
    placement = place(_hints(ALICE, parents=("ack@ours",), check=SenderCheck.FAILED),
                      KNOWN, TAGGED)
    assert placement.kind == Placed.NEW
    assert "failed sender authentication" in placement.reason


def test_place__forged_copy_of_a_stored_message_is_no_duplicate() -> None:
    """The same Message-ID and From as a stored message is a second delivery,
    stored once; the same from a forged From is a new, visible request instead."""
    genuine = place(_hints(ALICE, message_id="a1@example.com"), KNOWN, TAGGED)
    assert genuine.kind == Placed.DUPLICATE
    forged = place(_hints(ALICE, message_id="a1@example.com", check=SenderCheck.FAILED),
                   KNOWN, TAGGED)
    assert forged.kind == Placed.NEW


def test_place__forged_sender_is_no_delivery_report() -> None:
    """A report of our mail from a forged From does not join as a bounce."""
    placement = place(_hints(ALICE, bounce_of="ack@ours", check=SenderCheck.FAILED),
                      KNOWN, TAGGED)
    assert placement.kind == Placed.NEW
    assert place(_hints(ALICE, bounce_of="ack@ours"), KNOWN, TAGGED).kind == Placed.THREAD


def test_place__bounce_only_of_our_own_mail() -> None:
    ours = place(_hints("mailer-daemon@mx.example", bounce_of="ack@ours"), KNOWN, TAGGED)
    assert (ours.kind, ours.request_id) == (Placed.THREAD, 1)
    theirs = place(_hints("mailer-daemon@mx.example", bounce_of="a1@example.com"), KNOWN, TAGGED)
    assert theirs.kind == Placed.NEW


def _item(item_id: int) -> ClaimedItem:
    return ClaimedItem(id=item_id, channel="email", raw=b"", meta={}, attempts=0,
                       received_at=datetime(2026, 11, 30, tzinfo=UTC))


def _new(hints: ThreadHints) -> NewRequest:
    message = NewMessage(subject="s", text="t", new_text="t", from_address=hints.sender,
                         from_name=None, message_id=hints.message_id)
    return NewRequest(queue="general", message=message, requester_email=hints.sender,
                      requester_name=None, hints=hints)


def test_place_all__people_copied_earlier_in_the_batch_take_part() -> None:
    work = [
        # Alice answers, copying Dave; Dave answers in the same batch: he takes part.
        (_item(10), _new(_hints(ALICE, parents=("ack@ours",), message_id="a2@example.com",
                                copied=("support@localhost", "dave@example.com")))),
        (_item(11), _new(_hints("dave@example.com", parents=("a2@example.com",),
                                message_id="d1@example.com"))),
        # A stranger's new request copies Eve; Eve answers it, then names Alice's.
        (_item(12), _new(_hints("mallory@evil.example", message_id="m2@evil.example",
                                copied=("eve@evil.example",)))),
        (_item(13), _new(_hints("eve@evil.example", parents=("m2@evil.example",),
                                message_id="e1@evil.example"))),
        (_item(14), _new(_hints("eve@evil.example", tags=("AAAA-AAAA",),
                                message_id="e2@evil.example"))),
    ]
    placements = place_all(work, Known(set(), KNOWN, TAGGED), place)
    kinds = [(p.kind, p.request_id) if p else None for p in placements]
    assert kinds == [(Placed.THREAD, 1), (Placed.THREAD, 1), (Placed.NEW, -3),
                     (Placed.THREAD, -3), (Placed.NEW, -5)]


def test_established__only_the_first_messages_of_a_long_thread_count() -> None:
    first = ("in", ALICE, _to("support@localhost"), [])
    chatter = [("in", ALICE, _to("support@localhost"), [])] * (MAX_THREAD_MESSAGES - 2)
    late = [("in", ALICE, [], _to("early@example.com")), ("in", ALICE, [], _to("late@example.com"))]
    people = established(ALICE, [first, *chatter, *late])
    assert "early@example.com" in people and "late@example.com" not in people
