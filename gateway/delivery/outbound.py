"""Composing outbound mail: acknowledgements from templates, agents' replies.

Headers carry our own Message-ID (so answers thread back), In-Reply-To and
References to the customer's mail, the reference tag in the subject and, for
acknowledgements, `Auto-Submitted: auto-replied` (RFC 3834) so other
responders do not answer them. Values that come from customers are stripped
of line breaks before they reach a header.

What we write to a customer is in their language (gateway/i18n): the one
detected in their words, else their form's Accept-Language, else the queue's
`language`, else the desk's (`[desk] language`); dates in the desk's time zone.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from domain.lifecycle import written_by_person
from gateway import i18n
from gateway.config import Config
from gateway.config.templates import TemplateSet, read_templates
from parsers.addresses import AddressError, Mailbox, parse_address
from storage.records import NewMessage

MAX_SUBJECT = 200


def one_line(value: str, limit: int = MAX_SUBJECT) -> str:
    """A header value from customer text: no CR/LF (no injected headers), bounded."""
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())[:limit]


def new_message_id(config: Config) -> str:
    return f"{secrets.token_hex(12)}@{config.message_id_domain}"


def tagged_subject(config: Config, subject: str, reference: str, prefix: str = "",
                   language: str | None = None) -> str:
    tag = config.threading.subject_tag.replace("{ref}", reference)
    clean = one_line(subject) or i18n.translations(language).gettext("(no subject)")
    body = clean if tag in clean else f"{tag} {clean}"
    return f"{prefix}{body}" if prefix and not clean.lower().startswith(prefix.lower()) else body


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a mail of ours comes from, and the signature it carries."""

    address: str
    name: str
    signature: str


def identity(config: Config, queue: str | None, written_to: Iterable[str] = ()) -> Identity:
    """The queue's `from_address`, else the intake address the customer wrote to
    (the first of `written_to`, envelope recipients first, that is one of
    `intake.addresses`), else `outbound.from_address`, else the first intake
    address; the queue's `from_name` and `signature` over `[outbound]`'s."""
    spec = next((q for q in config.queue if q.name == queue), None)
    ours = config.intake.addresses
    written = next((a.strip().lower() for a in written_to
                    if a and a.strip().lower() in ours), None)
    address = ((spec.from_address if spec else None) or written
               or config.outbound.from_address or ours[0])
    name = spec.from_name if spec is not None and spec.from_name is not None else (
        config.outbound.from_name)
    signature = (spec.signature if spec is not None and spec.signature is not None
                 else config.outbound.signature)
    return Identity(address=address, name=name, signature=signature)


def customer_language(config: Config, queue: str | None, *, detected: str | None = None,
                      accept_language: str | None = None) -> str:
    """The language to write to a customer in (gateway.i18n.choose): `detected`
    in their words, their form's `accept_language`, the queue's, the desk's."""
    spec = next((q for q in config.queue if q.name == queue), None)
    return i18n.choose(detected=detected, accept_language=accept_language,
                       queue=spec.language if spec is not None else None,
                       desk=config.desk.language)


def request_language(config: Config, request: dict[str, Any]) -> str:
    """The language of a stored request's customer (storage.queries.get_request)."""
    detected, accept = i18n.from_timeline(request.get("timeline") or [])
    return customer_language(config, request.get("queue"), detected=detected,
                             accept_language=accept)


def written_to(request: dict[str, Any]) -> list[str]:
    """The addresses a stored request's customer wrote to: each received mail's
    envelope recipients, then the To and Cc of its messages from outside."""
    found: list[str] = []
    for entry in request.get("timeline", []):
        if entry.get("kind") == "received":
            envelope = (entry.get("data") or {}).get("envelope") or {}
            found += [a for a in envelope.get("rcpt_tos") or [] if isinstance(a, str)]
    for message in request.get("messages", []):
        if message.get("direction") == "in":
            found += [str(a.get("address") or "") for a in (*(message.get("to") or []),
                                                           *(message.get("cc") or []))
                      if isinstance(a, dict)]
    return found


def rendered_again(config: Config, payload: dict[str, Any]
                   ) -> tuple[dict[str, Any], str | None]:
    """A held acknowledgement's outbox payload with its text rendered by the
    templates on disk now (checked as the loader checks them), or what still
    stops it."""
    templates, problems = read_templates(config.outbound.templates)
    if problems:
        return payload, "; ".join(problems)
    held = payload["render"]
    try:
        text = templates.render(held.get("template"), queue=held.get("queue"),
                                language=held.get("language"), **held.get("values", {}))
    except Exception as exc:  # noqa: BLE001 - jinja2 and any filter
        return payload, f"{type(exc).__name__}: {exc}"[:500]
    return {**{k: v for k, v in payload.items() if k != "render"},
            "message": {**payload["message"], "text": text}}, None


def recipient(mailbox: Mailbox, name: str | None) -> dict[str, str]:
    """A To entry as stored and sent: the checked addr-spec, and a one-line name."""
    return {"name": one_line(name or "", 100), "address": mailbox.addr_spec}


def acknowledgement(config: Config, templates: TemplateSet, *, reference: str, queue: str,
                    status_token: str, template: str | None, to_name: str | None,
                    to: Mailbox, subject: str, customer_message_id: str | None,
                    references: list[str], sent_to: Iterable[str] = (),
                    detected: str | None = None, accept_language: str | None = None,
                    received_at: datetime | None = None) -> NewMessage:
    """The acknowledgement of a new request, to the one checked address `to`,
    from the queue's identity (`sent_to`: the addresses the customer wrote to),
    in the customer's language (`detected` in their words, their form's
    `accept_language`: see customer_language), `received_at` in the desk's zone.

    A template that cannot be rendered does not stop the request: the message
    comes back with no text and `flags.render_error` (storage queues it as a
    dead letter on its own, visible and retried once the template is fixed)."""
    tag = config.threading.subject_tag.replace("{ref}", reference)
    sender = identity(config, queue, sent_to)
    # "default" is the rules' name for "no particular template".
    chosen = template if template != "default" else None
    language = customer_language(config, queue, detected=detected,
                                 accept_language=accept_language)
    at = i18n.format_datetime(received_at or datetime.now(UTC), language,
                              config.desk.timezone)
    values = {"name": one_line(to_name or "", 100), "subject": one_line(subject),
              "reference": reference, "tag": tag, "signature": sender.signature,
              "status_url": f"{config.public_url}/v1/status/{status_token}",
              "received_at": at}
    flags: dict[str, Any] = {"kind": "acknowledgement", "auto_submitted": "auto-replied",
                             "language": language}
    try:
        body = templates.render(chosen, queue=queue, language=language, **values)
    except Exception as exc:  # noqa: BLE001 - jinja2 and any filter: the request goes on
        body = ""
        flags["render_error"] = f"{type(exc).__name__}: {exc}"[:500]
        flags["render"] = {"template": chosen, "queue": queue, "language": language,
                           "values": values}
    chain = [*references, customer_message_id] if customer_message_id else list(references)
    return NewMessage(
        subject=tagged_subject(config, subject, reference, "Re: ", language),
        text=body, new_text=body,
        from_address=sender.address, from_name=sender.name, message_id=new_message_id(config),
        in_reply_to=customer_message_id, references=chain[-20:],
        to=[recipient(to, to_name)], flags=flags,
    )


def agent_reply(config: Config, request: dict[str, Any], text: str) -> NewMessage:
    """An agent's answer to the requester, threaded on the request's messages.

    The stored requester is checked again (parsers/addresses.py): a request
    stored before addresses were checked may hold a list or worse. Such a reply
    is kept on the request, not sent, and says why (`flags.undeliverable`).
    """
    messages = request["messages"]
    in_reply_to, references = thread_on(messages)
    requester = request["requester"]
    flags: dict[str, Any] = {"kind": "reply"}  # delivered by the outbox worker, with retries
    to: list[dict[str, str]] = []
    if not requester["email"]:
        flags["undeliverable"] = "the request has no requester address"
    else:
        try:
            to = [recipient(parse_address(requester["email"]), requester["name"])]
        except AddressError as exc:
            flags["undeliverable"] = f"the requester's address cannot take mail: {exc.reason}"
    sender = identity(config, request.get("queue"), written_to(request))
    if sender.signature:
        text = f"{text.rstrip()}\n\n-- \n{sender.signature}\n"  # RFC 3676 4.3 separator
    # The words we add are the customer's language's (the agent's text is theirs).
    language = request_language(config, request)
    flags["language"] = language
    return NewMessage(
        subject=tagged_subject(config, request["subject"], request["reference"], "Re: ",
                               language),
        text=text, new_text=text,
        from_address=sender.address, from_name=sender.name, message_id=new_message_id(config),
        in_reply_to=in_reply_to, references=references,
        to=to, flags=flags,
    )


# An answer's References name at most this many earlier messages (the most recent).
MAX_REFERENCES = 10


def thread_on(messages: list[dict[str, Any]]) -> tuple[str | None, list[str]]:
    """In-Reply-To and References for an agent's answer: the last inbound message
    a person wrote (never an out-of-office or a bounce: mail clients would show
    the answer under it), else the request's first message; References are the
    thread's messages up to that one, automatic ones left out, ending with it."""
    people = [m for m in messages if m["direction"] == "in"
              and written_by_person(m["direction"], m.get("flags") or {})]
    parent = people[-1] if people else (messages[0] if messages else None)
    if parent is None or not parent["message_id"]:
        return None, []
    upto = messages[:next(i for i, m in enumerate(messages) if m is parent)]
    earlier = [m["message_id"] for m in upto if m["message_id"]
               and m["message_id"] != parent["message_id"]
               and written_by_person(m["direction"], m.get("flags") or {})]
    chain = [*dict.fromkeys(earlier), parent["message_id"]]
    return parent["message_id"], chain[-MAX_REFERENCES:]
