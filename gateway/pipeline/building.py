"""What an inbox item becomes: parse it and describe the request to store.

Email goes through the full parser; what makes a reply find its request is
passed on as thread hints (gateway/pipeline/placement.py decides with them). Automatic
mail (auto-replies, bounces, our own mail coming back) is kept and shown but
never acknowledged; on its own it does not become open work.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from typing import Any

from gateway.config import Config
from gateway.delivery.outbound import Templates, acknowledgement
from gateway.pipeline.service_levels import deadlines
from parsers.api_request import ApiRequest, parse_api_request
from parsers.automatic import is_own_outbound
from parsers.forms import FormSubmission, submission_from_json
from parsers.json_shape import address_json, bounce_json
from parsers.mail import parse_email
from parsers.records import ParsedEmail
from parsers.reference_tags import find_reference_tags
from routing.api import Attachment as RoutedAttachment
from routing.api import Decision, RoutingInput, RuleSet, decide
from routing.sla import SlaConfig
from storage.processing import ClaimedItem
from storage.records import NewAttachment, NewMessage, NewRequest, ThreadHints

MAX_DEFECTS_SHOWN = 20
# Request columns a rule for replies may change on an existing request.
REPLY_COLUMNS = {"queue": "queue", "priority": "priority", "type": "type",
                 "category": "category", "component": "component",
                 "escalation": "escalation_level"}


def email_input(parsed: ParsedEmail, item: ClaimedItem, *, is_reply: bool = False
                ) -> RoutingInput:
    """What the rules see of an email."""
    return RoutingInput(
        received_at=item.received_at, channel="email",
        envelope_to=tuple(item.meta.get("rcpt_tos") or ()),
        to=tuple(a.address for a in parsed.to), cc=tuple(a.address for a in parsed.cc),
        sender=parsed.from_.address if parsed.from_ else "", subject=parsed.subject,
        new_text=parsed.new_text, text=parsed.text, headers=parsed.headers,
        attachments=tuple(RoutedAttachment(name=a.filename or "", content_type=a.content_type,
                                           size=a.size) for a in parsed.attachments),
        is_reply=is_reply,
    )


def api_input(parsed: ApiRequest, item: ClaimedItem) -> RoutingInput:
    return RoutingInput(
        received_at=item.received_at, channel="api", sender=parsed.requester_email,
        subject=parsed.subject, new_text=parsed.body, text=parsed.body,
        custom_fields=tuple((k, v) for k, v in parsed.custom_fields.items() if v is not None),
    )


def form_input(parsed: FormSubmission, item: ClaimedItem, queue: str | None = None
               ) -> RoutingInput:
    return RoutingInput(
        received_at=item.received_at, channel="form", form_id=parsed.form_id,
        default_queue=queue,
        sender=parsed.requester_email or "", subject=parsed.subject, new_text=parsed.body,
        text=parsed.body, custom_fields=tuple(parsed.custom_fields.items()),
        attachments=tuple(RoutedAttachment(name=f.filename, content_type=f.content_type,
                                           size=f.size) for f in parsed.files),
    )


def _routed(decision: Decision, *, automatic: bool, custom: dict[str, Any],
            ack_veto: str | None) -> dict[str, Any]:
    """NewRequest fields and timeline events from a routing decision."""
    explained = decision.to_dict(every_rule=False)
    send = decision.acknowledge and ack_veto is None and not decision.quarantine
    why = (ack_veto or ("quarantined" if decision.quarantine else None)
           or ("by rule" if decision.acknowledge else "a rule turned it off"))
    status = "quarantined" if decision.quarantine else ("closed" if automatic else "new")
    tags = list(decision.tags) + (["automatic"] if automatic else [])
    return {
        "queue": decision.queue, "priority": decision.priority, "type": decision.type,
        "category": decision.category, "component": decision.component,
        "escalation_level": decision.escalation, "status": status,
        "tags": list(dict.fromkeys(tags)), "custom_fields": custom | dict(decision.fields),
        "events": [
            ("classified", "system", {"classification": explained.pop("classification")}),
            ("routed", "rule" if decision.matched else "system", explained),
            ("acknowledgement", "system",
             {"send": send, "reason": why if not send else "new request from a person",
              "template": decision.template if send else None}),
        ],
    }


@lru_cache(maxsize=8)
def _templates(folder: str | None) -> Templates:
    return Templates(folder)


def _with_ack(new: dict[str, Any], events: list[tuple[str, str, dict[str, Any]]],
              item: ClaimedItem, config: Config, *, to_name: str | None,
              to_address: str | None, subject: str, message_id: str | None,
              references: list[str], sla: SlaConfig | None = None) -> dict[str, Any]:
    """Add the status token, the service-level deadlines and, when the decision
    says so, the acknowledgement."""
    token = secrets.token_urlsafe(24)
    if new["status"] in ("new", "quarantined"):
        new = new | {"sla": deadlines(sla, queue=new["queue"], priority=new["priority"],
                                      type=new["type"], created_at=item.received_at)}
    ack_event = next(e for e in events if e[0] == "acknowledgement")[2]
    ack = None
    if ack_event["send"] and to_address:
        ack = acknowledgement(config, _templates(config.outbound.templates),
                              reference=item.reference, queue=new["queue"], status_token=token,
                              template=ack_event.get("template"), to_name=to_name,
                              to_address=to_address, subject=subject,
                              customer_message_id=message_id, references=references)
    return new | {"status_token": token, "acknowledgement": ack}


def _reply_rules(rules: RuleSet) -> bool:
    return any(r.applies_to in ("replies", "all") and r.enabled for r in rules.rules)


def _parents(parsed: ParsedEmail) -> tuple[str, ...]:
    """In-Reply-To first, then References from the most recent back, once each."""
    ordered = ([parsed.in_reply_to] if parsed.in_reply_to else []) + list(
        reversed(parsed.references))
    return tuple(dict.fromkeys(ordered))


_NO_REPLY = ("mailer-daemon", "postmaster", "noreply", "no-reply", "no_reply", "donotreply",
             "do-not-reply", "bounce", "bounces")


def _acknowledgement(parsed: ParsedEmail, own: bool, config: Config) -> tuple[bool, str]:
    if own:
        return False, "our own mail came back"
    sender = parsed.from_.address.lower() if parsed.from_ else ""
    local = sender.partition("@")[0]
    if sender and config.accepts(sender):
        return False, "sent from one of our own addresses"
    if any(local == word or local.startswith(word + "+") or local.startswith(word + "-")
           for word in _NO_REPLY):
        return False, f"{sender} does not take replies"
    if parsed.bounce is not None:
        return False, "delivery report"
    if parsed.auto_reply:
        return False, "automatic reply (RFC 3834)"
    if parsed.list_mail:
        return False, f"mailing-list mail ({parsed.list_id or 'List-Id'})"
    if parsed.from_ is None:
        return False, "no sender address"
    return True, "new request from a person"


def email_request(item: ClaimedItem, config: Config, rules: RuleSet,
                  sla: SlaConfig | None = None) -> NewRequest:
    parsed = parse_email(item.raw)
    own = is_own_outbound(parsed, config.message_id_domain)
    automatic = own or parsed.auto_reply or parsed.bounce is not None
    sender = parsed.from_.address.lower() if parsed.from_ else None
    flags: dict[str, Any] = {
        "auto_reply": parsed.auto_reply,
        "bounce": bounce_json(parsed.bounce) if parsed.bounce else None,
        "list": parsed.list_mail,
        "list_id": parsed.list_id, "own_outbound": own,
        "defects": list(parsed.defects[:MAX_DEFECTS_SHOWN]),
    }
    message = NewMessage(
        subject=parsed.subject, text=parsed.text, new_text=parsed.new_text,
        from_address=sender, from_name=parsed.from_.name or None if parsed.from_ else None,
        message_id=parsed.message_id, in_reply_to=parsed.in_reply_to,
        references=list(parsed.references), to=[address_json(a) for a in parsed.to],
        cc=[address_json(a) for a in parsed.cc],
        html=parsed.html, flags=flags,
        attachments=[NewAttachment(a.filename, a.content_type, a.content, a.content_id,
                                   a.inline) for a in parsed.attachments],
    )
    hints = ThreadHints(
        message_id=parsed.message_id, parent_ids=_parents(parsed),
        bounce_of=parsed.bounce.original_message_id if parsed.bounce else None,
        tags=find_reference_tags(parsed.subject, config.threading.subject_tag),
        sender=sender, automatic=automatic,
    )
    send, why = _acknowledgement(parsed, own, config)
    routed = _routed(decide(rules, email_input(parsed, item)), automatic=automatic, custom={},
                     ack_veto=None if send else why)
    # Whether it is a reply is known only when it is stored; a reply rule's
    # changes are worked out now, in case, when the mail looks like a reply.
    reply_changes: dict[str, Any] = {}
    reply_decision = None
    if not automatic and (hints.parent_ids or hints.tags) and _reply_rules(rules):
        reply = decide(rules, email_input(parsed, item, is_reply=True))
        reply_changes = {REPLY_COLUMNS[f]: getattr(reply, f) for f in reply.applies
                         if f in REPLY_COLUMNS}
        reply_decision = reply.to_dict(every_rule=False) if reply_changes else None
    envelope = {k: item.meta.get(k) for k in ("mail_from", "rcpt_tos", "peer")}
    events = [
        ("received", "system", {"channel": item.channel, "envelope": envelope,
                                "received_at": item.received_at.isoformat()}),
        ("parsed", "system", {"parser": "full", "defects": flags["defects"],
                              "auto_reply": parsed.auto_reply,
                              "bounce": parsed.bounce is not None,
                              "list": parsed.list_mail, "own_outbound": own}),
        *routed.pop("events"),
    ]
    reply_to = parsed.reply_to[0] if parsed.reply_to else parsed.from_
    routed = _with_ack(routed, events, item, config, to_name=reply_to.name if reply_to else None,
                       to_address=reply_to.address if reply_to else None,
                       subject=parsed.subject, message_id=parsed.message_id,
                       references=list(parsed.references), sla=sla)
    return NewRequest(
        message=message, requester_email=sender, requester_name=message.from_name,
        hints=hints, events=events, reply_changes=reply_changes,
        reply_decision=reply_decision, **routed,
    )


def api_request(item: ClaimedItem, config: Config, rules: RuleSet,
                sla: SlaConfig | None = None) -> NewRequest:
    parsed = parse_api_request(item.raw)
    if isinstance(parsed, list):  # validated before it was accepted; only a bug gets here
        raise ValueError(f"stored API body no longer validates: {parsed[0]}")
    message = NewMessage(
        subject=parsed.subject, text=parsed.body, new_text=parsed.body,
        from_address=parsed.requester_email, from_name=parsed.requester_name,
    )
    routed = _routed(decide(rules, api_input(parsed, item)), automatic=False,
                     custom=dict(parsed.custom_fields), ack_veto=None)
    return _from_person(item, config, sla, message, routed,
                        {"token_id": item.meta.get("token_id")})


def _from_person(item: ClaimedItem, config: Config, sla: SlaConfig | None,
                 message: NewMessage, routed: dict[str, Any],
                 received: dict[str, Any]) -> NewRequest:
    """The request a person's own words make (a JSON body, a web form): the
    timeline, the deadlines and the acknowledgement to the address they gave."""
    events = [
        ("received", "system", {"channel": item.channel, **received,
                                "received_at": item.received_at.isoformat()}),
        *routed.pop("events"),
    ]
    routed = _with_ack(routed, events, item, config, to_name=message.from_name,
                       to_address=message.from_address, subject=message.subject,
                       message_id=None, references=[], sla=sla)
    return NewRequest(message=message, requester_email=message.from_address,
                      requester_name=message.from_name, events=events, **routed)


def form_request(item: ClaimedItem, config: Config, rules: RuleSet,
                 sla: SlaConfig | None = None) -> NewRequest:
    """A web-form post: its files are already stored, the message refers to them."""
    parsed = submission_from_json(item.raw)
    message = NewMessage(
        subject=parsed.subject, text=parsed.body, new_text=parsed.body,
        from_address=parsed.requester_email, from_name=parsed.requester_name,
        attachments=[NewAttachment(f.filename or None, f.content_type, b"",
                                   stored_sha256=f.sha256, stored_size=f.size)
                     for f in parsed.files],
    )
    spec = config.forms.get(parsed.form_id)  # gone from the config since: no queue of its own
    decision = decide(rules, form_input(parsed, item, spec.queue if spec else None))
    routed = _routed(decision, automatic=False, custom=dict(parsed.custom_fields),
                     ack_veto=None if parsed.requester_email else "the form has no email")
    return _from_person(item, config, sla, message, routed, {
        "form_id": parsed.form_id, "remote": item.meta.get("remote"),
        "origin": item.meta.get("origin"), "files": len(parsed.files)})
