"""The JSON bodies the API takes, declared: fields, limits, and what a problem
with each reads as. The OpenAPI document (openapi_components.py) states the
same limits from these constants.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from domain.lifecycle import SETTABLE, Status
from gateway.http.validation import Body, Says
from routing.fields import PRIORITIES
from storage.tokens import ROLES

MAX_CLAIM = 50
MAX_LEASE_SECONDS = 3600
MAX_WAIT_SECONDS = 60
DEFAULT_LEASE_SECONDS = 300
# Column sizes of the fields an agent may set (storage/models.py).
FIELD_LIMITS = {"type": 32, "category": 64, "component": 64}
MAX_TAGS = 50
MAX_TAG = 100
MAX_ESCALATION = 10
MAX_TOKEN_NAME = 100
# Replies: copies, files (count, and their decoded bytes together) and the HTML part.
MAX_REPLY_CC = 20
MAX_REPLY_ATTACHMENTS = 10
MAX_REPLY_ATTACHMENT_BYTES = 10 * 1024 * 1024
MAX_REPLY_HTML = 500_000
MAX_FILENAME = 255
MEDIA_TYPE = r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$"
MAX_AGENT_NAME = 200
MAX_CANNED_NAME = 100
MAX_CANNED_BODY = 20_000
LANGUAGE = r"^[a-z]{2,3}(-[A-Za-z0-9]{1,8})*$"  # a BCP 47 tag such as en, de, pt-BR

T = TypeVar("T")


def _whole(low: int, high: int) -> Says:
    return Says(f"must be a whole number from {low} to {high}")


def _one_of(choices: Collection[T]) -> Callable[[T], T]:
    def check(value: T) -> T:
        if value not in choices:
            raise ValueError("not one of the choices")
        return value
    return check


def _queue(value: str, info: ValidationInfo) -> str:
    """One of the queues the handler passed in the validation context."""
    if value not in (info.context or {}).get("queues", ()):
        raise ValueError("not a queue here")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("blank")
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL character")
    return value


def _refuse_null(value: Any) -> Any:
    # Left out means "unchanged"; null is no value for these fields.
    if value is None:
        raise ValueError("null")
    return value


def _clock_window(value: str | None) -> str | None:
    """Quiet hours as `HH:MM-HH:MM`, each a real time of day (over midnight allowed)."""
    if value is None:
        return None
    parts = value.split("-")
    if len(parts) != 2 or not all(len(p) == 5 and p[2] == ":" and p[:2].isdigit()
                                  and p[3:].isdigit() and int(p[:2]) < 24 and int(p[3:]) < 60
                                  for p in parts):
        raise ValueError("not HH:MM-HH:MM")
    return value


QUIET_HOURS_PROBLEM = Says("must be quiet hours as HH:MM-HH:MM, or null for the queue's")
DIGEST_PROBLEM = Says("must be a whole number of minutes from 0 to 1440, or null for the "
                      "queue's")


def _unique(tags: list[str]) -> list[str]:
    return list(dict.fromkeys(tags))


# Read from JSON text, so the enum takes its value (strict would want a member).
Settable = Annotated[Status, Strict(False), AfterValidator(_one_of(SETTABLE))]
Priority = Annotated[str, AfterValidator(_one_of(PRIORITIES))]
Queue = Annotated[str, AfterValidator(_queue)]
Tags = Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=MAX_TAG)]],
                 Field(max_length=MAX_TAGS), AfterValidator(_unique)]
SimpleValue = str | int | float | bool | None
STATUS_PROBLEM = Says("must be one of " + ", ".join(SETTABLE))


def _text(field: str) -> Says:
    limit = FIELD_LIMITS[field]
    return Says("must be a string or null", too_long=f"must be at most {limit} characters")


# --- claims and leases -------------------------------------------------------------

class Claim(Body):
    """POST /v1/queues/{queue}/claim."""

    limit: Annotated[int, Field(ge=1, le=MAX_CLAIM), _whole(1, MAX_CLAIM)] = 1
    lease_seconds: Annotated[int, Field(ge=1, le=MAX_LEASE_SECONDS),
                             _whole(1, MAX_LEASE_SECONDS)] = DEFAULT_LEASE_SECONDS
    wait: Annotated[int, Field(ge=0, le=MAX_WAIT_SECONDS), _whole(0, MAX_WAIT_SECONDS)] = 0


class Lease(Body):
    """PUT /v1/requests/{reference}/lease."""

    lease_seconds: Annotated[int, Field(ge=1, le=MAX_LEASE_SECONDS),
                             _whole(1, MAX_LEASE_SECONDS)] = DEFAULT_LEASE_SECONDS


# --- changes and actions on a request ----------------------------------------------

class AgentChanges(Body):
    """PATCH /v1/requests/{reference} by an agent: at least one of these fields."""

    model_config = ConfigDict(extra="forbid")
    unknown_field: ClassVar[str] = "is not a field this token may change"
    in_body_order: ClassVar[bool] = True

    status: Annotated[Settable | None, STATUS_PROBLEM] = None
    queue: Annotated[Queue | None, Says("is not a configured queue")] = None
    priority: Annotated[Priority | None, Says("must be " + ", ".join(PRIORITIES[:-1])
                                              + f" or {PRIORITIES[-1]}")] = None
    type: Annotated[str | None, Field(max_length=FIELD_LIMITS["type"]), _text("type")] = None
    category: Annotated[str | None, Field(max_length=FIELD_LIMITS["category"]),
                        _text("category")] = None
    component: Annotated[str | None, Field(max_length=FIELD_LIMITS["component"]),
                         _text("component")] = None
    tags: Annotated[Tags | None, Says(f"must be at most {MAX_TAGS} strings of 1 to "
                                      f"{MAX_TAG} characters")] = None
    custom_fields: Annotated[dict[str, SimpleValue] | None,
                             Says("must be an object of simple values")] = None

    _present = field_validator("status", "queue", "priority", "tags", "custom_fields",
                               mode="before")(_refuse_null)

    def changes(self, sent: dict[str, Any]) -> dict[str, Any]:
        """The fields sent, validated, in the order they were sent."""
        values = self.model_dump(exclude_unset=True)
        return {key: values[key] for key in sent if key in values}


class AdminChanges(AgentChanges):
    """PATCH by an admin: also the escalation level."""

    escalation_level: Annotated[int | None, Field(ge=0, le=MAX_ESCALATION),
                                Says(f"must be 0 to {MAX_ESCALATION}")] = None

    _level_present = field_validator("escalation_level", mode="before")(_refuse_null)


class Note(Body):
    """POST /v1/requests/{reference}/notes."""

    body: Annotated[str, AfterValidator(_not_blank), Says("is required and must be text")]


class ReplyAttachment(Body):
    """A file sent with a reply: its content in base64 (RFC 4648, padded)."""

    model_config = ConfigDict(extra="forbid")

    filename: Annotated[str, StringConstraints(min_length=1, max_length=MAX_FILENAME),
                        AfterValidator(_no_nul)]
    content_type: Annotated[str, StringConstraints(pattern=MEDIA_TYPE, max_length=200)] = (
        "application/octet-stream")
    content_base64: str


class Reply(Body):
    """POST /v1/requests/{reference}/replies: the text (or a canned response, or
    both: the text first), a status to set with it, copies, an HTML part and files."""

    body: Annotated[str, Says("must be text")] = ""
    canned_response: Annotated[int | None, Field(ge=1), Says("must be a canned response's id")
                               ] = None
    status: Annotated[Settable | None, STATUS_PROBLEM] = None
    cc: Annotated[list[str], Field(max_length=MAX_REPLY_CC),
                  Says(f"must be a list of at most {MAX_REPLY_CC} email addresses")] = []
    html: Annotated[str | None, Field(max_length=MAX_REPLY_HTML),
                    Says("must be HTML text", too_long=f"must be at most {MAX_REPLY_HTML} "
                                                       "characters")] = None
    attachments: Annotated[list[ReplyAttachment], Field(max_length=MAX_REPLY_ATTACHMENTS),
                           Says(f"must be at most {MAX_REPLY_ATTACHMENTS} objects with "
                                "filename, content_type (a media type) and content_base64")
                           ] = []


class Escalation(Body):
    """POST /v1/requests/{reference}/escalate; `queue` moves it there too (any
    configured queue; one out of the token's scope is a hand-off, as for PATCH)."""

    reason: Annotated[str, Says("must be text")] = ""
    queue: Annotated[Queue | None, Says("is not a configured queue")] = None

    _present = field_validator("queue", mode="before")(_refuse_null)


class Merge(Body):
    """POST /v1/requests/{reference}/merge."""

    into: Annotated[str, Says("is required: the reference to merge into")]


# --- admin ---------------------------------------------------------------------------

class NewToken(Body):
    """POST /v1/admin/tokens: every problem is listed, unknown keys too."""

    model_config = ConfigDict(extra="forbid")

    role: Annotated[str, AfterValidator(_one_of(ROLES)), Says("must be one of " + ", ".join(ROLES))]
    queues: Annotated[list[Queue], Says("must be a list of known queues")] = []
    name: Annotated[str, Field(max_length=MAX_TOKEN_NAME), AfterValidator(_no_nul),
                    Says(f"must be text of at most {MAX_TOKEN_NAME} characters")] = ""
    may_hand_off: Annotated[bool, Says("must be true or false")] = True


class NewAgent(Body):
    """POST /v1/admin/agents: every problem is listed, unknown keys too."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(max_length=MAX_AGENT_NAME),
                    AfterValidator(_not_blank), AfterValidator(_no_nul),
                    Says(f"is required: text of 1 to {MAX_AGENT_NAME} characters")]
    email: Annotated[str, Says("is required: the agent's email address")]
    queues: Annotated[list[Queue], Says("must be a list of known queues (none: all)")] = []
    active: Annotated[bool, Says("must be true or false")] = True
    # The agent's own notification settings, over the queue's (null: the queue's).
    quiet_hours: Annotated[str | None, AfterValidator(_clock_window), QUIET_HOURS_PROBLEM] = None
    digest_minutes: Annotated[int | None, Field(ge=0, le=24 * 60), DIGEST_PROBLEM] = None


class AgentUpdate(Body):
    """PATCH /v1/admin/agents/{id}: the fields to change."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str | None, StringConstraints(max_length=MAX_AGENT_NAME),
                    Says(f"must be text of 1 to {MAX_AGENT_NAME} characters")] = None
    email: Annotated[str | None, Says("must be an email address")] = None
    queues: Annotated[list[Queue] | None, Says("must be a list of known queues (none: all)")
                      ] = None
    active: Annotated[bool | None, Says("must be true or false")] = None
    quiet_hours: Annotated[str | None, AfterValidator(_clock_window), QUIET_HOURS_PROBLEM] = None
    digest_minutes: Annotated[int | None, Field(ge=0, le=24 * 60), DIGEST_PROBLEM] = None

    _present = field_validator("name", "email", "queues", "active", mode="before")(_refuse_null)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else _no_nul(_not_blank(value))


class NewAgentToken(Body):
    """POST /v1/admin/agents/{id}/tokens: a token acting as the agent."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(max_length=MAX_TOKEN_NAME), AfterValidator(_no_nul),
                    Says(f"must be text of at most {MAX_TOKEN_NAME} characters")] = ""
    may_hand_off: Annotated[bool, Says("must be true or false")] = True


class NewCanned(Body):
    """POST /v1/admin/canned-responses: a reply template for a queue and language."""

    model_config = ConfigDict(extra="forbid")

    queue: Annotated[Queue, Says("is required: a configured queue")]
    language: Annotated[str, StringConstraints(pattern=LANGUAGE, max_length=16),
                        Says("must be a language tag such as en, de or pt-BR")] = "en"
    name: Annotated[str, StringConstraints(max_length=MAX_CANNED_NAME),
                    AfterValidator(_not_blank), AfterValidator(_no_nul),
                    Says(f"is required: text of 1 to {MAX_CANNED_NAME} characters")]
    body: Annotated[str, StringConstraints(max_length=MAX_CANNED_BODY),
                    AfterValidator(_not_blank),
                    Says(f"is required: a template of 1 to {MAX_CANNED_BODY} characters")]


class CannedUpdate(Body):
    """PATCH /v1/admin/canned-responses/{id}: the fields to change."""

    model_config = ConfigDict(extra="forbid")

    queue: Annotated[Queue | None, Says("must be a configured queue")] = None
    language: Annotated[str | None, StringConstraints(pattern=LANGUAGE, max_length=16),
                        Says("must be a language tag such as en, de or pt-BR")] = None
    name: Annotated[str | None, StringConstraints(min_length=1, max_length=MAX_CANNED_NAME),
                    Says(f"must be text of 1 to {MAX_CANNED_NAME} characters")] = None
    body: Annotated[str | None, StringConstraints(min_length=1, max_length=MAX_CANNED_BODY),
                    Says(f"must be a template of 1 to {MAX_CANNED_BODY} characters")] = None

    _present = field_validator("queue", "language", "name", "body",
                               mode="before")(_refuse_null)
