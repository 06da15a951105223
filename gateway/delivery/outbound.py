"""Composing outbound mail: acknowledgements from templates, agents' replies.

Headers carry our own Message-ID (so answers thread back), In-Reply-To and
References to the customer's mail, the reference tag in the subject and, for
acknowledgements, `Auto-Submitted: auto-replied` (RFC 3834) so other
responders do not answer them. Values that come from customers are stripped
of line breaks before they reach a header.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    select_autoescape,
)

from gateway.config import Config
from parsers.addresses import AddressError, Mailbox, parse_address
from storage.records import NewMessage

BUILT_IN = Path(__file__).with_name("templates")
MAX_SUBJECT = 200


def one_line(value: str, limit: int = MAX_SUBJECT) -> str:
    """A header value from customer text: no CR/LF (no injected headers), bounded."""
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())[:limit]


def new_message_id(config: Config) -> str:
    return f"{secrets.token_hex(12)}@{config.message_id_domain}"


def tagged_subject(config: Config, subject: str, reference: str, prefix: str = "") -> str:
    tag = config.threading.subject_tag.replace("{ref}", reference)
    clean = one_line(subject) or "(no subject)"
    body = clean if tag in clean else f"{tag} {clean}"
    return f"{prefix}{body}" if prefix and not clean.lower().startswith(prefix.lower()) else body


class Templates:
    """Jinja2 templates: the configured folder first, then the built-in ones."""

    def __init__(self, folder: str | None) -> None:
        paths = ([folder] if folder else []) + [str(BUILT_IN)]
        self._env = Environment(loader=FileSystemLoader(paths), undefined=StrictUndefined,
                                autoescape=select_autoescape(enabled_extensions=("html",)),
                                keep_trailing_newline=True)

    def render(self, template: str | None, *, queue: str | None = None,
               **values: object) -> str:
        """The rule's template, else the queue's, else the default acknowledgement."""
        names = [*([template] if template else []), *([queue] if queue else []),
                 "acknowledgement"]
        for candidate in (f"{name}.txt" for name in names):
            try:
                return self._env.get_template(candidate).render(**values)
            except TemplateNotFound:
                continue
        raise TemplateNotFound(template)


def recipient(mailbox: Mailbox, name: str | None) -> dict[str, str]:
    """A To entry as stored and sent: the checked addr-spec, and a one-line name."""
    return {"name": one_line(name or "", 100), "address": mailbox.addr_spec}


def acknowledgement(config: Config, templates: Templates, *, reference: str, queue: str,
                    status_token: str, template: str | None, to_name: str | None,
                    to: Mailbox, subject: str, customer_message_id: str | None,
                    references: list[str]) -> NewMessage:
    """The acknowledgement of a new request, to the one checked address `to`."""
    tag = config.threading.subject_tag.replace("{ref}", reference)
    # "default" is the rules' name for "no particular template".
    body = templates.render(
        template if template != "default" else None, queue=queue, name=one_line(to_name or "", 100),
        subject=one_line(subject), reference=reference, tag=tag,
        status_url=f"{config.public_url}/v1/status/{status_token}")
    chain = [*references, customer_message_id] if customer_message_id else list(references)
    return NewMessage(
        subject=tagged_subject(config, subject, reference, "Re: "), text=body, new_text=body,
        from_address=config.outbound.from_address or config.intake.addresses[0],
        from_name=config.outbound.from_name, message_id=new_message_id(config),
        in_reply_to=customer_message_id, references=chain[-20:],
        to=[recipient(to, to_name)],
        flags={"kind": "acknowledgement", "auto_submitted": "auto-replied"},
    )


def agent_reply(config: Config, request: dict[str, Any], text: str) -> NewMessage:
    """An agent's answer to the requester, threaded on the request's messages.

    The stored requester is checked again (parsers/addresses.py): a request
    stored before addresses were checked may hold a list or worse. Such a reply
    is kept on the request, not sent, and says why (`flags.undeliverable`).
    """
    messages = request["messages"]
    last_inbound = next((m for m in reversed(messages) if m["direction"] == "in"), None)
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
    return NewMessage(
        subject=tagged_subject(config, request["subject"], request["reference"], "Re: "),
        text=text, new_text=text,
        from_address=config.outbound.from_address or config.intake.addresses[0],
        from_name=config.outbound.from_name, message_id=new_message_id(config),
        in_reply_to=last_inbound["message_id"] if last_inbound else None,
        references=[m["message_id"] for m in messages if m["message_id"]][-10:],
        to=to, flags=flags,
    )
