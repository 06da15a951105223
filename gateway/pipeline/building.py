"""What an inbox item becomes: parse it and describe the request to store.

Email goes through the full parser; what makes a reply find its request is
passed on as thread hints (gateway/pipeline/placement.py decides with them). Automatic
mail (auto-replies, bounces, our own mail coming back) is kept and shown but
never acknowledged; on its own it does not become open work.

Sender authentication, by the listener's `sender_auth`: "verify" verdicts come
checked already (the worker runs the verifier, which does I/O); "trust" reads
the front MTA's Authentication-Results here; "off", and mail fetched by IMAP,
have none. The verdicts are stored in the message's flags, said on the
timeline (`authenticated`), read by the rules (`auth.*`, `spam.*`) and by
threading: a forged From never joins a request, and is never acknowledged.

Each builder is a generator of its stages (`Steps`): it yields after reading
the item (parse, addresses), after identifying its language, after deciding
(classification, rules), and after the acknowledgement, then returns the
fitted request. The worker runs a batch a stage at a time
(gateway/pipeline/stages.py); `stages.finish` runs one whole.
"""

from __future__ import annotations

import secrets
from collections.abc import Generator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from domain import lifecycle
from domain.lifecycle import Actor, Event, EventKind, Status
from gateway import i18n
from gateway.config import Config
from gateway.delivery.outbound import acknowledgement
from gateway.pipeline.placement import MAX_PARENTS, MAX_TAGS, sender_check, vouches_elsewhere
from gateway.pipeline.service_levels import deadlines
from parsers.addresses import Mailbox, mailbox_or_none
from parsers.api_request import ApiRequest, parse_api_request
from parsers.auth_results import (
    SpamVerdict,
    Verdicts,
    authentication_results,
    describe,
    ignored_results,
    merged_ignored,
    verdicts_from_json,
)
from parsers.automatic import is_own_outbound
from parsers.forms import FormSubmission, submission_from_json
from parsers.json_shape import address_json, bounce_json
from parsers.mail import parse_email
from parsers.records import ParsedEmail
from parsers.reference_tags import find_reference_tags
from parsers.timestamps import is_rfc3339, parse_rfc3339
from routing.api import Attachment as RoutedAttachment
from routing.api import (
    Decision,
    RoutingInput,
    RuleSet,
    SenderAuth,
    SpamOpinion,
    decide,
    read_language,
)
from routing.sla import SlaConfig
from storage.bounces import hard_bounce
from storage.fitting import fit_request
from storage.processing import ClaimedItem
from storage.records import NewAttachment, NewMessage, NewRequest, SenderCheck, ThreadHints

MAX_DEFECTS_SHOWN = 20
# An archived mail's Date before this is taken for garbage (as one after it was fetched).
EARLIEST_MAIL_DATE = datetime(1990, 1, 1, tzinfo=UTC)
ARCHIVE_VETO = "imported from a mailbox archive"
MAX_NAME_SHOWN = 255  # a mailbox or folder name in an over-size note
# Request columns a rule for replies may change on an existing request.
REPLY_COLUMNS = {"queue": "queue", "priority": "priority", "type": "type",
                 "category": "category", "component": "component",
                 "escalation": "escalation_level"}
# The listeners an email item may come from (meta["listener"]); an item stored
# before listeners were named came from its channel's.
LISTENERS = ("smtp", "lmtp", "smtps")
SMTP_CHANNELS = ("smtp", "lmtp")
MAX_TLS_TEXT = 100  # a TLS version or cipher name, as the timeline shows it
FORGED_QUARANTINE = "sender_auth:forged_from"
# One request's build, stage by stage: each `yield` ends a stage, the return
# value is the request (gateway/pipeline/stages.py runs them).
Steps = Generator[None, None, NewRequest]


def listener_of(item: ClaimedItem) -> str | None:
    """The SMTP listener an email came in by; None for other channels (IMAP too)."""
    if item.channel not in SMTP_CHANNELS:
        return None
    named = item.meta.get("listener")
    return named if isinstance(named, str) and named in LISTENERS else item.channel


def sender_auth_mode(item: ClaimedItem, config: Config) -> str:
    """off, verify or trust: the listener's `sender_auth` ("off" outside SMTP)."""
    listener = listener_of(item)
    return "off" if listener is None else config.smtp.policy_of(listener).sender_auth


def sender_verdicts(item: ClaimedItem, config: Config, verified: Verdicts | None = None
                    ) -> tuple[Verdicts | None, SpamVerdict | None]:
    """The item's verdicts and spam verdict. `verified`: the verifier's, for a
    listener that verifies (the headers claiming results are recorded as not
    believed); a trusting listener's are read from the front MTA's headers."""
    mode = sender_auth_mode(item, config)
    if mode == "verify" and verified is not None:
        ignored = merged_ignored(verified.ignored, ignored_results(item.raw))
        # Read back as stored: every value within what the API documents.
        return verdicts_from_json(replace(verified, ignored=ignored).as_json()), None
    if mode == "trust":
        listener = listener_of(item)
        assert listener is not None  # trust is a listener's policy
        policy = config.smtp.policy_of(listener)
        return authentication_results(item.raw, policy.authserv_ids,
                                      spam_headers=policy.spam_headers)
    return None, None


def _rules_auth(verdicts: Verdicts | None) -> SenderAuth | None:
    if verdicts is None:
        return None
    return SenderAuth(source=verdicts.source, spf=verdicts.spf, dkim=verdicts.dkim,
                      dmarc=verdicts.dmarc, arc=verdicts.arc,
                      dmarc_policy=verdicts.dmarc_policy, dkim_domains=verdicts.dkim_domains)


def email_input(parsed: ParsedEmail, item: ClaimedItem, *, is_reply: bool = False,
                auth: Verdicts | None = None, spam: SpamVerdict | None = None
                ) -> RoutingInput:
    """What the rules see of an email (`bounce`: a hard bounce of our mail;
    `auth` and `spam`: its verdicts, None when not checked)."""
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
        auth=_rules_auth(auth),
        spam=None if spam is None else SpamOpinion(score=spam.score, flag=spam.flag),
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
            ack_veto: str | None, archived: bool = False, held_by: str | None = None
            ) -> Routed:
    """`held_by`: what quarantines it besides the rules (a forged From)."""
    explained = decision.to_dict(every_rule=False)
    quarantined = decision.quarantine or held_by is not None
    if held_by is not None and not decision.quarantine:
        explained["quarantine"] = True
        explained["sources"]["quarantine"] = held_by
    ack = lifecycle.acknowledgement(wanted=decision.acknowledge,
                                    quarantined=quarantined, veto=ack_veto,
                                    template=decision.template)
    tags = list(decision.tags) + (["automatic"] if automatic else [])
    return Routed(
        queue=decision.queue, priority=decision.priority, type=decision.type,
        category=decision.category, component=decision.component,
        escalation_level=decision.escalation,
        status=lifecycle.initial_status(quarantined=quarantined, automatic=automatic,
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
                 authenticated: Event | None = None,
                 to_name: str | None, to: Mailbox | None, hints: ThreadHints | None = None,
                 reply_changes: dict[str, Any] | None = None,
                 reply_decision: dict[str, Any] | None = None,
                 sent_to: tuple[str, ...] = (), archived: bool = False,
                 created_at: datetime | None = None) -> Steps:
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
                              references=list(message.references),
                              # The customer's language: detected in their words,
                              # else their form's Accept-Language (gateway/i18n).
                              detected=i18n.from_timeline(
                                  {"kind": e.kind, "data": e.data} for e in routed.events)[0],
                              accept_language=_accept_language(item),
                              received_at=item.received_at)
    yield
    return fit_request(NewRequest(
        queue=routed.queue, message=message, requester_email=message.from_address,
        requester_name=message.from_name, custom_fields=routed.custom_fields,
        received=received,
        events=(*(e for e in (parsed, authenticated) if e is not None), *routed.events),
        status=routed.status, tags=routed.tags, priority=routed.priority, type=routed.type,
        category=routed.category, component=routed.component,
        escalation_level=routed.escalation_level, status_token=token, acknowledgement=ack,
        sla=timed, hints=hints, reply_changes=reply_changes or {},
        reply_decision=reply_decision, archived=archived, created_at=created_at))


def _accept_language(item: ClaimedItem) -> str | None:
    """The Accept-Language a form was sent with (gateway/http/forms.py keeps it)."""
    value = item.meta.get("accept_language")
    return value if isinstance(value, str) else None


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


def _traits(parsed: ParsedEmail, own: bool, config: Config, forged: bool = False
            ) -> lifecycle.MailTraits:
    sender = parsed.from_.address.lower() if parsed.from_ else ""
    return lifecycle.MailTraits(
        sender=sender, has_sender=parsed.from_ is not None, own_outbound=own,
        ours=bool(sender) and config.accepts(sender), bounce=parsed.bounce is not None,
        auto_reply=parsed.auto_reply, list_mail=parsed.list_mail, list_id=parsed.list_id,
        forged_from=forged)


def _tls_shown(value: Any) -> dict[str, str] | None:
    """The TLS the SMTP handler recorded (version, cipher), as the timeline shows it."""
    if not isinstance(value, dict):
        return None
    return {key: "".join(c for c in value[key] if c.isprintable())[:MAX_TLS_TEXT]
            for key in ("version", "cipher") if isinstance(value.get(key), str)}


def _authenticated(verdicts: Verdicts, spam: SpamVerdict | None, check: SenderCheck,
                   held: bool) -> Event:
    """The timeline entry saying the verdicts, and what a forged From made of the mail."""
    words = describe(verdicts, spam)
    forged = check == SenderCheck.FAILED
    if forged and not verdicts.forged_from:
        words += ("; From holds more than one address, or the results are about another "
                  "From domain: nobody is authenticated")
    if forged:
        words += ("; it joins no request, gets no acknowledgement"
                  + (" and is quarantined" if held else ""))
    return Event(kind=EventKind.AUTHENTICATED, data={
        "summary": words, "source": verdicts.source, "sender_check": str(check),
        "forged_from": forged, "verdicts": verdicts.as_json(),
        "spam": spam.as_json() if spam is not None else None})


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
                  sla: SlaConfig | None = None, parsed: ParsedEmail | None = None,
                  verified: Verdicts | None = None) -> Steps:
    """`parsed`: the item's raw mail parsed already (off the event loop when it
    is large: gateway/pipeline/parsing.py); else it is parsed here. `verified`:
    the verifier's verdicts, for a listener whose `sender_auth` is verify."""
    parsed = parsed if parsed is not None else parse_email(item.raw)
    auth, spam = sender_verdicts(item, config, verified)
    check = sender_check(parsed, auth)
    if auth is not None and vouches_elsewhere(auth, check):
        # Two From addresses, or results about another From domain: what DMARC
        # said is about nobody here, and no rule may read it as a pass.
        auth = replace(auth, dmarc="permerror", dmarc_policy=None)
    forged = check == SenderCheck.FAILED
    held_by = (FORGED_QUARANTINE if forged and config.sender_auth.forged_from == "quarantine"
               else None)
    # A mailbox's message (gateway/mailbox/): archived old mail, or one too large
    # to fetch (then `raw` is its header section only).
    imap = item.channel == "imap"
    archived = imap and item.meta.get("archive") is True
    too_large = _too_large(item) if imap else None
    created_at = (archive_date(parsed.date, item.meta.get("internal_date"), item.received_at)
                  if archived else None)
    own = is_own_outbound(parsed, config.message_id_domain)
    traits = _traits(parsed, own, config, forged)
    automatic = traits.automatic
    sender = parsed.from_.address.lower() if parsed.from_ else None
    flags: dict[str, Any] = {
        "auto_reply": parsed.auto_reply,
        "bounce": bounce_json(parsed.bounce) if parsed.bounce else None,
        "list": parsed.list_mail,
        "list_id": parsed.list_id, "own_outbound": own,
        "defects": list(parsed.defects[:MAX_DEFECTS_SHOWN]),
    }
    if auth is not None:
        flags["authentication"] = auth.as_json()
    if spam is not None:
        flags["spam"] = spam.as_json()
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
        sender_ours=traits.ours, sender_check=check,
    )
    answer_to, answer_name, answer_ours = _answer_to(parsed, config)
    yield
    routing = email_input(parsed, item, auth=auth, spam=spam)
    detector = read_language(rules, routing)
    yield
    routed = _routed(decide(rules, routing, detector=detector),
                     automatic=automatic, custom={},
                     ack_veto=ARCHIVE_VETO if archived else (
                         lifecycle.acknowledgement_veto(traits)
                         or _recipient_veto(config, answer_to, ours=answer_ours)),
                     archived=archived, held_by=held_by)
    # Whether it is a reply is known only when it is stored; a reply rule's
    # changes are worked out now, in case, when the mail looks like a reply.
    # Automatic mail changes nothing, except a hard bounce (`when = { bounce = true }`).
    reply_changes: dict[str, Any] = {}
    reply_decision = None
    hard = flags["bounce"] is not None and hard_bounce(flags["bounce"])
    if (not archived and (not automatic or hard)
            and (hints.parent_ids or hints.tags or hints.bounce_of) and _reply_rules(rules)):
        reply = decide(rules, email_input(parsed, item, is_reply=True, auth=auth, spam=spam),
                       detector=detector)
        reply_changes = {REPLY_COLUMNS[f]: getattr(reply, f) for f in reply.applies
                         if f in REPLY_COLUMNS}
        reply_decision = reply.to_dict(every_rule=False) if reply_changes else None
    where = ("mailbox", "folder", "uid", "rcpt_tos") if imap else ("mail_from", "rcpt_tos", "peer")
    envelope = {k: item.meta.get(k) for k in where}
    if (listener := listener_of(item)) is not None and "listener" in item.meta:
        envelope["listener"] = listener
    if (tls := _tls_shown(item.meta.get("tls"))) is not None:
        envelope["tls"] = tls
    received = Event(kind=EventKind.RECEIVED, data={
        "channel": item.channel, "envelope": envelope,
        "received_at": item.received_at.isoformat(),
        **({"archived": True, "dated": created_at.isoformat()} if created_at else {})})
    parsed_event = Event(kind=EventKind.PARSED, data={
        "parser": "full", "defects": flags["defects"], "auto_reply": parsed.auto_reply,
        "bounce": parsed.bounce is not None, "list": parsed.list_mail, "own_outbound": own})
    authenticated = (_authenticated(auth, spam, hints.sender_check, held_by is not None)
                     if auth is not None else None)
    yield
    return (yield from _new_request(
        item, config, sla, routed, message=message, received=received, parsed=parsed_event,
        authenticated=authenticated, to_name=answer_name, to=answer_to, hints=hints,
        reply_changes=reply_changes,
        reply_decision=reply_decision, archived=archived, created_at=created_at,
        # Our identity follows the address written to: envelope first, then headers.
        sent_to=(*(item.meta.get("rcpt_tos") or ()),
                 *(a.address for a in (*parsed.to, *parsed.cc)))))


def api_request(item: ClaimedItem, config: Config, rules: RuleSet,
                sla: SlaConfig | None = None) -> Steps:
    # Not strict: a body accepted before the edge refused NaN or lone
    # surrogates is still read; its values are fitted with a recorded defect.
    parsed = parse_api_request(item.raw, strict=False)
    if isinstance(parsed, list):  # validated before it was accepted; only a bug gets here
        raise ValueError(f"stored API body no longer validates: {parsed[0]}")
    message = NewMessage(
        subject=parsed.subject, text=parsed.body, new_text=parsed.body,
        from_address=parsed.requester_email, from_name=parsed.requester_name,
    )
    yield
    routing = api_input(parsed, item)
    detector = read_language(rules, routing)
    yield
    routed = _routed(decide(rules, routing, detector=detector), automatic=False,
                     custom=dict(parsed.custom_fields),
                     ack_veto=_recipient_veto(config, parsed.requester))
    return (yield from _from_person(item, config, sla, message, routed, parsed.requester,
                                    {"token_id": item.meta.get("token_id")}))


def _from_person(item: ClaimedItem, config: Config, sla: SlaConfig | None,
                 message: NewMessage, routed: Routed, to: Mailbox | None,
                 received: dict[str, Any]) -> Steps:
    """The request a person's own words make (a JSON body, a web form),
    acknowledged to the address they gave (`to`, checked)."""
    event = Event(kind=EventKind.RECEIVED, data={
        "channel": item.channel, **received, "received_at": item.received_at.isoformat()})
    yield
    return (yield from _new_request(item, config, sla, routed, message=message, received=event,
                                    to_name=message.from_name, to=to))


def form_request(item: ClaimedItem, config: Config, rules: RuleSet,
                 sla: SlaConfig | None = None) -> Steps:
    """A web-form post: its files are already stored, the message refers to them."""
    if isinstance(item.meta.get(STATUS_REPLY), dict):
        return (yield from status_reply_request(item, config, rules, sla))
    parsed = submission_from_json(item.raw)
    message = NewMessage(
        subject=parsed.subject, text=parsed.body, new_text=parsed.body,
        from_address=parsed.requester_email, from_name=parsed.requester_name,
        attachments=[NewAttachment(f.filename or None, f.content_type, b"",
                                   stored_sha256=f.sha256, stored_size=f.size)
                     for f in parsed.files],
    )
    # Checked again: a post stored before addresses were checked may hold a list.
    to = mailbox_or_none(parsed.requester_email)
    yield
    spec = config.forms.get(parsed.form_id)  # gone from the config since: no queue of its own
    routing = form_input(parsed, item, spec.queue if spec else None)
    detector = read_language(rules, routing)
    yield
    decision = decide(rules, routing, detector=detector)
    routed = _routed(decision, automatic=False, custom=dict(parsed.custom_fields),
                     ack_veto=_recipient_veto(config, to) if parsed.requester_email
                     else "the form has no email")
    return (yield from _from_person(item, config, sla, message, routed, to, {
        "form_id": parsed.form_id, "remote": item.meta.get("remote"),
        "origin": item.meta.get("origin"), "files": len(parsed.files),
        "accept_language": _accept_language(item)}))


# A reply from the customer's status page (gateway/http/status_page.py) is stored
# as a form post under this form id (no configured form can have it: form ids
# start with a letter or digit), its meta naming the request it answers.
STATUS_FORM_ID = "_status"
STATUS_REPLY = "status_reply"


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def status_reply_request(item: ClaimedItem, config: Config, rules: RuleSet,
                         sla: SlaConfig | None = None) -> Steps:
    """A customer's reply from their status page, as a message of theirs that
    answers the request: threaded by its last Message-ID, else its reference,
    with the requester as sender, so placement lets it in as it would the
    requester's mail. It reopens a resolved request within its queue's reopen
    window; past it, it becomes a new request linked to the old one, routed
    (from the old one's queue) and acknowledged as a form post would be."""
    parsed = submission_from_json(item.raw)
    about = item.meta[STATUS_REPLY]
    reference, parent = _text_or_none(about.get("reference")), _text_or_none(about.get("parent"))
    message_id = _text_or_none(about.get("message_id"))
    to = mailbox_or_none(parsed.requester_email)
    sender = to.addr_spec.lower() if to is not None else None
    message = NewMessage(
        subject=parsed.subject, text=parsed.body, new_text=parsed.body,
        from_address=sender, from_name=parsed.requester_name, message_id=message_id,
        in_reply_to=parent, references=[parent] if parent else [],
        flags={"via": "status_page"},
        attachments=[NewAttachment(f.filename or None, f.content_type, b"",
                                   stored_sha256=f.sha256, stored_size=f.size)
                     for f in parsed.files])
    hints = ThreadHints(message_id=message_id, parent_ids=(parent,) if parent else (),
                        tags=(reference,) if reference else (), sender=sender)
    queue = _text_or_none(about.get("queue"))
    routing = form_input(parsed, item, queue)
    yield
    detector = read_language(rules, routing)
    yield
    routed = _routed(decide(rules, routing, detector=detector), automatic=False,
                     custom=dict(parsed.custom_fields), ack_veto=_recipient_veto(config, to))
    reply_changes: dict[str, Any] = {}
    reply_decision = None
    if _reply_rules(rules):
        reply = decide(rules, replace(routing, is_reply=True), detector=detector)
        reply_changes = {REPLY_COLUMNS[f]: getattr(reply, f) for f in reply.applies
                         if f in REPLY_COLUMNS}
        reply_decision = reply.to_dict(every_rule=False) if reply_changes else None
    received = Event(kind=EventKind.RECEIVED, data={
        "channel": item.channel, "via": "status_page", "reference": reference,
        "remote": item.meta.get("remote"), "files": len(parsed.files),
        "received_at": item.received_at.isoformat()})
    yield
    return (yield from _new_request(item, config, sla, routed, message=message,
                                    received=received, to_name=parsed.requester_name, to=to,
                                    hints=hints, reply_changes=reply_changes,
                                    reply_decision=reply_decision))
