"""What an inbox item becomes: parse it and describe the request to store.

Email goes through the full parser; what makes a reply find its request is
passed on as thread hints (gateway/pipeline/placement.py decides with them). Automatic
mail (auto-replies, bounces, our own mail coming back) is kept and shown but
never acknowledged; on its own it does not become open work.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from domain import lifecycle
from domain.lifecycle import Actor, Event, EventKind, Status
from gateway.config import Config
from gateway.delivery.outbound import acknowledgement
from gateway.pipeline.placement import MAX_PARENTS, MAX_TAGS, sender_check
from gateway.pipeline.service_levels import deadlines
from parsers.addresses import Mailbox, mailbox_or_none
from parsers.api_request import ApiRequest, parse_api_request
from parsers.automatic import is_own_outbound
from parsers.forms import FormSubmission, submission_from_json
from parsers.json_shape import address_json, bounce_json
from parsers.mail import parse_email
from parsers.records import ParsedEmail
from parsers.reference_tags import find_reference_tags
from parsers.timestamps import is_rfc3339, parse_rfc3339
from routing.api import Attachment as RoutedAttachment
from routing.api import Decision, RoutingInput, RuleSet, decide
from routing.sla import SlaConfig
from storage.bounces import hard_bounce
from storage.fitting import fit_request
from storage.processing import ClaimedItem
from storage.records import NewAttachment, NewMessage, NewRequest, ThreadHints

MAX_DEFECTS_SHOWN = 20
# An archived mail's Date before this is taken for garbage (as one after it was fetched).
EARLIEST_MAIL_DATE = datetime(1990, 1, 1, tzinfo=UTC)
ARCHIVE_VETO = "imported from a mailbox archive"
MAX_NAME_SHOWN = 255  # a mailbox or folder name in an over-size note
# Request columns a rule for replies may change on an existing request.
REPLY_COLUMNS = {"queue": "queue", "priority": "priority", "type": "type",
                 "category": "category", "component": "component",
                 "escalation": "escalation_level"}


def email_input(parsed: ParsedEmail, item: ClaimedItem, *, is_reply: bool = False
                ) -> RoutingInput:
    """What the rules see of an email (`bounce`: a hard bounce of our mail)."""
    return RoutingInput(
        received_at=item.received_at, channel="email",
        envelope_to=tuple(item.meta.get("rcpt_tos") or ()),
        to=tuple(a.address for a in parsed.to), cc=tuple(a.address for a in parsed.cc),
        sender=parsed.from_.address if parsed.from_ else "", subject=parsed.subject,
        new_text=parsed.new_text, text=parsed.text, headers=parsed.headers,
        attachments=tuple(RoutedAttachment(name=a.filename or "", content_type=a.content_type,
                                           size=a.size) for a in parsed.attachments),
        is_reply=is_reply,
        bounce=parsed.bounce is not None and hard_bounce(bounce_json(parsed.bounce)),
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Routed:
    """What a routing decision makes of a new request, with its timeline entries
    (classified, routed, acknowledgement) and whether it is acknowledged."""

    queue: str
    priority: str | None
    type: str | None
    category: str | None
    component: str | None
    escalation_level: int
    status: Status
    tags: list[str]
    custom_fields: dict[str, Any]
    events: tuple[Event, ...]
    acknowledgement: lifecycle.Acknowledgement


def _routed(decision: Decision, *, automatic: bool, custom: dict[str, Any],
            ack_veto: str | None, archived: bool = False) -> Routed:
    explained = decision.to_dict(every_rule=False)
    ack = lifecycle.acknowledgement(wanted=decision.acknowledge,
                                    quarantined=decision.quarantine, veto=ack_veto,
                                    template=decision.template)
    tags = list(decision.tags) + (["automatic"] if automatic else [])
    return Routed(
        queue=decision.queue, priority=decision.priority, type=decision.type,
        category=decision.category, component=decision.component,
        escalation_level=decision.escalation,
        status=lifecycle.initial_status(quarantined=decision.quarantine, automatic=automatic,
                                        archived=archived),
        tags=list(dict.fromkeys(tags)), custom_fields=custom | dict(decision.fields),
        events=(
            Event(kind=EventKind.CLASSIFIED,
                  data={"classification": explained.pop("classification")}),
            Event(kind=EventKind.ROUTED, actor=Actor.RULE if decision.matched else Actor.SYSTEM,
                  data=explained),
            Event(kind=EventKind.ACKNOWLEDGEMENT, data=ack.data()),
        ),
        acknowledgement=ack,
    )


def _new_request(item: ClaimedItem, config: Config, sla: SlaConfig | None, routed: Routed, *,
                 message: NewMessage, received: Event, parsed: Event | None = None,
                 to_name: str | None, to: Mailbox | None, hints: ThreadHints | None = None,
                 reply_changes: dict[str, Any] | None = None,
                 reply_decision: dict[str, Any] | None = None,
                 sent_to: tuple[str, ...] = (), archived: bool = False,
                 created_at: datetime | None = None) -> NewRequest:
    """The request with its timeline, the status token, the service-level
    deadlines and, when the decision says so, the acknowledgement to `to`;
    every value fitted to its column, each change a defect on the message and
    the timeline (storage/fitting.py), so what was accepted can be stored."""
    token = secrets.token_urlsafe(24)
    timed = (deadlines(sla, queue=routed.queue, priority=routed.priority, type=routed.type,
                       created_at=item.received_at, escalations=config.escalations)
             if lifecycle.gets_deadlines(routed.status) else {})
    ack = None
    if routed.acknowledgement.send and to is not None:
        ack = acknowledgement(config, config.templates, sent_to=sent_to,
                              reference=item.reference, queue=routed.queue, status_token=token,
                              template=routed.acknowledgement.template, to_name=to_name,
                              to=to, subject=message.subject,
                              customer_message_id=message.message_id,
                              references=list(message.references))
    return fit_request(NewRequest(
        queue=routed.queue, message=message, requester_email=message.from_address,
        requester_name=message.from_name, custom_fields=routed.custom_fields,
        received=received,
        events=(*([parsed] if parsed is not None else []), *routed.events),
        status=routed.status, tags=routed.tags, priority=routed.priority, type=routed.type,
        category=routed.category, component=routed.component,
        escalation_level=routed.escalation_level, status_token=token, acknowledgement=ack,
        sla=timed, hints=hints, reply_changes=reply_changes or {},
        reply_decision=reply_decision, archived=archived, created_at=created_at))


def _recipient_veto(config: Config, mailbox: Mailbox | None, *, ours: bool = False
                    ) -> str | None:
    """Why the acknowledgement may not go to `mailbox` (None: no address to send to)."""
    ours = ours or (mailbox is not None and config.accepts(mailbox.addr_spec))
    return lifecycle.recipient_veto(recipient=mailbox.addr_spec if mailbox else None, ours=ours)


def _answer_to(parsed: ParsedEmail, config: Config) -> tuple[Mailbox | None, str | None, bool]:
    """Where an answer to an email goes (RFC 5322 3.6.2): the first Reply-To
    address, else From, as one checked addr-spec, never a list (a Reply-To that
    is not one falls back to From); its display name; and whether it is one of
    our own addresses (then nothing is sent)."""
    for address in (*parsed.reply_to[:1], *([parsed.from_] if parsed.from_ else [])):
        if config.accepts(address.address.strip()):
            return None, None, True
        if (mailbox := mailbox_or_none(address.address)) is not None:
            return mailbox, address.name or None, False
    return None, None, False


def _reply_rules(rules: RuleSet) -> bool:
    return any(r.applies_to in ("replies", "all") and r.enabled for r in rules.rules)


def _parents(parsed: ParsedEmail) -> tuple[str, ...]:
    """In-Reply-To first, then References from the most recent back, once each."""
    ordered = ([parsed.in_reply_to] if parsed.in_reply_to else []) + list(
        reversed(parsed.references))
    return tuple(dict.fromkeys(ordered))


def _traits(parsed: ParsedEmail, own: bool, config: Config) -> lifecycle.MailTraits:
    sender = parsed.from_.address.lower() if parsed.from_ else ""
    return lifecycle.MailTraits(
        sender=sender, has_sender=parsed.from_ is not None, own_outbound=own,
        ours=bool(sender) and config.accepts(sender), bounce=parsed.bounce is not None,
        auto_reply=parsed.auto_reply, list_mail=parsed.list_mail, list_id=parsed.list_id)


def _aware(moment: datetime) -> datetime:
    """RFC 5322's "-0000" (a UTC time, local zone unknown) parses without a zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _rfc3339(value: Any) -> datetime | None:
    """The fetcher's INTERNALDATE (RFC 3339 text), if it is one."""
    if not isinstance(value, str) or not is_rfc3339(value):
        return None
    try:
        return parse_rfc3339(value)
    except ValueError:
        return None


def archive_date(date: datetime | None, internal_date: Any, received_at: datetime
                 ) -> datetime:
    """When an archived mail was written: its Date header, else the server's
    INTERNALDATE, each only when sane (from 1990 on, not after the gateway got
    it: senders' clocks and hostile headers lie), else when the gateway got it."""
    fetched = _aware(received_at)
    for candidate in (date, _rfc3339(internal_date)):
        if candidate is None:
            continue
        moment = _aware(candidate)
        try:
            if EARLIEST_MAIL_DATE <= moment <= fetched:
                return moment.astimezone(UTC)
        except OverflowError:  # year 1 or 9999 with an offset: garbage
            continue
    return fetched


def _too_large(item: ClaimedItem) -> int | None:
    """The size of a mailbox message the fetcher left on the server (it stored
    only its header section), or None."""
    size = item.meta.get("too_large")
    return size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None


def _shown(name: Any) -> str:
    """A mailbox or folder name as a note quotes it: one line, bounded."""
    text = name if isinstance(name, str) else ""
    return "".join(c for c in text if c.isprintable())[:MAX_NAME_SHOWN] or "(unnamed)"


def too_large_note(size: int, limit: int, folder: Any, mailbox: Any) -> str:
    """What the request says instead of a message the gateway did not fetch."""
    return (f"This message was {size} bytes, over the limit of {limit} bytes. It was left "
            f'in the folder "{_shown(folder)}" of the mailbox "{_shown(mailbox)}", unread '
            f"by the gateway, which stored only its header: read it there.")


def email_request(item: ClaimedItem, config: Config, rules: RuleSet,
                  sla: SlaConfig | None = None, parsed: ParsedEmail | None = None
                  ) -> NewRequest:
    """`parsed`: the item's raw mail parsed already (off the event loop when it
    is large: gateway/pipeline/parsing.py); else it is parsed here."""
    parsed = parsed if parsed is not None else parse_email(item.raw)
    # A mailbox's message (gateway/mailbox/): archived old mail, or one too large
    # to fetch (then `raw` is its header section only).
    imap = item.channel == "imap"
    archived = imap and item.meta.get("archive") is True
    too_large = _too_large(item) if imap else None
    created_at = (archive_date(parsed.date, item.meta.get("internal_date"), item.received_at)
                  if archived else None)
    own = is_own_outbound(parsed, config.message_id_domain)
    traits = _traits(parsed, own, config)
    automatic = traits.automatic
    sender = parsed.from_.address.lower() if parsed.from_ else None
    flags: dict[str, Any] = {
        "auto_reply": parsed.auto_reply,
        "bounce": bounce_json(parsed.bounce) if parsed.bounce else None,
        "list": parsed.list_mail,
        "list_id": parsed.list_id, "own_outbound": own,
        "defects": list(parsed.defects[:MAX_DEFECTS_SHOWN]),
    }
    text, new_text = parsed.text, parsed.new_text
    if too_large is not None:
        flags["too_large"] = too_large
        text = new_text = too_large_note(too_large, config.intake.max_message_bytes,
                                         item.meta.get("folder"), item.meta.get("mailbox"))
    message = NewMessage(
        subject=parsed.subject, text=text, new_text=new_text,
        from_address=sender, from_name=parsed.from_.name or None if parsed.from_ else None,
        message_id=parsed.message_id, in_reply_to=parsed.in_reply_to,
        references=list(parsed.references), to=[address_json(a) for a in parsed.to],
        cc=[address_json(a) for a in parsed.cc],
        html=parsed.html, flags=flags,
        attachments=[NewAttachment(a.filename, a.content_type, a.content, a.content_id,
                                   a.inline) for a in parsed.attachments],
    )
    hints = ThreadHints(
        message_id=parsed.message_id, parent_ids=_parents(parsed)[:MAX_PARENTS],
        bounce_of=parsed.bounce.original_message_id if parsed.bounce else None,
        tags=find_reference_tags(parsed.subject, config.threading.subject_tag)[:MAX_TAGS],
        sender=sender, automatic=automatic,
        copied=tuple(dict.fromkeys(a.address.strip().lower() for a in (*parsed.to, *parsed.cc)
                                   if a.address)),
        sender_ours=traits.ours, sender_check=sender_check(parsed),
    )
    answer_to, answer_name, answer_ours = _answer_to(parsed, config)
    routed = _routed(decide(rules, email_input(parsed, item)), automatic=automatic, custom={},
                     ack_veto=ARCHIVE_VETO if archived else (
                         lifecycle.acknowledgement_veto(traits)
                         or _recipient_veto(config, answer_to, ours=answer_ours)),
                     archived=archived)
    # Whether it is a reply is known only when it is stored; a reply rule's
    # changes are worked out now, in case, when the mail looks like a reply.
    # Automatic mail changes nothing, except a hard bounce (`when = { bounce = true }`).
    reply_changes: dict[str, Any] = {}
    reply_decision = None
    hard = flags["bounce"] is not None and hard_bounce(flags["bounce"])
    if (not archived and (not automatic or hard)
            and (hints.parent_ids or hints.tags or hints.bounce_of) and _reply_rules(rules)):
        reply = decide(rules, email_input(parsed, item, is_reply=True))
        reply_changes = {REPLY_COLUMNS[f]: getattr(reply, f) for f in reply.applies
                         if f in REPLY_COLUMNS}
        reply_decision = reply.to_dict(every_rule=False) if reply_changes else None
    where = ("mailbox", "folder", "uid", "rcpt_tos") if imap else ("mail_from", "rcpt_tos", "peer")
    envelope = {k: item.meta.get(k) for k in where}
    received = Event(kind=EventKind.RECEIVED, data={
        "channel": item.channel, "envelope": envelope,
        "received_at": item.received_at.isoformat(),
        **({"archived": True, "dated": created_at.isoformat()} if created_at else {})})
    parsed_event = Event(kind=EventKind.PARSED, data={
        "parser": "full", "defects": flags["defects"], "auto_reply": parsed.auto_reply,
        "bounce": parsed.bounce is not None, "list": parsed.list_mail, "own_outbound": own})
    return _new_request(
        item, config, sla, routed, message=message, received=received, parsed=parsed_event,
        to_name=answer_name, to=answer_to, hints=hints, reply_changes=reply_changes,
        reply_decision=reply_decision, archived=archived, created_at=created_at,
        # Our identity follows the address written to: envelope first, then headers.
        sent_to=(*(item.meta.get("rcpt_tos") or ()),
                 *(a.address for a in (*parsed.to, *parsed.cc))))


def api_request(item: ClaimedItem, config: Config, rules: RuleSet,
                sla: SlaConfig | None = None) -> NewRequest:
    # Not strict: a body accepted before the edge refused NaN or lone
    # surrogates is still read; its values are fitted with a recorded defect.
    parsed = parse_api_request(item.raw, strict=False)
    if isinstance(parsed, list):  # validated before it was accepted; only a bug gets here
        raise ValueError(f"stored API body no longer validates: {parsed[0]}")
    message = NewMessage(
        subject=parsed.subject, text=parsed.body, new_text=parsed.body,
        from_address=parsed.requester_email, from_name=parsed.requester_name,
    )
    routed = _routed(decide(rules, api_input(parsed, item)), automatic=False,
                     custom=dict(parsed.custom_fields),
                     ack_veto=_recipient_veto(config, parsed.requester))
    return _from_person(item, config, sla, message, routed, parsed.requester,
                        {"token_id": item.meta.get("token_id")})


def _from_person(item: ClaimedItem, config: Config, sla: SlaConfig | None,
                 message: NewMessage, routed: Routed, to: Mailbox | None,
                 received: dict[str, Any]) -> NewRequest:
    """The request a person's own words make (a JSON body, a web form),
    acknowledged to the address they gave (`to`, checked)."""
    event = Event(kind=EventKind.RECEIVED, data={
        "channel": item.channel, **received, "received_at": item.received_at.isoformat()})
    return _new_request(item, config, sla, routed, message=message, received=event,
                        to_name=message.from_name, to=to)


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
    # Checked again: a post stored before addresses were checked may hold a list.
    to = mailbox_or_none(parsed.requester_email)
    routed = _routed(decision, automatic=False, custom=dict(parsed.custom_fields),
                     ack_veto=_recipient_veto(config, to) if parsed.requester_email
                     else "the form has no email")
    return _from_person(item, config, sla, message, routed, to, {
        "form_id": parsed.form_id, "remote": item.meta.get("remote"),
        "origin": item.meta.get("origin"), "files": len(parsed.files)})
