"""The facts a routing decision reads: built by the gateway, read by the rules.

The gateway fills a `RoutingInput` from a parsed email or an API/form request;
nothing here knows how those were parsed. Time is a field, never read from a
clock, so the same input always gives the same decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# A custom field's value as it comes from a form, a JSON body or a rule.
FieldValue = str | int | float | bool

CHANNELS = ("email", "api", "form")


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    name: str
    content_type: str
    size: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SenderAuth:
    """What sender authentication found (the gateway maps its verdicts here):
    results as in routing.fields' lists, domains lower case."""

    source: str  # "verified" (checked here) or "trusted" (a front MTA's)
    spf: str = "none"
    dkim: str = "none"
    dmarc: str = "none"
    arc: str = "none"
    dmarc_policy: str | None = None
    dkim_domains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SpamOpinion:
    """A trusted front filter's verdict: either part may be missing."""

    score: float | None = None
    flag: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingInput:
    """One inbound item as the rules see it.

    Addresses are bare (`user@example.com`); `new_text` is the text with quotes
    and signature stripped, `text` the full text. Headers keep their order and
    may repeat.
    """

    received_at: datetime
    channel: str = "email"
    envelope_to: tuple[str, ...] = ()
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    sender: str = ""
    subject: str = ""
    new_text: str = ""
    text: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    form_id: str | None = None
    # The queue the source itself names (a web form's queue): used when no rule
    # and no component chooses one, before `[routing] default_queue`.
    default_queue: str | None = None
    attachments: tuple[Attachment, ...] = ()
    custom_fields: tuple[tuple[str, FieldValue], ...] = ()
    # Threaded onto an existing request: rules for new requests do not apply.
    is_reply: bool = False
    # A delivery report saying our mail could not be delivered for good (5.x.x).
    bounce: bool = False
    # Sender authentication and the front spam filter; None: not checked, so
    # every auth.* (spam.*) field is absent.
    auth: SenderAuth | None = None
    spam: SpamOpinion | None = None

    def __post_init__(self) -> None:
        # Business hours need a real instant; a naive time would be read in
        # whatever zone the server happens to run in.
        if self.received_at.tzinfo is None or self.received_at.utcoffset() is None:
            raise ValueError("received_at must be an aware datetime")
        if self.channel not in CHANNELS:
            raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, not {self.channel!r}")
