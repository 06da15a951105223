"""The mails that carry a status link to a requester: a one-time access link
(asked for on the lookup page) and the new link after a rotation.

Each is an outbox payload queued with the change that makes it (storage/
status_links.py), from the request's queue identity, in the request's
language (the detected one, then the queue's, then the desk's), written by a
template a desk may override (`access_link.txt`, `status_link_replaced.txt`).
Neither is kept as a message on the request: the link is the requester's
alone, not something agents or the status page should show.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from domain.lifecycle import Outcome
from gateway import i18n
from gateway.config import Config
from gateway.delivery.outbound import (
    customer_language,
    identity,
    new_message_id,
    one_line,
    recipient,
    tagged_subject,
)
from parsers.addresses import mailbox_or_none
from storage import status_links
from storage.audit import Audit
from storage.outbox import message_payload
from storage.records import NewMessage
from storage.status_links import Holder, Rotation

ACCESS_TEMPLATE = "access_link"
REPLACED_TEMPLATE = "status_link_replaced"


def language_of(config: Config, holder: Holder) -> str:
    """The language of mail to the requester: the request's (detected, else
    its form's Accept-Language), then its queue's, then the desk's."""
    detected, accept_language = i18n.from_timeline(holder.timeline)
    return customer_language(config, holder.queue, detected=detected,
                             accept_language=accept_language)


def _mail(config: Config, holder: Holder, *, template: str, subject: str, url: str,
          purpose: str, language: str) -> dict[str, Any] | None:
    to = mailbox_or_none(holder.requester_email)
    if to is None:
        return None  # no address we may send to: nothing to mail
    sender = identity(config, holder.queue)
    tag = config.threading.subject_tag.replace("{ref}", holder.reference)
    text = config.templates.render_named(
        template, language, name=one_line(holder.requester_name or "", 100),
        subject=one_line(holder.subject), reference=holder.reference, tag=tag,
        status_url=url, queue=holder.queue, signature=sender.signature)
    message = NewMessage(
        subject=tagged_subject(config, subject, holder.reference, language=language),
        text=text, new_text=text,
        from_address=sender.address, from_name=sender.name,
        message_id=new_message_id(config), to=[recipient(to, holder.requester_name)],
        # Sent because someone asked, not in answer to a mail (RFC 3834 3.1.7).
        flags={"kind": purpose, "auto_submitted": "auto-generated"})
    return {"message": message_payload(message), "purpose": purpose}


def access_mail(config: Config, holder: Holder, url: str) -> dict[str, Any] | None:
    """The one-time access link's mail; None without an address to send to."""
    language = language_of(config, holder)
    subject = i18n.translations(language).gettext("Your link to your request")
    return _mail(config, holder, template=ACCESS_TEMPLATE, subject=subject, url=url,
                 purpose="access_link", language=language)


def replaced_mail(config: Config, holder: Holder, url: str) -> dict[str, Any] | None:
    """The new status link's mail after a rotation; None without an address."""
    language = language_of(config, holder)
    subject = i18n.translations(language).gettext("A new link to your request")
    return _mail(config, holder, template=REPLACED_TEMPLATE, subject=subject, url=url,
                 purpose="status_link", language=language)


def status_url(config: Config, token: str) -> str:
    return f"{config.public_url}/v1/status/{token}"


async def rotate_link(engine: AsyncEngine, config: Config, reference: str, *, actor: str,
                      audit: Audit | None, expected_version: int | None = None) -> Rotation:
    """Give the request a new status token and mail the new link to its
    requester, as of the version read here (or `expected_version`): STALE when
    it changed since, MISSING when there is no such request or no link."""
    found = await status_links.holder(engine, reference)
    if found is None:
        return Rotation(Outcome.MISSING)
    token = secrets.token_urlsafe(24)  # as every status token is made (storage/rows.py)
    return await status_links.rotate(engine, found.reference, token, actor=actor,
                        mail=replaced_mail(config, found, status_url(config, token)),
                        expected_version=(found.version if expected_version is None
                                          else expected_version), audit=audit)
