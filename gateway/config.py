"""Configuration: one TOML file, validated at start-up, with environment overrides.

With no file at all the gateway runs on the embedded default: a SQLite file in
the working directory, SMTP on 127.0.0.1:2525, HTTP on 127.0.0.1:8080, one
`general` queue and `support@localhost` as the accepted address.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from domain.errors import ConfigError
from parsers.forms import FormSpec, parse_forms

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///intake.db"


class _Section(BaseModel):
    # Unknown keys are errors: a typo in a key must not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, got {value!r}")
    return host.strip("[]"), int(port)


def _check_listen(value: str) -> str:
    _parse_listen(value)
    return value


# A "host:port" string, checked where the config is read.
HostPort = Annotated[str, AfterValidator(_check_listen)]


class IntakeSection(_Section):
    addresses: list[str] = Field(default_factory=lambda: ["support@localhost"])
    domains: list[str] = Field(default_factory=list)
    max_message_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    max_recipients: int = Field(default=100, gt=0)

    @field_validator("addresses")
    @classmethod
    def _addresses_look_like_addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            local, at, domain = address.rpartition("@")
            if not at or not local or not domain or any(c.isspace() for c in address):
                raise ValueError(f"not an email address: {address!r}")
        return [a.lower() for a in value]

    @field_validator("domains")
    @classmethod
    def _lower_domains(cls, value: list[str]) -> list[str]:
        return [d.lower().lstrip("@") for d in value]


class DatabaseSection(_Section):
    url: str = DEFAULT_DATABASE_URL
    pool_size: int = Field(default=10, gt=0)
    # Give up on a statement after this long and answer "try later" (451/503).
    timeout_seconds: float = Field(default=10.0, gt=0)
    migrate_on_start: bool = True

    @field_validator("url")
    @classmethod
    def _supported_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value


class SmtpSection(_Section):
    listen: HostPort = "127.0.0.1:2525"
    lmtp_listen: HostPort | None = None
    # Given explicitly so aiosmtpd does not call socket.getfqdn() per connection.
    hostname: str = "localhost"
    timeout_seconds: float = Field(default=300.0, gt=0)


class HttpSection(_Section):
    listen: HostPort = "127.0.0.1:8080"
    # Where links in answers point; defaults to http://<listen>.
    public_url: str | None = None
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    # Let POST /v1/requests in without a token (e.g. behind a trusted proxy).
    open_intake: bool = False
    shutdown_seconds: float = Field(default=10.0, gt=0)
    # Requests per second allowed per token and per client address (429 past it).
    rate_limit_per_token: float = Field(default=200.0, gt=0)
    rate_limit_per_address: float = Field(default=400.0, gt=0)
    rate_limit_burst: float = Field(default=400.0, ge=1)
    # Signs the web forms' fill-time tokens. Processes behind one balancer need
    # the same one; unset, each process makes its own at start.
    form_secret: str | None = Field(default=None, min_length=16)


class PipelineSection(_Section):
    workers: int = Field(default=2, ge=0)
    batch_size: int = Field(default=128, gt=0)
    max_attempts: int = Field(default=5, gt=0)
    # tenacity's exponential backoff between attempts, with jitter.
    backoff_initial_seconds: float = Field(default=0.5, gt=0)
    backoff_max_seconds: float = Field(default=30.0, gt=0)
    # How long a claimed inbox item stays ours before another process may retry it.
    lease_seconds: float = Field(default=60.0, gt=0)
    poll_seconds: float = Field(default=1.0, gt=0)
    # How often the service-level scheduler looks for warnings and breaches.
    scheduler_seconds: float = Field(default=5.0, gt=0)
    # How often the config file is checked for changed rules.
    reload_poll_seconds: float = Field(default=2.0, gt=0)
    # After a short batch, wait this long for more items before claiming again.
    linger_seconds: float = Field(default=0.2, ge=0)


class ThreadingSection(_Section):
    # How references appear in subjects we send and recognise in replies.
    subject_tag: str = Field(default="[#{ref}]", pattern=r"\{ref\}")
    # The domain of the Message-IDs we give our own mail; defaults to smtp.hostname.
    message_id_domain: str | None = None


class OutboundSection(_Section):
    # The SMTP relay that sends our mail (host:port); none: mail waits in the outbox.
    relay: HostPort | None = None
    starttls: bool = False
    username: str | None = None
    password_env: str | None = None  # the name of the variable holding the password
    from_address: str | None = None  # default: the first intake address
    from_name: str = "Support"
    templates: str | None = None     # folder of Jinja2 templates, before the built-in ones
    # Acknowledgements to one address per hour at most: stops loops with other responders.
    acknowledgements_per_hour: int = Field(default=5, ge=0)
    workers: int = Field(default=1, ge=0)
    max_attempts: int = Field(default=10, gt=0)
    max_age_hours: float = Field(default=48.0, gt=0)
    backoff_initial_seconds: float = Field(default=5.0, gt=0)
    backoff_max_seconds: float = Field(default=900.0, gt=0)
    lease_seconds: float = Field(default=120.0, gt=0)
    timeout_seconds: float = Field(default=30.0, gt=0)


class BrokerSection(_Section):
    # RabbitMQ (AMQP) URL; events go to a topic exchange, routing key = event name.
    url: str | None = None
    url_env: str | None = None  # or the name of a variable holding the URL
    exchange: str = "intake.events"
    events: list[str] = Field(default_factory=lambda: ["*"])

    @field_validator("url")
    @classmethod
    def _amqp(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("amqp://", "amqps://")):
            raise ValueError("must start with amqp:// or amqps://")
        return value


class QueueSection(_Section):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    # Service levels are a later issue; kept as data so the file can carry them.
    sla: dict[str, str] = Field(default_factory=dict)


class Config(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    source: str = "<embedded default>"
    intake: IntakeSection = Field(default_factory=IntakeSection)
    database: DatabaseSection = Field(default_factory=DatabaseSection)
    smtp: SmtpSection = Field(default_factory=SmtpSection)
    http: HttpSection = Field(default_factory=HttpSection)
    pipeline: PipelineSection = Field(default_factory=PipelineSection)
    threading: ThreadingSection = Field(default_factory=ThreadingSection)
    outbound: OutboundSection = Field(default_factory=OutboundSection)
    broker: BrokerSection = Field(default_factory=BrokerSection)
    queue: list[QueueSection] = Field(default_factory=lambda: [QueueSection(name="general")])

    @field_validator("queue")
    @classmethod
    def _unique_queue_names(cls, value: list[QueueSection]) -> list[QueueSection]:
        if not value:
            raise ValueError("at least one [[queue]] is needed")
        names = [q.name for q in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate queue name(s): {', '.join(duplicates)}")
        return value

    @property
    def smtp_address(self) -> tuple[str, int]:
        return _parse_listen(self.smtp.listen)

    @property
    def lmtp_address(self) -> tuple[str, int] | None:
        return _parse_listen(self.smtp.lmtp_listen) if self.smtp.lmtp_listen else None

    @property
    def http_address(self) -> tuple[str, int]:
        return _parse_listen(self.http.listen)

    @property
    def public_url(self) -> str:
        if self.http.public_url:
            return self.http.public_url.rstrip("/")
        host, port = self.http_address
        return f"http://{host}:{port}"

    @property
    def broker_url(self) -> str | None:
        return self.broker.url or (os.environ.get(self.broker.url_env)
                                   if self.broker.url_env else None)

    @cached_property
    def forms(self) -> dict[str, FormSpec]:
        """The `[[form]]` web forms by id, validated (ConfigError names the key)."""
        tables = (self.model_extra or {}).get("form", [])
        try:
            return parse_forms(tables, {q.name for q in self.queue})
        except ValueError as exc:
            raise ConfigError(f"{self.source}: key {exc}") from None

    def webhooks(self) -> list[Any]:
        """The `[[webhook]]` subscriptions, validated (ConfigError names the key)."""
        from gateway.delivery.webhooks import parse_subscriptions

        tables = (self.model_extra or {}).get("webhook", [])
        try:
            return parse_subscriptions(tables if isinstance(tables, list) else [tables])
        except ValueError as exc:
            raise ConfigError(f"{self.source}: {exc}") from None

    @property
    def relay_address(self) -> tuple[str, int] | None:
        return _parse_listen(self.outbound.relay) if self.outbound.relay else None

    @property
    def message_id_domain(self) -> str:
        return self.threading.message_id_domain or self.smtp.hostname

    @property
    def default_queue(self) -> str:
        return self.queue[0].name

    def accepts(self, address: str) -> bool:
        """Whether mail to this address is ours (configured address or domain)."""
        address = address.lower()
        if address in self.intake.addresses:
            return True
        _, _, domain = address.rpartition("@")
        return bool(domain) and domain in self.intake.domains


# Known top-level tables owned by later parts (routing rules, catalogue,
# escalation); they are validated by their own loaders, not here.
_PASS_THROUGH = {"rule", "component", "routing", "escalation", "sla", "calendar", "classifier",
                 "form", "webhook"}

_ENV_OVERRIDES: tuple[tuple[str, tuple[str, str]], ...] = (
    ("INTAKE_DATABASE_URL", ("database", "url")),
    ("INTAKE_SMTP_LISTEN", ("smtp", "listen")),
    ("INTAKE_LMTP_LISTEN", ("smtp", "lmtp_listen")),
    ("INTAKE_HTTP_LISTEN", ("http", "listen")),
    ("INTAKE_PUBLIC_URL", ("http", "public_url")),
    ("INTAKE_SMTP_RELAY", ("outbound", "relay")),
    ("INTAKE_FORM_SECRET", ("http", "form_secret")),
)

# With no config file: one support form, so a new install can be tried in a browser.
DEFAULT_FORM: dict[str, Any] = {
    "id": "support", "title": "Contact support",
    "intro": "Tell us what you need. We answer by email and give you a reference.",
    "field": [
        {"name": "name", "label": "Your name", "max_length": 200},
        {"name": "email", "label": "Your email address", "kind": "email", "required": True,
         "max_length": 320},
        {"name": "subject", "label": "Subject", "required": True, "max_length": 200},
        {"name": "message", "label": "How can we help?", "kind": "textarea",
         "required": True},
        {"name": "attachments", "label": "Attachments", "kind": "file",
         "hint": "Up to 3 files: images, PDF or plain text, 10 MB each."},
    ],
}


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(item)
    return ".".join(parts) or "(top level)"


def build_config(data: Mapping[str, Any], source: str, env: Mapping[str, str]) -> Config:
    """Validate config data (as read from TOML) with environment overrides applied."""
    merged: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for variable, (section, key) in _ENV_OVERRIDES:
        if env.get(variable):
            table = merged.setdefault(section, {})
            if not isinstance(table, dict):
                raise ConfigError(f"{source}: key {section}: must be a table")
            table[key] = env[variable]
    unknown = sorted(k for k in merged if k not in Config.model_fields and k not in _PASS_THROUGH)
    if unknown:
        raise ConfigError(f"{source}: key {unknown[0]}: unknown section")
    try:
        config = Config(source=source, **merged)
    except ValidationError as exc:
        raise ConfigError("\n".join(f"{source}: key {_location(e['loc'])}: {e['msg']}"
                                     for e in exc.errors())) from None
    config.forms  # noqa: B018 - validated now, so a wrong form stops start-up
    return config


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read the config named by `path` or INTAKE_CONFIG; none means the embedded default."""
    env = os.environ if env is None else env
    chosen = path or env.get("INTAKE_CONFIG")
    if not chosen:
        return build_config({"form": [DEFAULT_FORM]}, "<embedded default>", env)
    file = Path(chosen)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: invalid TOML: {exc}") from None
    return build_config(data, str(file), env)
