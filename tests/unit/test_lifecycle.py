"""The lifecycle rules: changes of status, replies, acknowledgements and their limit."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.lifecycle import (
    DONE,
    OPEN,
    RESOLVING,
    SETTABLE,
    WORKABLE,
    Acknowledgement,
    Event,
    EventKind,
    MailTraits,
    Outcome,
    Status,
    acknowledgement,
    acknowledgement_limited,
    acknowledgement_veto,
    announces_work,
    clock_held,
    gets_deadlines,
    initial_status,
    reply_starts_new,
    status_after_merge,
    status_after_reply,
    transition,
    written_by_person,
)

STORED = [s for s in Status if s != Status.RECEIVED]


def person(**changes: object) -> MailTraits:
    fields: dict[str, object] = {
        "sender": "ann@example.com", "has_sender": True, "own_outbound": False,
        "ours": False, "bounce": False, "auto_reply": False, "list_mail": False,
        "list_id": None}
    return MailTraits(**(fields | changes))  # type: ignore[arg-type]


def test_status__strenum_equals_and_serialises_as_its_value() -> None:
    assert Status.WAITING == "waiting" and Outcome.STALE == "stale"
    assert json.dumps({"to": Status.OPEN, "kind": EventKind.REROUTED}) == (
        '{"to": "open", "kind": "rerouted"}')
    assert ", ".join(SETTABLE) == "new, open, waiting, resolved, closed, reopened"


def test_status__groups() -> None:
    assert set(WORKABLE) <= set(OPEN)
    assert not set(WORKABLE) & set(DONE)
    assert not set(OPEN) & set(DONE)
    assert {Status.QUARANTINED, Status.MERGED, Status.RECEIVED}.isdisjoint(SETTABLE)
    assert set(OPEN) | set(DONE) == set(STORED)


def test_transition__same_status_is_no_change() -> None:
    assert transition(Status.OPEN, Status.OPEN, paused=False) is None


def test_transition__waiting_pauses_the_clock_once() -> None:
    change = transition(Status.OPEN, Status.WAITING, paused=False)
    assert change is not None and change.pause_starts and not change.pause_ends
    already = transition(Status.NEW, Status.WAITING, paused=True)
    assert already is not None and not already.pause_starts and not already.pause_ends


def test_transition__leaving_waiting_ends_the_pause() -> None:
    change = transition(Status.WAITING, Status.OPEN, paused=True)
    assert change is not None and change.pause_ends and not change.pause_starts
    assert not change.resolves and not change.reopens


def test_transition__resolving_ends_the_pause_and_meets_resolution() -> None:
    for done in (Status.RESOLVED, Status.CLOSED):
        change = transition(Status.WAITING, done, paused=True)
        assert change is not None and change.resolves and change.pause_ends
        assert not change.reopens


@pytest.mark.parametrize(("old", "new", "reopens"), [
    (Status.RESOLVED, Status.OPEN, True),
    (Status.CLOSED, Status.NEW, True),
    (Status.OPEN, Status.REOPENED, True),
    (Status.RESOLVED, Status.REOPENED, True),
    (Status.RESOLVED, Status.WAITING, False),
    (Status.RESOLVED, Status.CLOSED, False),
    (Status.OPEN, Status.NEW, False),
    (Status.WAITING, Status.OPEN, False),
])
def test_transition__reopening(old: Status, new: Status, reopens: bool) -> None:
    change = transition(old, new, paused=False)
    assert change is not None and change.reopens is reopens


@given(st.sampled_from(STORED), st.sampled_from(STORED), st.booleans())
def test_transition__never_contradicts_itself(old: Status, new: Status, paused: bool) -> None:
    change = transition(old, new, paused=paused)
    if change is None:
        assert old == new
        return
    assert not (change.pause_starts and change.pause_ends)
    assert not (change.resolves and change.reopens)
    assert change.pause_starts <= (not paused) and change.pause_ends <= paused


def test_status_after_reply__answer_reopens_waiting_and_finished_work() -> None:
    assert status_after_reply(Status.WAITING, automatic=False) == Status.OPEN
    assert status_after_reply(Status.WAITING, automatic=True) is None
    for done in RESOLVING:
        assert status_after_reply(done, automatic=False) == Status.REOPENED
        assert status_after_reply(done, automatic=True) is None  # automatic mail never
    for status in set(STORED) - {Status.WAITING, *RESOLVING}:
        assert status_after_reply(status, automatic=False) is None


NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("status", "days_ago", "window", "new"), [
    (Status.RESOLVED, 13, 14, False),  # within the window: it reopens
    (Status.RESOLVED, 14, 14, False),  # the last moment of it
    (Status.RESOLVED, 15, 14, True),  # after it: a new request linked to it
    (Status.CLOSED, 15, 14, True),
    (Status.CLOSED, 1, 14, False),
    (Status.RESOLVED, 0, 0, True),  # 0: a finished request is never reopened
    (Status.OPEN, 400, 14, False),  # open work: the reply joins it
    (Status.WAITING, 400, 0, False),
])
def test_reply_starts_new__the_reopen_window(status: Status, days_ago: int, window: int,
                                             new: bool) -> None:
    done_at = NOW - timedelta(days=days_ago)
    assert reply_starts_new(status, automatic=False, done_at=done_at, now=NOW,
                            reopen_days=window) is new
    # Automatic mail (an out-of-office, a bounce) joins the request it names, always.
    assert reply_starts_new(status, automatic=True, done_at=done_at, now=NOW,
                            reopen_days=window) is False


def test_status_after_merge__open_work_reopens_a_finished_request() -> None:
    for target in RESOLVING:
        assert status_after_merge(target, source=Status.NEW) == Status.REOPENED
        assert status_after_merge(target, source=Status.WAITING) == Status.REOPENED
        assert status_after_merge(target, source=Status.RESOLVED) is None  # finished too
    assert status_after_merge(Status.OPEN, source=Status.NEW) is None


def test_transition__quarantine_holds_the_clock_until_released() -> None:
    assert clock_held(Status.QUARANTINED) and clock_held(Status.WAITING)
    assert not clock_held(Status.NEW)
    released = transition(Status.QUARANTINED, Status.NEW, paused=True)
    assert released is not None and released.pause_ends and not released.pause_starts
    held = transition(Status.OPEN, Status.QUARANTINED, paused=False)
    assert held is not None and held.pause_starts


def test_written_by_person__automatic_flags_and_our_own_mail() -> None:
    assert written_by_person("in", {"auto_reply": False, "bounce": None})
    assert not written_by_person("in", {"auto_reply": True})
    assert not written_by_person("in", {"bounce": {"action": "failed"}})
    assert not written_by_person("in", {"own_outbound": True})
    assert written_by_person("out", {"kind": "reply"})


def test_initial_status__quarantine_then_automatic_then_new() -> None:
    assert initial_status(quarantined=True, automatic=True) == Status.QUARANTINED
    assert initial_status(quarantined=False, automatic=True) == Status.CLOSED
    assert initial_status(quarantined=False, automatic=False) == Status.NEW


def test_gets_deadlines__not_when_closed_at_once() -> None:
    assert gets_deadlines(Status.NEW) and gets_deadlines(Status.QUARANTINED)
    assert not gets_deadlines(Status.CLOSED)


def test_announces_work__only_what_an_agent_can_take() -> None:
    assert [s for s in STORED if announces_work(s)] == [Status.NEW, Status.OPEN,
                                                        Status.REOPENED]


@pytest.mark.parametrize(("traits", "reason"), [
    (person(), None),
    (person(own_outbound=True, ours=True), "our own mail came back"),
    (person(ours=True, bounce=True), "sent from one of our own addresses"),
    (person(sender="no-reply@example.com"), "no-reply@example.com does not take replies"),
    (person(sender="bounce+x@example.com"), "bounce+x@example.com does not take replies"),
    (person(sender="mailer-daemon@example.com", bounce=True),
     "mailer-daemon@example.com does not take replies"),
    (person(sender="bouncer@example.com"), None),
    (person(bounce=True, auto_reply=True), "delivery report"),
    (person(auto_reply=True, list_mail=True), "automatic reply (RFC 3834)"),
    (person(list_mail=True, list_id="<l.example.com>"), "mailing-list mail (<l.example.com>)"),
    (person(list_mail=True), "mailing-list mail (List-Id)"),
    (person(sender="", has_sender=False), "no sender address"),
])
def test_acknowledgement_veto__first_reason_wins(traits: MailTraits,
                                                  reason: str | None) -> None:
    assert acknowledgement_veto(traits) == reason


def test_mail_traits__automatic() -> None:
    assert not person().automatic and not person(list_mail=True).automatic
    assert person(own_outbound=True).automatic and person(bounce=True).automatic
    assert person(auto_reply=True).automatic


def test_acknowledgement__veto_then_quarantine_then_rule() -> None:
    vetoed = acknowledgement(wanted=True, quarantined=True, veto="delivery report",
                             template="t")
    assert vetoed == Acknowledgement(send=False, reason="delivery report")
    held = acknowledgement(wanted=True, quarantined=True, veto=None, template="t")
    assert held == Acknowledgement(send=False, reason="quarantined")
    off = acknowledgement(wanted=False, quarantined=False, veto=None, template="t")
    assert off == Acknowledgement(send=False, reason="a rule turned it off")
    sent = acknowledgement(wanted=True, quarantined=False, veto=None, template="t")
    assert sent.data() == {"send": True, "reason": "new request from a person",
                           "template": "t"}


def test_acknowledgement_limited__per_address_and_hour() -> None:
    assert acknowledgement_limited(address="a@x", sent=99, per_hour=None) is None
    assert acknowledgement_limited(address="a@x", sent=2, per_hour=3) is None
    assert acknowledgement_limited(address="a@x", sent=3, per_hour=3) == (
        "3 sent to a@x in the last hour (limit 3)")
    assert acknowledgement_limited(address="a@x", sent=0, per_hour=0) is not None


def test_event__system_by_default() -> None:
    event = Event(kind=EventKind.NOTE)
    assert (event.actor, event.data) == ("system", {})
