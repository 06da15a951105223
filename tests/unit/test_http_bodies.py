"""The declared request bodies: each problem named by its pointer, in the API's words."""

from __future__ import annotations

from typing import Any

import pytest

from domain.lifecycle import SETTABLE, Status
from gateway.http.bodies import (
    AdminChanges,
    AgentChanges,
    Claim,
    Escalation,
    Lease,
    Merge,
    NewToken,
    Note,
    Reply,
)
from gateway.http.problems import Problem
from gateway.http.validation import Body, parse, parse_all
from parsers.api_request import FieldProblem

QUEUES = ["general", "billing"]
WHOLE_CLAIM = "must be a whole number from 1 to 50"
STATUSES = "must be one of " + ", ".join(SETTABLE)


def _problem(model: type[Body], body: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(Problem) as caught:
        parse(model, body, queues=QUEUES)
    problem = caught.value
    assert problem.status == 422
    [error] = problem.errors
    assert isinstance(error, FieldProblem)
    assert problem.detail == (f"{error.pointer}: {error.detail}" if error.pointer
                              else error.detail)
    return error.pointer, error.detail


@pytest.mark.parametrize(("model", "body", "pointer", "detail"), [
    # Strict numbers: a bool, a float or a numeric string is not a whole number.
    (Claim, {"limit": True}, "/limit", WHOLE_CLAIM),
    (Claim, {"limit": 5.0}, "/limit", WHOLE_CLAIM),
    (Claim, {"limit": "5"}, "/limit", WHOLE_CLAIM),
    (Claim, {"limit": 51}, "/limit", WHOLE_CLAIM),
    (Claim, {"limit": 2**70}, "/limit", WHOLE_CLAIM),
    (Claim, {"wait": -1, "limit": 0}, "/limit", WHOLE_CLAIM),  # declared order
    (Claim, {"wait": 61}, "/wait", "must be a whole number from 0 to 60"),
    (Lease, {"lease_seconds": 0}, "/lease_seconds", "must be a whole number from 1 to 3600"),
    (Lease, {"lease_seconds": None}, "/lease_seconds", "must be a whole number from 1 to 3600"),
    (AgentChanges, {"status": "bogus"}, "/status", STATUSES),
    (AgentChanges, {"status": Status.RECEIVED.value}, "/status", STATUSES),
    (AgentChanges, {"status": None}, "/status", STATUSES),  # null is no status
    (AgentChanges, {"queue": "elsewhere"}, "/queue", "is not a configured queue"),
    (AgentChanges, {"priority": "P9"}, "/priority", "must be P1, P2, P3 or P4"),
    (AgentChanges, {"type": 5}, "/type", "must be a string or null"),
    (AgentChanges, {"type": "x" * 33}, "/type", "must be at most 32 characters"),
    (AgentChanges, {"component": "x" * 65}, "/component", "must be at most 64 characters"),
    (AgentChanges, {"tags": ["a"] * 51}, "/tags",
     "must be at most 50 strings of 1 to 100 characters"),
    (AgentChanges, {"tags": [""]}, "/tags", "must be at most 50 strings of 1 to 100 characters"),
    (AgentChanges, {"tags": [1]}, "/tags", "must be at most 50 strings of 1 to 100 characters"),
    (AgentChanges, {"custom_fields": {"a": [1]}}, "/custom_fields",
     "must be an object of simple values"),
    (AgentChanges, {"escalation_level": 1}, "/escalation_level",
     "is not a field this token may change"),
    (AgentChanges, {"a/b~c": 1}, "/a~1b~0c", "is not a field this token may change"),
    (AdminChanges, {"escalation_level": True}, "/escalation_level", "must be 0 to 10"),
    (AdminChanges, {"escalation_level": 11}, "/escalation_level", "must be 0 to 10"),
    (Note, {}, "/body", "is required and must be text"),
    (Note, {"body": " \t"}, "/body", "is required and must be text"),
    (Reply, {"body": "hi", "status": "merged"}, "/status", STATUSES),
    # The body may be left out for a canned response (the handler requires one of them).
    (Reply, {"status": "bogus"}, "/status", STATUSES),
    (Reply, {"body": 5}, "/body", "must be text"),
    (Escalation, {"reason": 5}, "/reason", "must be text"),
    (Escalation, {"queue": None}, "/queue", "is not a configured queue"),
    (Merge, {"into": 7}, "/into", "is required: the reference to merge into"),
])
def test_bodies__problem_named_by_pointer(model: type[Body], body: dict[str, Any],
                                          pointer: str, detail: str) -> None:
    assert _problem(model, body) == (pointer, detail)


def test_bodies__patch_names_unknown_fields_first_then_in_the_order_sent() -> None:
    assert _problem(AgentChanges, {"status": "bogus", "reference": "X"})[0] == "/reference"
    assert _problem(AgentChanges, {"priority": "P9", "status": "bogus"})[0] == "/priority"
    assert _problem(AgentChanges, {"status": "bogus", "priority": "P9"})[0] == "/status"


def test_bodies__changes_keep_the_order_sent() -> None:
    sent = {"tags": ["b", "a", "b"], "type": None, "status": "open",
            "custom_fields": {"n": 1, "ok": True, "x": None, "f": 1.5}}
    changes = parse(AgentChanges, sent, queues=QUEUES).changes(sent)
    assert list(changes) == ["tags", "type", "status", "custom_fields"]
    assert changes == {"tags": ["b", "a"], "type": None, "status": Status.OPEN,
                       "custom_fields": {"n": 1, "ok": True, "x": None, "f": 1.5}}
    assert changes["custom_fields"]["ok"] is True  # not turned into 1
    assert parse(AgentChanges, {}, queues=QUEUES).changes({}) == {}


def test_bodies__defaults_and_ignored_keys() -> None:
    assert parse(Claim, {"colour": "red"}) == Claim(limit=1, lease_seconds=300, wait=0)
    assert parse(Escalation, {}).queue is None
    assert parse(Escalation, {"queue": "billing"}, queues=QUEUES).queue == "billing"
    assert parse(Reply, {"body": "hi", "status": None}).status is None


def test_bodies__token_request_lists_every_problem() -> None:
    body = {"zz": 1, "role": "root", "queues": ["nope"], "name": "n" * 101, "aa": 2}
    with pytest.raises(Problem) as caught:
        parse_all(NewToken, body, summary="the token request has invalid fields",
                  queues=QUEUES)
    document = caught.value.document()
    assert document["detail"] == "the token request has invalid fields"
    assert document["errors"] == [
        {"pointer": "/role", "detail": "must be one of admin, agent, intake"},
        {"pointer": "/queues", "detail": "must be a list of known queues"},
        {"pointer": "/name", "detail": "must be text of at most 100 characters"},
        {"pointer": "/aa", "detail": "is not a known field"},
        {"pointer": "/zz", "detail": "is not a known field"},
    ]


@pytest.mark.parametrize("body", [{"role": "agent", "name": "a\x00b"},
                                  {"role": "agent", "queues": "general"},
                                  {"role": "agent", "queues": None},
                                  {"role": "agent", "name": None}])
def test_bodies__token_request_refuses_hostile_values(body: dict[str, Any]) -> None:
    with pytest.raises(Problem):
        parse_all(NewToken, body, summary="invalid", queues=QUEUES)


def test_bodies__token_request_defaults() -> None:
    token = parse_all(NewToken, {"role": "agent"}, summary="invalid", queues=QUEUES)
    assert (token.role, token.queues, token.name) == ("agent", [], "")
