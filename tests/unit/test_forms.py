"""Web forms as data: configuration, the fill-time token, checking a post."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from domain.errors import ConfigError
from gateway.config import DEFAULT_FORM, build_config
from parsers.forms import (
    FormSubmission,
    UploadedFile,
    check_token,
    check_values,
    issue_token,
    parse_form,
    parse_forms,
    submission_from_json,
    submission_json,
)
from routing.api import RoutingInput, decide, load_rules

SECRET = b"k" * 32
BASE = {"id": "help", "field": [
    {"name": "email", "kind": "email", "required": True},
    {"name": "subject"},
    {"name": "message", "kind": "textarea"},
    {"name": "order", "label": "Order number", "max_length": 10},
    {"name": "urgent", "kind": "checkbox"},
    {"name": "files", "kind": "file"},
]}


def test_forms__roles_are_inferred_from_names() -> None:
    spec = parse_form(BASE, "form[0]")
    roles = {f.name: f.role for f in spec.fields}
    assert roles == {"email": "requester_email", "subject": "subject", "message": "body",
                     "order": None, "urgent": None, "files": None}
    assert spec.max_body_bytes == 3 * 10 * 1024 * 1024 + 1024 * 1024


@pytest.mark.parametrize("change, message", [
    ({"id": "Has Space"}, "form[0].id"),
    ({"colour": "red"}, "form[0].colour: unknown key"),
    ({"field": []}, "form[0].field: a form needs at least one"),
    ({"field": [{"name": "a"}, {"name": "a"}]}, "'a' is given twice"),
    ({"field": [{"name": "a", "kind": "select"}]}, "form[0].field[0].options"),
    ({"field": [{"name": "a", "kind": "radio"}]}, "form[0].field[0].kind"),
    ({"field": [{"name": "a", "role": "subject"}, {"name": "b", "role": "subject"}]},
     "more than one field has role 'subject'"),
    ({"field": [{"name": "f", "kind": "file", "role": "body"}]}, "cannot carry a role"),
    ({"field": [{"name": "_form_token"}]}, "form[0].field[0].name"),
    ({"allowed_origins": ["https://example.com/path"]}, "form[0].allowed_origins"),
    ({"success_url": "javascript:alert(1)"}, "form[0].success_url"),
    ({"queue": "nowhere"}, "form[0].queue: 'nowhere' is not a configured queue"),
    ({"max_files": 1.5}, "form[0].max_files: must be an integer"),
    ({"honeypot": "email"}, "form[0].honeypot"),
])
def test_forms__configuration_errors_name_the_key(change: dict[str, object],
                                                 message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_form(BASE | change, "form[0]", queues={"general"})


def test_forms__duplicate_ids_and_a_bad_form_stop_start_up() -> None:
    with pytest.raises(ValueError, match="used by another form"):
        parse_forms([BASE, BASE])
    with pytest.raises(ConfigError, match=r"<t>: key form\[0\]\.field\[0\]\.kind"):
        build_config({"form": [{"id": "x", "field": [{"name": "a", "kind": "radio"}]}]},
                     "<t>", {})


def test_forms__every_problem_of_every_form_is_reported() -> None:
    bad = {"id": "Has Space", "colour": "red", "max_files": 1.5,
           "field": [{"name": "a", "kind": "radio"}, {"name": "b", "required": "yes"}]}
    with pytest.raises(ValueError) as caught:
        parse_forms([bad, BASE | {"honeypot": "email"}, BASE])
    assert str(caught.value).splitlines() == [
        "form[0].colour: unknown key",
        "form[0].id: 'Has Space' must be 1 to 40 of a-z, 0-9, - and _",
        "form[0].field[0].kind: must be one of text, email, textarea, select, checkbox, file",
        "form[0].field[1].required: must be true or false",
        "form[0].max_files: must be an integer",
        "form[1].honeypot: 'email' must be a free field name",
    ]
    with pytest.raises(ConfigError) as both:
        build_config({"form": [bad]}, "<t>", {})
    assert len(str(both.value).splitlines()) == 5
    assert all(line.startswith("<t>: key form[0].") for line in str(both.value).splitlines())


def test_forms__the_embedded_default_has_a_support_form() -> None:
    config = build_config({"form": [DEFAULT_FORM]}, "<embedded default>", {})
    spec = config.forms["support"]
    assert spec.with_role("requester_email") is not None
    assert [f.name for f in spec.file_fields] == ["attachments"]


def test_forms__file_types_take_wildcards() -> None:
    spec = parse_form(BASE | {"file_types": ["image/*", "application/pdf"]}, "f")
    assert spec.allows_type("image/png") and spec.allows_type("IMAGE/JPEG; x=y")
    assert spec.allows_type("application/pdf")
    assert not spec.allows_type("application/pdfx") and not spec.allows_type("imagex/png")
    assert not spec.allows_type("text/html")


def test_forms__token_checks_age_form_and_signature() -> None:
    spec = parse_form(BASE | {"min_fill_seconds": 3}, "f")
    issued = 1_000_000.0
    token = issue_token(SECRET, "help", issued)
    assert check_token(SECRET, spec, token, issued + 3) is None
    assert "too quickly" in (check_token(SECRET, spec, token, issued + 2.9) or "")
    assert "too long" in (check_token(SECRET, spec, token, issued + 86_401) or "")
    assert "missing" in (check_token(SECRET, spec, None, issued + 10) or "")
    for bad in (issue_token(b"other" * 8, "help", issued), issue_token(SECRET, "x", issued),
                token.replace(str(int(issued)), str(int(issued) - 100)), "garbage", "."):
        assert "not valid" in (check_token(SECRET, spec, bad, issued + 10) or ""), bad
    off = parse_form(BASE | {"min_fill_seconds": 0}, "f")
    assert check_token(SECRET, off, None, issued) is None


def test_forms__a_good_post_becomes_a_submission() -> None:
    spec = parse_form(BASE, "f")
    files = [UploadedFile("files", "a.png", "image/png", 3, "ab" * 32)]
    checked = check_values(spec, {"email": ["Ann@Example.COM"], "subject": ["  Two   words "],
                                  "message": ["Body"], "order": ["A-1"], "urgent": ["yes"],
                                  "stray": ["ignored"]}, files)
    assert checked == FormSubmission(
        form_id="help", requester_email="ann@example.com", requester_name=None,
        subject="Two words", body="Body", custom_fields={"order": "A-1", "urgent": "yes"},
        files=tuple(files))
    assert submission_from_json(submission_json(checked)) == checked


def test_forms__the_title_stands_in_for_a_missing_subject() -> None:
    spec = parse_form(BASE | {"title": "Help desk"}, "f")
    checked = check_values(spec, {"email": ["a@b.c"]}, [])
    assert isinstance(checked, FormSubmission)
    assert (checked.subject, checked.body, checked.custom_fields) == ("Help desk", "", {})


def test_forms__problems_name_their_fields() -> None:
    spec = parse_form(BASE | {"field": [*BASE["field"],  # type: ignore[list-item]
                                        {"name": "plan", "kind": "select",
                                         "options": ["a"]},
                                        {"name": "proof", "kind": "file", "required": True}]},
                      "f")
    problems = check_values(spec, {"email": ["nope"], "order": ["12345678901"],
                                   "subject": ["a", "b"], "plan": ["z"],
                                   "message": ["x\x00"]}, [])
    assert isinstance(problems, list)
    assert {p.pointer: p.detail for p in problems} == {
        "/email": "this is not an email address",
        "/order": "this field must be at most 10 characters",
        "/subject": "this field was given more than once",
        "/plan": "choose one of the options",
        "/message": "this field must not contain NUL characters",
        "/proof": "choose a file to send",
    }
    missing = check_values(spec, {}, [])
    assert isinstance(missing, list)
    assert {p.pointer for p in missing} == {"/email", "/proof"}


def test_forms__a_forms_queue_comes_after_rules_and_components() -> None:
    rules = load_rules(
        '[[component]]\nname = "vpn"\naliases = ["vpn"]\nqueue = "ops"\n\n'
        '[[rule]]\nname = "refunds"\nwhen = { subject.contains = "refund" }\n'
        'then = { queue = "general" }\n', "t.toml", ("general", "ops", "billing"))

    def routed(subject: str) -> tuple[str, str]:
        decision = decide(rules, RoutingInput(
            received_at=datetime(2026, 11, 30, tzinfo=UTC), channel="form", form_id="shop",
            default_queue="billing", subject=subject))
        return decision.queue, dict(decision.sources)["queue"]

    assert routed("Where is my parcel") == ("billing", "form:shop")
    assert routed("My VPN drops") == ("ops", "component:vpn")
    assert routed("A refund please") == ("general", "rule:refunds")
