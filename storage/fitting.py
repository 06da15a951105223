"""What the pipeline built of an item, fitted to the columns that hold it.

An item the client was told we accepted must become a request, whatever it
carries: a display name longer than its column, a NUL or a lone surrogate in
a subject, NaN in a custom field would each make the database refuse the row,
and the item die after its retries. So every value is fitted before it is
stored: text longer than its column is cut, NUL and lone surrogates become
U+FFFD, NaN and Infinity become null. Each change is a defect recorded on the
message (`flags["defects"]`) and on the timeline (the `received` event), so
nothing is changed silently. The limits are the columns' own (storage/models.py).
"""

from __future__ import annotations

import math
from dataclasses import fields, replace
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import FromClause

from domain.lifecycle import Event, EventKind
from storage.models import attachments, messages, requests
from storage.records import NewAttachment, NewMessage, NewRequest, ThreadHints
from storage.storable import (
    REPLACEMENT,
    is_storable,
    needs_change,
    storable,
    storable_text,
    stored_as_is,
    unstorable_count,
)

# Defects recorded per item: enough to explain, bounded whatever the input.
MAX_DEFECTS = 50
# A cut file name keeps an extension up to this long (`report….pdf` stays a PDF).
MAX_KEPT_SUFFIX = 16


T = TypeVar("T")


@cache
def limit(table: FromClause, column: str) -> int | None:
    """The column's length in characters (None: unbounded text)."""
    return getattr(table.c[column].type, "length", None)


def _changed(record: T, **values: Any) -> T:
    """`record` with `values`, or `record` itself when none differs (most items
    need no change, and each copy costs)."""
    if all(getattr(record, k) is v for k, v in values.items()):
        return record
    return replace(record, **values)  # type: ignore[type-var]


def _cut(value: str, size: int, keep_suffix: bool) -> str:
    if keep_suffix:
        stem, dot, suffix = value.rpartition(".")
        if dot and stem and 0 < len(suffix) <= MAX_KEPT_SUFFIX < size:
            return stem[:size - len(suffix) - 1] + "." + suffix
    return value[:size]


class Fitter:
    """Fits values and remembers what it changed (`defects`)."""

    def __init__(self, *, record: bool = True) -> None:
        self.defects: list[str] = []
        self._record = record

    def _note(self, defect: str) -> None:
        if not self._record:
            return
        if len(self.defects) < MAX_DEFECTS:
            self.defects.append(defect)
        elif len(self.defects) == MAX_DEFECTS:
            self.defects.append("more values were changed to be stored")

    def text(self, value: str, field: str, size: int | None = None, *,
             keep_suffix: bool = False) -> str:
        if (size is None or len(value) <= size) and is_storable(value):
            return value
        replaced = unstorable_count(value)
        if replaced:
            value = storable_text(value)
            self._note(f"{field}: {replaced} character(s) that cannot be stored "
                       f"(NUL, invalid Unicode) replaced by U+{ord(REPLACEMENT):04X}")
        if size is not None and len(value) > size:
            self._note(f"{field}: cut to {size} characters (was {len(value)})")
            value = _cut(value, size, keep_suffix)
        return value

    def optional(self, value: str | None, field: str, size: int | None = None, *,
                 keep_suffix: bool = False) -> str | None:
        return None if value is None else self.text(value, field, size,
                                                     keep_suffix=keep_suffix)

    def json(self, value: Any, field: str) -> Any:
        """A JSON document: storable, with a defect for each value changed."""
        if not needs_change(value):
            return value
        return self._json(value, field)

    def _json(self, value: Any, path: str) -> Any:
        if isinstance(value, str):
            return self.text(value, path)
        if isinstance(value, float) and not math.isfinite(value):
            self._note(f"{path}: {value} is not a JSON number, stored as null")
            return None
        if isinstance(value, dict):
            return {self.text(str(k), f"{path} (a key)"): self._json(v, f"{path}/{k}")
                    for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._json(v, f"{path}/{i}") for i, v in enumerate(value)]
        return value


def _columns(fitter: Fitter, table: FromClause, values: dict[str, Any]) -> dict[str, Any]:
    """Values of `table`'s columns (rules' changes, service levels) fitted to it."""
    if not values:
        return values
    fitted = {key: fitter.text(value, key, limit(table, key)) if isinstance(value, str)
              else fitter.json(value, key) for key, value in values.items()}
    return values if all(fitted[k] is v for k, v in values.items()) else fitted


def _attachment(fitter: Fitter, a: NewAttachment, index: int) -> NewAttachment:
    field = f"attachment {index + 1}"
    return _changed(
        a,
        filename=fitter.optional(a.filename, f"{field} file name",
                                 limit(attachments, "filename"), keep_suffix=True),
        content_type=fitter.text(a.content_type, f"{field} content type",
                                 limit(attachments, "content_type")),
        content_id=fitter.optional(a.content_id, f"{field} Content-ID",
                                   limit(attachments, "content_id")))


def _fits(m: NewMessage) -> bool:
    """True if no value of `m` needs fitting, known without building a fitted
    copy field by field: each text checked in C, the bounded ones measured.
    Attachments are left to the checks per field."""
    ids = limit(messages, "message_id") or 0
    if (m.attachments or len(m.from_address or "") > (limit(messages, "from_address") or 0)
            or len(m.from_name or "") > (limit(messages, "from_name") or 0)
            or any(len(i) > ids for i in (m.message_id or "", m.in_reply_to or "",
                                          *m.references))):
        return False
    for text in (m.subject, m.text, m.new_text, m.html or "", m.from_address or "",
                 m.from_name or "", m.message_id or "", m.in_reply_to or "", *m.references):
        if not is_storable(text):
            return False
    return not (needs_change(m.to) or needs_change(m.cc) or needs_change(m.flags))


def fit_message(fitter: Fitter, m: NewMessage) -> NewMessage:
    """A message's values fitted to the messages table (flags as they were)."""
    return m if _fits(m) else fit_fields(fitter, m)


def fit_fields(fitter: Fitter, m: NewMessage) -> NewMessage:
    """`fit_message` field by field, each change a defect."""
    ids = limit(messages, "message_id")
    references = [fitter.text(r, "References", ids) for r in m.references]
    fitted_attachments = [_attachment(fitter, a, i) for i, a in enumerate(m.attachments)]
    return _changed(
        m,
        subject=fitter.text(m.subject, "subject"),
        text=fitter.text(m.text, "text"),
        new_text=fitter.text(m.new_text, "new text"),
        html=fitter.optional(m.html, "HTML"),
        from_address=fitter.optional(m.from_address, "sender address",
                                     limit(messages, "from_address")),
        from_name=fitter.optional(m.from_name, "sender name", limit(messages, "from_name")),
        message_id=fitter.optional(m.message_id, "Message-ID", ids),
        in_reply_to=fitter.optional(m.in_reply_to, "In-Reply-To", ids),
        references=(m.references if all(r is f for r, f in zip(m.references, references,
                                                                strict=True))
                    else references),
        to=fitter.json(m.to, "To"),
        cc=fitter.json(m.cc, "Cc"),
        flags=storable(m.flags) if needs_change(m.flags) else m.flags,
        attachments=(m.attachments if all(a is f for a, f in zip(m.attachments,
                                                                 fitted_attachments, strict=True))
                     else fitted_attachments),
    )


# Hints compared with stored Message-IDs, and with stored sender addresses.
_ID_HINTS = frozenset({"message_id", "bounce_of", "parent_ids"})
_ADDRESS_HINTS = frozenset({"sender"})


@cache
def _hint_sizes() -> tuple[tuple[str, int | None], ...]:
    """Each field of ThreadHints with the length its values are stored at."""
    return tuple((f.name, limit(messages, "message_id") if f.name in _ID_HINTS
                  else limit(messages, "from_address") if f.name in _ADDRESS_HINTS else None)
                 for f in fields(ThreadHints))


def _hints(h: ThreadHints) -> ThreadHints:
    """Thread hints fitted as the values they are compared with are stored, so
    a reply naming a cut Message-ID still finds it (and every one is a usable
    query parameter): every text field, whatever its name."""
    quiet = Fitter(record=False)
    changes: dict[str, Any] = {}
    for name, size in _hint_sizes():
        value = getattr(h, name)
        if isinstance(value, str):
            fitted = quiet.text(value, "", size)
            if fitted is not value:
                changes[name] = fitted
        elif isinstance(value, tuple) and value and all(isinstance(v, str) for v in value):
            texts = tuple(quiet.text(v, "", size) for v in value)
            if any(t is not v for t, v in zip(texts, value, strict=True)):
                changes[name] = tuple(dict.fromkeys(texts))
    return replace(h, **changes) if changes else h


def _event(e: Event) -> Event:
    # Our own record of what happened: made storable, no defect recorded.
    return e if stored_as_is(e.data) else replace(e, data=storable(e.data))


def _acknowledgement(ack: NewMessage | None) -> tuple[NewMessage | None, str | None]:
    """The acknowledgement fitted, or None with the reason when its address did
    not fit: mail to a cut or altered address would go to someone else."""
    if ack is None:
        return None, None
    fitted = fit_message(Fitter(record=False), ack)
    size = limit(messages, "from_address")
    for entry in ack.to:
        address = str(entry.get("address", ""))
        if needs_change(address) or (size is not None and len(address) > size):
            return None, "the address cannot be stored as given, so it is not written to"
    return fitted, None


def fit_request(new: NewRequest) -> NewRequest:
    """`new` with every value fitted to its column; each change a recorded defect."""
    fitter = Fitter()
    message = fit_message(fitter, new.message)
    tags = [fitter.text(t, "tag") for t in new.tags]
    events = tuple(_event(e) for e in new.events)
    ack, skipped = _acknowledgement(new.acknowledgement)
    if all(e is f for e, f in zip(new.events, events, strict=True)):
        events = new.events
    if skipped is not None:
        events = (*events, Event(kind=EventKind.ACKNOWLEDGEMENT_SKIPPED,
                                 data={"reason": skipped}))
    # One copy, with what changed and the mark that it was fitted.
    fitted = replace(
        new,
        message=message,
        queue=fitter.text(new.queue, "queue", limit(requests, "queue")),
        requester_email=fitter.optional(new.requester_email, "requester address",
                                        limit(requests, "requester_email")),
        requester_name=fitter.optional(new.requester_name, "requester name",
                                       limit(requests, "requester_name")),
        custom_fields=fitter.json(new.custom_fields, "custom_fields"),
        tags=new.tags if all(t is f for t, f in zip(new.tags, tags, strict=True)) else tags,
        priority=fitter.optional(new.priority, "priority", limit(requests, "priority")),
        type=fitter.optional(new.type, "type", limit(requests, "type")),
        category=fitter.optional(new.category, "category", limit(requests, "category")),
        component=fitter.optional(new.component, "component", limit(requests, "component")),
        reply_changes=_columns(fitter, requests, new.reply_changes),
        reply_decision=(storable(new.reply_decision) if needs_change(new.reply_decision)
                        else new.reply_decision),
        sla=_columns(fitter, requests, new.sla),
        hints=_hints(new.hints) if new.hints is not None else None,
        events=events,
        received=_event(new.received) if new.received is not None else None,
        acknowledgement=ack,
        fitted=True,
    )
    if not fitter.defects:
        return fitted
    flags = dict(message.flags)
    flags["defects"] = [*flags.get("defects", []), *fitter.defects]
    received = fitted.received
    if received is not None:
        received = replace(received, data={**received.data, "defects": fitter.defects})
    return replace(fitted, message=replace(message, flags=flags), received=received)
