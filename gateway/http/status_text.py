"""The status page's words: a request's status in plain language, and what
happens next (waiting for us, waiting for you, resolved), with the
service-level target where one applies and the reopen window.

Every sentence is a message id of the catalogues (gateway/i18n): written here
as `_("...")` with `%(name)s` placeholders, so the extraction finds them, and
translated with the page's catalogue `t`. Dates are written per locale in the
desk's time zone (i18n.format_datetime).
"""

from __future__ import annotations

import gettext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from domain.lifecycle import RESOLVING, Status
from gateway import i18n
from storage.customer_actions import Done, may_reopen, may_resolve
from storage.status_view import Author, PublicMessage, StatusView

KIB = 1024


@dataclass(frozen=True, slots=True)
class Words:
    """How the page writes: its catalogue, language and time zone."""

    t: gettext.NullTranslations
    language: str
    timezone: str | None

    def when(self, moment: datetime) -> str:
        return i18n.format_datetime(moment, self.language, self.timezone)


def status_label(status: Status, words: Words) -> str:
    """The status as the customer reads it (a held request is "being checked":
    why it is held is ours to know)."""
    _ = words.t.gettext
    labels = {
        Status.RECEIVED: _("Received"),
        Status.NEW: _("Received"),
        Status.OPEN: _("In progress"),
        Status.WAITING: _("Waiting for your reply"),
        Status.REOPENED: _("Reopened"),
        Status.RESOLVED: _("Resolved"),
        Status.CLOSED: _("Closed"),
        Status.QUARANTINED: _("Being checked"),
        Status.MERGED: _("Handled with another request"),
    }
    return labels[status]


def _target(sla: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    """A service-level target still to be met (None: no policy, or met)."""
    found = (sla or {}).get(name)
    return found if isinstance(found, dict) and found.get("met_at") is None else None


def _waiting_for_us(sla: dict[str, Any] | None, words: Words, now: datetime) -> list[str]:
    _ = words.t.gettext
    said = [_("Waiting for us: we are working on your request.")]
    first, resolution = _target(sla, "first_response"), _target(sla, "resolution")
    if first is not None:
        due = words.when(first["due_at"])
        said.append(_("We aim to send you a first answer by %(when)s.") % {"when": due}
                    if first["due_at"] > now else
                    _("We aimed to answer you by %(when)s. We are sorry it is taking "
                      "longer.") % {"when": due})
    elif resolution is not None:
        due = words.when(resolution["due_at"])
        said.append(_("We aim to resolve your request by %(when)s.") % {"when": due}
                    if resolution["due_at"] > now else
                    _("We aimed to resolve your request by %(when)s. We are sorry it is "
                      "taking longer.") % {"when": due})
    else:
        said.append(_("We will answer you as soon as we can."))
    return said


def reopen_until(view: StatusView, reopen_days: int) -> datetime | None:
    """When the reopen window of a finished request closes (None: it never reopens)."""
    if reopen_days <= 0 or view.done_at is None:
        return None
    return view.done_at + timedelta(days=reopen_days)


def next_steps(view: StatusView, sla: dict[str, Any] | None, words: Words, *,
               reopen_days: int, now: datetime) -> list[str]:
    """What happens next, in a few plain sentences."""
    _ = words.t.gettext
    status = view.status
    if status == Status.WAITING:
        return [_("Waiting for you: we asked you something. Reply below and your request "
                  "comes back to us.")]
    if status == Status.QUARANTINED:
        return [_("We have your request and will look at it soon.")]
    if status == Status.MERGED:
        return [_("We handle this request together with another one. A reply here still "
                  "reaches us.")]
    if status in RESOLVING:
        said = [_("Resolved: we think this request is done.")]
        until = reopen_until(view, reopen_days)
        if may_reopen(status, done_at=view.done_at, now=now,
                      reopen_days=reopen_days) == Done.OK and until is not None:
            said.append(_("If it is not solved for you, reopen it or reply by %(when)s.")
                        % {"when": words.when(until)})
        else:
            said.append(_("It can no longer be reopened. If you write to us below, we open "
                          "a new request that follows this one."))
        return said
    return _waiting_for_us(sla, words, now)


def can_resolve(view: StatusView) -> bool:
    return may_resolve(view.status)


def can_reopen(view: StatusView, *, reopen_days: int, now: datetime) -> bool:
    return may_reopen(view.status, done_at=view.done_at, now=now,
                      reopen_days=reopen_days) == Done.OK


def author(message: PublicMessage, words: Words) -> str:
    """Who wrote a message, as the customer reads it: never another person's address."""
    _ = words.t.gettext
    if message.author == Author.YOU:
        return _("You")
    if message.author == Author.US:
        return message.name or _("Support")
    if message.name:
        return _("%(name)s (copied by you)") % {"name": message.name}
    return _("Someone you copied")


def size(count: int) -> str:
    """A file's size, in the units every language writes the same."""
    if count >= KIB * KIB:
        return f"{count / KIB / KIB:.1f} MB"
    return f"{max(1, round(count / KIB))} KB"


def notice(done: str | None, words: Words) -> str | None:
    """The line after an action went through (the page's `?done=`)."""
    _ = words.t.gettext
    notices = {
        "replied": _("Thank you. We have your reply; it appears below in a moment."),
        "resolved": _("Thank you. Your request is marked as resolved."),
        "reopened": _("Your request is open again. We will look at it."),
    }
    return notices.get(done or "")
