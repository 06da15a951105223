"""Field values of one input, computed on first use and kept for the decision.

A thousand rules may read the sender or the body: each field is derived,
truncated, lowercased and encoded once per input, however many rules read it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from routing.hours import within
from routing.inputs import RoutingInput

if TYPE_CHECKING:
    from routing.classify import Classification, Guess
    from routing.rules import BusinessHours

# What a field holds for one input: None when the input has no such value.
Value = str | tuple[str, ...] | bool | int | float | None


class Compiled(Protocol):
    """What facts read of the compiled rules (a `routing.engine.Engine`)."""

    @property
    def max_chars(self) -> int:
        """Text fields are cut to this many characters before matching."""
        ...

    @property
    def business_hours(self) -> BusinessHours | None: ...

    def scan(self, field: str, data: bytes) -> frozenset[int]:
        """Indexes of the field's literal set that occur in `data`."""
        ...

    def lists_for(self, address: str) -> tuple[str, ...]:
        """Names of the reference lists the address is on."""
        ...


def _address(raw: str) -> str:
    return raw.strip().strip("<>").lower()


class Facts:
    __slots__ = (
        "item",
        "compiled",
        "classification",
        "_values",
        "_lower",
        "_bytes",
        "_hits",
        "_headers",
    )

    def __init__(self, item: RoutingInput, compiled: Compiled) -> None:
        self.item = item
        self.compiled = compiled
        self.classification: Classification | None = None
        self._values: dict[str, Value] = {}
        self._lower: dict[str, Value] = {}
        self._bytes: dict[str, bytes] = {}
        self._hits: dict[str, frozenset[int]] = {}
        self._headers: dict[str, tuple[str, ...]] | None = None

    # --- raw values ----------------------------------------------------------

    def get(self, field: str) -> Value:
        try:
            return self._values[field]
        except KeyError:  # first read of this field
            value = self._values[field] = self._compute(field)
            return value

    def _cut(self, text: str) -> str:
        return text[: self.compiled.max_chars]

    def _compute(self, field: str) -> Value:
        item = self.item
        if field == "channel":
            return item.channel
        if field == "to":
            return tuple(_address(a) for a in item.to)
        if field == "cc":
            return tuple(_address(a) for a in item.cc)
        if field == "envelope":
            return tuple(_address(a) for a in item.envelope_to)
        if field == "recipient":
            every = (*item.to, *item.cc, *item.envelope_to)
            return tuple(dict.fromkeys(_address(a) for a in every))
        if field == "from":
            return _address(item.sender) or None
        if field == "from_domain":
            return _address(item.sender).rpartition("@")[2] or None
        if field == "subject":
            return self._cut(item.subject)
        if field == "body":
            return self._cut(item.new_text)
        if field == "text":
            return self._cut(item.text or item.new_text)
        if field == "form_id":
            return item.form_id
        if field == "has_attachment":
            return bool(item.attachments)
        if field == "attachment_count":
            return len(item.attachments)
        if field == "attachment_name":
            return tuple(self._cut(a.name) for a in item.attachments)
        if field == "attachment_type":
            return tuple(a.content_type.partition(";")[0].strip().lower() for a in item.attachments)
        if field == "business_hours":
            hours = self.compiled.business_hours
            return None if hours is None else within(hours, item.received_at)
        if field == "on_list":
            return self.compiled.lists_for(_address(item.sender))
        if field == "is_reply":
            return item.is_reply
        if field == "bounce":
            return item.bounce
        if field == "language":
            return self.get("class.language")
        prefix, _, name = field.partition(".")
        if prefix == "auth":
            return self._auth(name)
        if prefix == "spam":
            spam = item.spam
            if spam is None:
                return None
            return spam.score if name == "score" else spam.flag if name == "flag" else None
        if prefix == "header":
            values = self.header(name)
            if not values:
                return None
            return values[0] if len(values) == 1 else values
        if prefix == "field":
            for key, value in item.custom_fields:
                if key == name:
                    return self._cut(value) if isinstance(value, str) else value
            return None
        if prefix == "class" and self.classification is not None:
            output, _, score = name.partition("_")
            guess: Guess | None = getattr(self.classification, output, None)
            if guess is None:
                return None
            return guess.score if score else guess.value
        return None

    def _auth(self, name: str) -> Value:
        auth = self.item.auth
        if auth is None:
            return None
        if name == "dkim_domain":
            return tuple(d.lower() for d in auth.dkim_domains)
        if name in ("spf", "dkim", "dmarc", "arc", "dmarc_policy", "source"):
            value: str | None = getattr(auth, name)
            return value
        return None

    def header(self, name: str) -> tuple[str, ...]:
        """Values of a header by lowercase name, in order (headers may repeat)."""
        if self._headers is None:
            table: dict[str, list[str]] = {}
            for key, value in self.item.headers:
                table.setdefault(key.lower(), []).append(self._cut(value))
            self._headers = {k: tuple(v) for k, v in table.items()}
        return self._headers.get(name, ())

    # --- derived forms -------------------------------------------------------

    def lower(self, field: str) -> Value:
        """The value with strings lowercased, for case-insensitive tests."""
        try:
            return self._lower[field]
        except KeyError:
            raw = self.get(field)
            value: Value
            if isinstance(raw, str):
                value = raw.lower()
            elif isinstance(raw, tuple):
                value = tuple(v.lower() for v in raw)
            else:
                value = raw
            self._lower[field] = value
            return value

    def encoded(self, field: str) -> bytes:
        """A text field as UTF-8, for RE2 (which would encode on every call)."""
        data = self._bytes.get(field)
        if data is None:
            raw = self.get(field)
            text = raw if isinstance(raw, str) else ""
            data = self._bytes[field] = text.encode("utf-8", "surrogatepass")
        return data

    def hits(self, field: str) -> frozenset[int]:
        """Indexes of the field's literal set found in it: one scan per field."""
        found = self._hits.get(field)
        if found is None:
            found = self._hits[field] = self.compiled.scan(field, self.encoded(field))
        return found
