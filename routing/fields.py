"""The vocabulary of conditions: which fields a rule may test, with which operators.

Validation reads this table, so a new field is one line here plus how `Facts`
computes it. Kinds decide the operators and the operand types:

- text: one string (subject, sender, a header ...)
- list: several strings, a test holds when any element passes (To, Cc ...)
- bool, number: what they say
- any: custom fields, whose type the config cannot know in advance
"""

from __future__ import annotations

from dataclasses import dataclass

TEXT, LIST, BOOL, NUMBER, ANY = "text", "list", "bool", "number", "any"

# Sender authentication's results (RFC 8601 2.7), as parsers/auth_results.py
# tells them apart: copied here, as routing imports no parser (a test keeps
# the two the same).
SPF_RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")
DKIM_RESULTS = ("pass", "fail", "policy", "neutral", "none", "temperror", "permerror")
DMARC_RESULTS = ("pass", "fail", "none", "temperror", "permerror")
ARC_RESULTS = ("pass", "fail", "none")
DMARC_POLICIES = ("none", "quarantine", "reject")
AUTH_SOURCES = ("verified", "trusted")

TYPES = ("incident", "service_request", "complaint", "information", "access_request")
PRIORITIES = ("P1", "P2", "P3", "P4")

OPERATORS = (
    "equals",
    "one_of",
    "contains",
    "starts_with",
    "ends_with",
    "matches",
    "exists",
    "greater",
    "less",
)
_TEXT_OPS = frozenset(OPERATORS) - {"greater", "less"}
OPS_BY_KIND: dict[str, frozenset[str]] = {
    TEXT: _TEXT_OPS,
    LIST: _TEXT_OPS,
    BOOL: frozenset({"equals", "exists"}),
    NUMBER: frozenset({"equals", "one_of", "greater", "less", "exists"}),
    ANY: frozenset(OPERATORS),
}

# Namespaces take a name after the dot: header.x-priority, field.order_id, class.type,
# auth.dmarc, spam.score (so TOML's dotted keys, `auth.dmarc = "fail"`, read as written).
NAMESPACES = ("header", "field", "class", "auth", "spam")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    kind: str
    doc: str
    # Allowed operand values when the field is an enumeration.
    choices: tuple[str, ...] = ()


FIELDS: dict[str, FieldSpec] = {
    "channel": FieldSpec(TEXT, "where it came in", ("email", "api", "form")),
    "to": FieldSpec(LIST, "To addresses"),
    "cc": FieldSpec(LIST, "Cc addresses"),
    "envelope": FieldSpec(LIST, "envelope recipients (RCPT TO)"),
    "recipient": FieldSpec(LIST, "any of To, Cc and envelope recipients"),
    "from": FieldSpec(TEXT, "sender address"),
    "from_domain": FieldSpec(TEXT, "sender's domain"),
    "subject": FieldSpec(TEXT, "subject"),
    "body": FieldSpec(TEXT, "new text: quotes and signature stripped"),
    "text": FieldSpec(TEXT, "full text"),
    "form_id": FieldSpec(TEXT, "form identifier (form and api channels)"),
    "has_attachment": FieldSpec(BOOL, "at least one attachment"),
    "attachment_count": FieldSpec(NUMBER, "number of attachments"),
    "attachment_name": FieldSpec(LIST, "attachment file names"),
    "attachment_type": FieldSpec(LIST, "attachment media types"),
    "language": FieldSpec(TEXT, "detected language (ISO 639-1), same as class.language"),
    "business_hours": FieldSpec(BOOL, "received within [routing.business_hours] (or its calendar)"),
    "on_list": FieldSpec(LIST, "names of [routing.lists] the sender is on"),
    "is_reply": FieldSpec(BOOL, "threaded onto an existing request"),
    "bounce": FieldSpec(BOOL, "a delivery report: our mail failed for good (5.x.x)"),
    "class.type": FieldSpec(TEXT, "classified type", TYPES),
    "class.priority": FieldSpec(TEXT, "classified priority", PRIORITIES),
    "class.component": FieldSpec(TEXT, "component found in the catalogue"),
    "class.language": FieldSpec(TEXT, "detected language"),
    "class.type_score": FieldSpec(NUMBER, "score of the classified type, 0 to 1"),
    "class.priority_score": FieldSpec(NUMBER, "score of the classified priority, 0 to 1"),
    "class.component_score": FieldSpec(NUMBER, "score of the component, 0 to 1"),
    "class.language_score": FieldSpec(NUMBER, "language identification probability"),
    # Sender authentication (a listener's sender_auth verify or trust): absent
    # when the mail was not checked (sender_auth off, IMAP, API, forms).
    "auth.spf": FieldSpec(TEXT, "SPF result for the envelope sender", SPF_RESULTS),
    "auth.dkim": FieldSpec(TEXT, "DKIM: pass when any signature passes", DKIM_RESULTS),
    "auth.dmarc": FieldSpec(TEXT, "DMARC result for the From domain", DMARC_RESULTS),
    "auth.arc": FieldSpec(TEXT, "ARC chain result", ARC_RESULTS),
    "auth.dmarc_policy": FieldSpec(TEXT, "the From domain's DMARC policy", DMARC_POLICIES),
    "auth.dkim_domain": FieldSpec(LIST, "domains (d=) of the DKIM signatures that passed"),
    "auth.source": FieldSpec(TEXT, "checked here (verified) or by a trusted front MTA",
                             AUTH_SOURCES),
    # A trusted front filter's headers (spam_headers): absent without them.
    "spam.score": FieldSpec(NUMBER, "the front spam filter's score"),
    "spam.flag": FieldSpec(BOOL, "the front spam filter called it spam"),
}
_HEADER = FieldSpec(TEXT, "a header, by name (case-insensitive)")
_CUSTOM = FieldSpec(ANY, "a custom field, by name")

# Fields long enough that literal `contains` tests are batched into one RE2 set
# scan per field instead of one Python search per rule.
SCANNED_FIELDS = frozenset({"subject", "body", "text"})


def spec_for(field: str) -> FieldSpec | None:
    """The spec of a canonical field name, or None when there is no such field."""
    spec = FIELDS.get(field)
    if spec is not None:
        return spec
    prefix, dot, name = field.partition(".")
    if dot and name:
        if prefix == "header":
            return _HEADER
        if prefix == "field":
            return _CUSTOM
    return None
