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
    queue: Annotated[Queue | None, Says("is not a queue this token can see")] = None
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


class Reply(Note):
    """POST /v1/requests/{reference}/replies: the text, and a status to set with it."""

    status: Annotated[Settable | None, STATUS_PROBLEM] = None


class Escalation(Body):
    """POST /v1/requests/{reference}/escalate; `queue` moves it there too (a queue
    the token can see, as for PATCH)."""

    reason: Annotated[str, Says("must be text")] = ""
    # A queue out of the token's scope reads as unknown: no leak of what exists.
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
