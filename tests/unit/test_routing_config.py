"""Validation for `intake check-config`: every error, with file, line and rule name."""

from __future__ import annotations

import pytest

from routing.api import ConfigIssue, InvalidRulesError, check_config, load_rules

QUEUES = ("general", "billing", "ops")


def issues(text: str, queues: tuple[str, ...] | None = QUEUES) -> list[tuple[int, str | None, str]]:
    return [(i.line, i.rule, i.message) for i in check_config(text, "rules.toml", queues)]


def only(text: str) -> tuple[int, str | None, str]:
    found = issues(text)
    assert len(found) == 1, found
    return found[0]


def test_check_config__valid_config_has_no_issues() -> None:
    text = """
[routing]
default_queue = "general"
[[component]]
name = "vpn"
aliases = ["anyconnect"]
queue = "ops"
[[rule]]
name = "billing"
when = { to = "billing@example.com" }
then = { queue = "billing" }
"""
    assert issues(text) == []


def test_unknown_queue__in_then_with_line_and_rule() -> None:
    text = (
        '[[rule]]\nname = "a"\nthen = { queue = "general" }\n\n'
        '[[rule]]\nname = "b"\n\nthen = { queue = "opps" }\n'
    )
    line, rule, message = only(text)
    assert (line, rule) == (8, "b")
    assert "unknown queue 'opps'" in message and "billing, general, ops" in message


def test_unknown_queue__default_and_component() -> None:
    text = '[routing]\ndefault_queue = "nope"\n[[component]]\nname = "vpn"\nqueue = "net"\n'
    found = issues(text)
    assert (2, None) == found[0][:2] and "unknown queue 'nope'" in found[0][2]
    assert (5, "vpn") == found[1][:2] and "unknown queue 'net'" in found[1][2]


def test_default_queue__first_listed_queue_when_not_named() -> None:
    assert issues("[routing]\nacknowledge = true\n", queues=("billing", "ops")) == []
    rules = load_rules("[routing]\nacknowledge = true\n", "<t>", queues=("billing", "ops"))
    assert rules.settings.default_queue == "billing"


def test_default_queue__needed_when_there_are_no_queues() -> None:
    found = issues("[routing]\nacknowledge = true\n", queues=())
    assert "default_queue is needed" in found[0][2]


def test_queues__taken_from_queue_tables_when_not_given() -> None:
    text = '[[queue]]\nname = "general"\n[[rule]]\nname = "r"\nthen = { queue = "billing" }\n'
    assert "unknown queue 'billing'" in issues(text, queues=None)[0][2]


def test_bad_regex__re2_message_with_line() -> None:
    text = '[[rule]]\nname = "lookbehind"\nwhen = { subject.matches = "(?<=re:)x" }\n'
    line, rule, message = only(text)
    assert (line, rule) == (3, "lookbehind")
    assert "bad regular expression" in message and "invalid perl operator" in message


def test_bad_regex__unbalanced_in_nested_any() -> None:
    text = (
        '[[rule]]\nname = "x"\n[rule.when]\nchannel = "email"\n'
        'any = [{ body.matches = "(unclosed" }]\n'
    )
    line, rule, message = only(text)
    assert (line, rule) == (5, "x")
    assert "missing )" in message


def test_unknown_field__named() -> None:
    line, rule, message = only('[[rule]]\nname = "x"\nwhen = { subjcet = "a" }\n')
    assert (line, rule, message) == (3, "x", "unknown field 'subjcet'")


def test_unknown_field__namespace_without_name() -> None:
    _, _, message = only('[[rule]]\nname = "x"\nwhen = { header = "a" }\n')
    assert "'header' needs a table of names" in message


def test_unknown_operator__named() -> None:
    _, _, message = only('[[rule]]\nname = "x"\nwhen = { subject.like = "a" }\n')
    assert message == "unknown operator 'like' on 'subject'"


def test_operator__not_for_this_kind_of_field() -> None:
    _, _, message = only('[[rule]]\nname = "x"\nwhen = { subject.greater = 3 }\n')
    assert message == "operator 'greater' does not apply to text field 'subject'"


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("{ subject.contains = 3 }", "'subject.contains' needs a string, not a number"),
        ('{ attachment_count.greater = "3" }', "needs a number, not a string"),
        ('{ has_attachment = "yes" }', "'has_attachment.equals' needs true or false"),
        ("{ form_id.exists = 1 }", "'form_id.exists' needs true or false, not a number"),
        ("{ to.one_of = [] }", "'to.one_of' needs a non-empty list"),
        ("{ to = [1, 2] }", "'to.equals' needs a string, not a number"),
        ('{ class.type = "rant" }', "'rant' is not one of incident, service_request"),
        ('{ class.priority = "P9" }', "'P9' is not one of P1, P2, P3, P4"),
        ('{ channel = "fax" }', "'fax' is not one of email, api, form"),
        ('{ on_list = "vip" }', "no list named 'vip' in [routing.lists]"),
        ("{ any = [] }", "'any' needs a non-empty list of condition tables"),
        ('{ not = "x" }', "a condition must be a table, not a string"),
        ('{ subject.contains = "" }', "needs a non-empty string"),
    ],
)
def test_wrong_value_type__reported(when: str, expected: str) -> None:
    _, rule, message = only(f'[[rule]]\nname = "x"\nwhen = {when}\n')
    assert rule == "x"
    assert expected in message


@pytest.mark.parametrize(
    ("then", "expected"),
    [
        ('{ priority = "urgent" }', "then.priority must be one of P1, P2, P3, P4"),
        ('{ type = "bug" }', "then.type must be one of incident"),
        ('{ tags = "a" }', "then.tags must be a list of non-empty strings"),
        ('{ acknowledge = "no" }', "then.acknowledge must be true or false"),
        ("{ quarantine = 1 }", "then.quarantine must be true or false"),
        ("{ escalation = -1 }", "then.escalation must be a whole number"),
        ('{ component = "vpn" }', "no component named 'vpn'"),
        ("{ fields = { a = [1] } }", "then.fields.a must be a string, number or boolean"),
        ('{ queue = "general", colour = "red" }', "unknown key 'colour' in then"),
    ],
)
def test_wrong_value_type__in_actions(then: str, expected: str) -> None:
    _, rule, message = only(f'[[rule]]\nname = "x"\nthen = {then}\n')
    assert rule == "x"
    assert expected in message


def test_rule_keys__unknown_and_wrong_types() -> None:
    text = '[[rule]]\nname = "x"\nwehn = { to = "a@b.c" }\nstop = "yes"\napplies_to = "old"\n'
    found = issues(text)
    assert [f[0] for f in found] == [3, 4, 5]
    assert "unknown key 'wehn' in [[rule]]" in found[0][2]
    assert found[1][2] == "stop must be true or false"
    assert found[2][2] == "applies_to must be one of new, replies, all"


def test_rule_names__missing_and_duplicate() -> None:
    text = '[[rule]]\nthen = { queue = "ops" }\n[[rule]]\nname = "a"\n[[rule]]\nname = "a"\n'
    found = issues(text)
    assert found[0][:2] == (1, "rule #1") and found[0][2] == "a rule needs a name"
    assert found[1][:2] == (6, "a") and found[1][2] == "duplicate rule name 'a'"


def test_unreachable__after_catch_all_with_stop() -> None:
    text = """
[[rule]]
name = "everything to triage"
then = { queue = "general" }
stop = true

[[rule]]
name = "billing"
when = { to = "billing@example.com" }
then = { queue = "billing" }
"""
    line, rule, message = only(text)
    assert (line, rule) == (8, "billing")
    assert message.startswith("can never be reached: rule 'everything to triage' (line 2)")


def test_unreachable__not_when_catch_all_does_not_stop_or_covers_other_inputs() -> None:
    no_stop = '[[rule]]\nname = "all"\nthen = { tags = ["t"] }\n[[rule]]\nname = "b"\n'
    assert issues(no_stop) == []
    only_new = (
        '[[rule]]\nname = "all"\nstop = true\n'
        '[[rule]]\nname = "replies"\napplies_to = "replies"\n'
        '[[rule]]\nname = "both"\napplies_to = "all"\n'
    )
    assert issues(only_new) == []
    conditional = (
        '[[rule]]\nname = "a"\nwhen = { channel = "api" }\nstop = true\n[[rule]]\nname = "b"\n'
    )
    assert issues(conditional) == []


def test_unreachable__empty_when_table_is_a_catch_all() -> None:
    text = (
        '[[rule]]\nname = "a"\nwhen = {}\nstop = true\napplies_to = "all"\n'
        '[[rule]]\nname = "b"\napplies_to = "replies"\n'
    )
    assert "can never be reached" in only(text)[2]


def test_lines__inline_array_of_rules_points_at_the_array() -> None:
    text = '# rules\n\nrule = [\n  { name = "a", then = { queue = "nope" } },\n]\n'
    assert only(text)[:2] == (3, "a")


def test_lines__toml_syntax_error_has_its_line() -> None:
    found = check_config('[[rule]]\nname = "a"\nwhen = { to = }\n', "bad.toml", QUEUES)
    assert found == [found[0]] and found[0].line == 3 and found[0].file == "bad.toml"
    assert found[0].message.startswith("not valid TOML")


def test_routing_table__unknown_keys_and_bad_values() -> None:
    text = """[routing]
default_queu = "general"
max_text_chars = 0
languages = ["en", "klingon"]
default_priority = "P0"
"""
    found = issues(text)
    messages = [f[2] for f in found]
    assert any("unknown key 'default_queu' in [routing]" in m for m in messages)
    assert any("max_text_chars must be a positive integer" in m for m in messages)
    assert any("unknown: klingon" in m for m in messages)
    assert any("default_priority must be one of P1" in m for m in messages)
    assert sorted(f[0] for f in found) == [2, 3, 4, 5]


def test_routing_table__lists_and_business_hours() -> None:
    text = """[routing.lists]
vip = "ceo@example.com"
[routing.business_hours]
timezone = "Mars/Olympus"
start = "18:00"
end = "09:00"
days = ["mon", "someday"]
"""
    messages = [f[2] for f in issues(text)]
    assert "list 'vip' must be a list of addresses or domains" in messages
    assert "business_hours: unknown time zone 'Mars/Olympus'" in messages
    assert "business_hours: start 18:00 must be before end 09:00" in messages
    assert any("unknown day 'someday'" in m for m in messages)


def test_components__missing_name_duplicate_alias() -> None:
    text = """
[[component]]
name = "vpn"
aliases = ["remote access"]

[[component]]
name = "citrix"
aliases = ["Remote Access"]

[[component]]
aliases = ["x"]
"""
    found = issues(text)
    assert found[0][:2] == (8, "citrix") and "also a cue of component 'vpn'" in found[0][2]
    assert found[1][:2] == (10, None) and found[1][2] == "a component needs a name"


def test_classifier__overrides_checked() -> None:
    text = """
[[classifier]]
output = "mood"
label = "angry"
cues = ["grr"]

[[classifier]]
output = "type"
label = "complaint"
cues = []
mode = "merge"
"""
    messages = [f[2] for f in issues(text)]
    assert "output must be 'type' or 'priority'" in messages
    assert "cues must be a non-empty list of non-empty strings" in messages
    assert "mode must be 'add' or 'replace'" in messages


def test_load_rules__raises_one_error_with_every_issue() -> None:
    text = (
        '[[rule]]\nname = "a"\nthen = { queue = "x" }\n[[rule]]\nname = "b"\nwhen = { nope = 1 }\n'
    )
    with pytest.raises(InvalidRulesError) as caught:
        load_rules(text, "rules.toml", QUEUES)
    assert [(i.rule, i.line) for i in caught.value.issues] == [("a", 3), ("b", 6)]
    assert "rules.toml:3: a: unknown queue 'x'" in str(caught.value)


def test_config_issue__str_names_file_line_rule() -> None:
    issue = ConfigIssue("rules.toml", 12, "billing", "unknown queue 'x'")
    assert str(issue) == "rules.toml:12: billing: unknown queue 'x'"


def test_load_rules__ignores_sections_it_does_not_own() -> None:
    text = """
[intake]
addresses = ["support@example.com"]
[[queue]]
name = "general"
sla = { first_response = "8h" }
[[escalation]]
when = { breached = "first_response" }
then = { queue = "duty-managers" }
"""
    assert load_rules(text, "rules.toml", None).rules == ()


def test_load_rules__design_example_config() -> None:
    text = r"""
[intake]
addresses = ["support@example.com", "billing@example.com"]
max_message_bytes = 26214400

[[queue]]
name = "general"
sla = { first_response = "8h", resolution = "5d", calendar = "office" }

[[queue]]
name = "billing"

[[queue]]
name = "network"

[[queue]]
name = "ops"

[[component]]            # the catalogue of what the desk supports
name = "vpn"
aliases = ["vpn", "remote access", "anyconnect"]
queue = "network"

[[rule]]
name = "billing address"
when = { to = "billing@example.com" }
then = { queue = "billing" }

[[rule]]
name = "outage"
when.any = [{ subject.matches = "(?i)\\b(outage|down)\\b" }, { body.contains = "urgent" }]
then = { type = "incident", priority = "P1", queue = "ops" }
stop = true

[[escalation]]
when = { breached = "first_response", priority = ["P1", "P2"] }
then = { queue = "duty-managers", notify = "webhook:pager" }
"""
    rules = load_rules(text, "intake.toml")
    assert [r.name for r in rules.rules] == ["billing address", "outage"]
    assert rules.components[0].queue == "network"


def test_routing_table__business_hours_defined_once() -> None:
    both = """[[calendar]]
name = "office"
[routing.business_hours]
calendar = "office"
start = "08:00"
"""
    assert any("give either calendar = NAME or your own start, not both" in f[2]
               for f in issues(both))
    unknown = '[routing.business_hours]\ncalendar = "ofice"\n'
    assert any("unknown calendar 'ofice'" in f[2] for f in issues(unknown))
    assert issues('[[calendar]]\nname = "office"\n[routing.business_hours]\n'
                  'calendar = "office"\n') == []
