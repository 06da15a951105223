"""The gateway's own tables, checked by pydantic: `[intake]`, `[desk]`, `[database]`,
`[smtp]`, `[http]`, `[pipeline]`, `[threading]`, `[outbound]`, `[broker]`, `[log]`,
`[process]`, `[metrics]`, `[health]`, `[sender_auth]`, `[[queue]]`, `[[retention]]`
and `[[mailbox]]`. A wrong value or an unknown key is reported as `key SECTION.KEY`.
"""

from __future__ import annotations

import re
from datetime import date
from email.headerregistry import Address
from ipaddress import ip_network
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from domain.lifecycle import DEFAULT_REOPEN_DAYS, AcknowledgementLimits
from domain.retention import Policy
from domain.retention import problems as retention_problems
from gateway import i18n

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///intake.db"


def _one_address(value: str | None) -> str | None:
    """Our envelope sender and From: exactly one addr-spec (any host name)."""
    if value is None:
        return value
    try:
        parsed = Address(addr_spec=value)
    except (ValueError, IndexError) as exc:
        raise ValueError(f"not one email address: {value!r}") from exc
    if parsed.addr_spec != value or not parsed.username or not parsed.domain:
        raise ValueError(f"not one email address: {value!r}")
    return value


class _Section(BaseModel):
    # Unknown keys are errors: a typo in a key must not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _networks(value: list[str]) -> list[str]:
    """CIDRs (a bare address is its /32 or /128), each checked and written out."""
    checked = []
    for text in value:
        try:
            checked.append(str(ip_network(text.strip(), strict=False)))
        except ValueError as exc:
            raise ValueError(f"not an IP network (CIDR): {text!r}") from exc
    return checked


# Addresses of proxies trusted to say whose a connection is (gateway/proxies.py).
Networks = Annotated[list[str], AfterValidator(_networks)]


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, got {value!r}")
    return host.strip("[]"), int(port)


def _check_listen(value: str) -> str:
    parse_listen(value)
    return value


# Listening on every address: no address others could use in a link.
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::"})

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


class _Connections(_Section):
    """Connection caps a listener shares with [smtp] or [http] (each listener has its own)."""

    max_connections: int = Field(gt=0)
    max_connections_per_client: int = Field(gt=0)

    @model_validator(mode="after")
    def _per_client_within_total(self) -> Self:
        if self.max_connections_per_client > self.max_connections:
            raise ValueError("max_connections_per_client cannot exceed max_connections")
        return self


# The SMTP edge's listeners, by the name their policy is given under.
LISTENERS = ("smtp", "lmtp", "smtps")


class TlsSection(_Section):
    """`[smtp.tls]`: the certificate chain and key offered by STARTTLS (on `listen`
    and `lmtp_listen`) and by the implicit-TLS listener (`tls_listen`); read again
    on SIGHUP. TLS 1.2 is the minimum (gateway/tls.py)."""

    certificate: str = Field(min_length=1)  # PEM: the server's certificate, then its chain
    key: str = Field(min_length=1)          # PEM: its private key (unencrypted)


class ListenerPolicy(_Section):
    """`[smtp.policy.smtp]`, `.lmtp`, `.smtps`: what one listener asks of a sender
    and what it believes about one."""

    # MAIL before STARTTLS is refused (530 5.7.0); needs [smtp.tls].
    require_tls: bool = False
    # off: nothing checked (the sender is taken as written, as far as threading
    # trusts any address); verify: SPF, DKIM, ARC and DMARC checked here, for
    # mail received directly; trust: the front MTA's Authentication-Results
    # (from one of `authserv_ids` only) are believed, any other is recorded only.
    sender_auth: Literal["off", "verify", "trust"] = "off"
    authserv_ids: list[str] = Field(default_factory=list)
    # trust: the front filter's SpamAssassin (X-Spam-Status, X-Spam-Score,
    # X-Spam-Flag) and rspamd (X-Rspamd-Score, X-Spamd-Result, X-Spam) headers become
    # the rule fields spam.score and spam.flag.
    spam_headers: bool = False

    @field_validator("authserv_ids")
    @classmethod
    def _plain_ids(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9._-]{1,253}", name):
                raise ValueError(f"not an authserv-id (a host name): {name!r}")
        return [name.lower() for name in value]

    @model_validator(mode="after")
    def _trust_needs_ids(self) -> Self:
        if self.sender_auth == "trust" and not self.authserv_ids:
            raise ValueError('sender_auth = "trust" needs authserv_ids: the front MTA\'s')
        if self.spam_headers and self.sender_auth != "trust":
            raise ValueError('spam_headers needs sender_auth = "trust" (a front MTA)')
        return self


class SenderAuthSection(_Section):
    """`[sender_auth]`: how the verify mode looks things up, and what a forged
    From does (gateway/sender_auth/)."""

    # "host:port" of the DNS servers to ask; empty: the system's (/etc/resolv.conf).
    nameservers: list[HostPort] = Field(default_factory=list)
    # One query's time; past it, or on SERVFAIL, the verdict is temperror.
    timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    # Answers kept (by their TTL, at most max_ttl_seconds), failures for a short while.
    cache_entries: int = Field(default=10000, ge=0)
    max_ttl_seconds: int = Field(default=3600, ge=0)
    # Messages checked at once by one pipeline process.
    concurrency: int = Field(default=32, gt=0, le=1024)
    # A From that fails DMARC of a domain whose policy is quarantine or reject
    # never joins a request as its participant: it starts a new request, or
    # (quarantine) a quarantined one that nobody is told of.
    forged_from: Literal["new_request", "quarantine"] = "new_request"


class SmtpSection(_Connections):
    listen: HostPort = "127.0.0.1:2525"
    lmtp_listen: HostPort | None = None
    # Implicit TLS (RFC 8314, the port 465 style): TLS from the first byte.
    tls_listen: HostPort | None = None
    tls: TlsSection | None = None
    # Per listener, by name (smtp, lmtp, smtps); a listener not named has the defaults.
    policy: dict[Literal["smtp", "lmtp", "smtps"], ListenerPolicy] = Field(
        default_factory=dict)
    # Given explicitly so aiosmtpd does not call socket.getfqdn() per connection.
    hostname: str = "localhost"
    # Idle: waiting for the next command after our reply (RFC 5321 4.5.3.2.7: at
    # least 5 minutes). Then 421 4.4.2 and the connection is closed.
    timeout_seconds: float = Field(default=300.0, gt=0)
    # A command begun must end (CRLF) within this; partial bytes do not extend it.
    command_timeout_seconds: float = Field(default=60.0, gt=0)
    # The whole DATA transfer, 354 to the final dot (RFC 5321 4.5.3.2.6: 10 minutes).
    data_timeout_seconds: float = Field(default=600.0, gt=0)
    # A session is closed (421 4.4.2) at its first idle moment past this, so a
    # client sending NOOP every few minutes does not hold a connection for ever.
    session_timeout_seconds: float = Field(default=1800.0, gt=0)
    # Per listener (SMTP and LMTP each). Postfix's smtpd_client_connection_count_limit
    # is 50; with HTTP's and the database pool they fit under a 1,024-file limit.
    max_connections: int = Field(default=200, gt=0)
    max_connections_per_client: int = Field(default=50, gt=0)
    # Message data received and not yet stored, per listener: past it, sessions
    # wait to be read (gateway/data_budget.py). aiosmtpd holds about three
    # times this at the peak (lines, joined, handed over).
    data_in_flight_bytes: int = Field(default=128 * 1024 * 1024, gt=0)
    # Proxies (HAProxy `send-proxy`) whose connections begin with a PROXY
    # header (v1 or v2) naming the client: they must send one, nobody else may.
    # Empty (the default): off. Applies to the LMTP listener too.
    proxy_protocol_from: Networks = Field(default_factory=list)

    @model_validator(mode="after")
    def _tls_where_needed(self) -> Self:
        if self.tls is None:
            if self.tls_listen is not None:
                raise ValueError("tls_listen needs [smtp.tls] (certificate and key)")
            if needing := sorted(n for n, p in self.policy.items() if p.require_tls):
                raise ValueError(f"require_tls needs [smtp.tls]: {', '.join(needing)}")
        return self

    def policy_of(self, listener: str) -> ListenerPolicy:
        return self.policy.get(listener) or _DEFAULT_POLICY  # type: ignore[call-overload]


_DEFAULT_POLICY = ListenerPolicy()


class HttpSection(_Connections):
    listen: HostPort = "127.0.0.1:8080"
    # A request head must arrive whole this long after the connection opens.
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    # A request body must arrive within this, plus one second for each
    # body_min_bytes_per_second bytes received (Apache mod_reqtimeout's MinRate):
    # a slow upload that keeps moving goes on, one byte a second does not.
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    body_min_bytes_per_second: int = Field(default=8192, ge=0)
    # An idle kept-alive connection is closed after this.
    keepalive_timeout_seconds: float = Field(default=15.0, gt=0)
    # A client that stops reading our answer is cut after this long.
    send_timeout_seconds: float = Field(default=60.0, gt=0)
    # Each quarter of the total for one address (a proxy in `trusted_proxies`
    # counts under the total only).
    max_connections: int = Field(default=256, gt=0)
    max_connections_per_client: int = Field(default=64, gt=0)
    # Proxies (HAProxy `option forwardfor`) whose X-Forwarded-For names the
    # client; from anyone else the header is ignored. Empty (the default): off.
    trusted_proxies: Networks = Field(default_factory=list)
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
    # A one-time link mailed from the status lookup page (/status) works this long.
    status_link_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)

    @model_validator(mode="after")
    def _public_url_behind_a_wildcard(self) -> Self:
        # Links in acknowledgements are made with no request at hand: on 0.0.0.0
        # they would read http://0.0.0.0:8080, so the address must be given.
        if self.public_url is None and parse_listen(self.listen)[0] in WILDCARD_HOSTS:
            raise ValueError(f"public_url is required when listen is a wildcard address "
                             f"({self.listen}): links sent to customers must name an "
                             "address they can reach, e.g. https://desk.example.com")
        return self


class PipelineSection(_Section):
    workers: int = Field(default=2, ge=0)
    batch_size: int = Field(default=128, gt=0)
    # Raw bytes claimed per batch as well (one larger item is claimed alone): a
    # worker holds a few times its batch's size while it parses and stores it.
    batch_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    # Mail of at least this size is parsed in a child process, off the event loop;
    # `parse_processes` of them at once (0: in a thread of this process instead).
    parse_offload_bytes: int = Field(default=256 * 1024, ge=0)
    parse_processes: int = Field(default=1, ge=0)
    # A parse that takes longer fails as the item's fault (retried, then dead).
    parse_timeout_seconds: float = Field(default=120.0, gt=0)
    # Build requests (parse, classify, route, acknowledge) in a child process
    # while this one stores: None is on where `intake serve` is one process
    # (SQLite) on two cores or more, off where worker processes fill the cores.
    build_process: bool | None = None
    max_attempts: int = Field(default=5, gt=0)
    # tenacity's exponential backoff between attempts, with jitter.
    backoff_initial_seconds: float = Field(default=0.5, gt=0)
    backoff_max_seconds: float = Field(default=30.0, gt=0)
    # How long a claimed inbox item stays ours before another process may retry it;
    # renewed every third of it while the worker is still on the item.
    lease_seconds: float = Field(default=60.0, gt=0)
    poll_seconds: float = Field(default=1.0, gt=0)
    # How often the service-level scheduler looks for warnings and breaches.
    scheduler_seconds: float = Field(default=5.0, gt=0)
    # How often the config file is checked for changed rules.
    reload_poll_seconds: float = Field(default=2.0, gt=0)
    # How often `[[retention]]` runs (each process; batches are shared out), and
    # the rows it deletes or changes per transaction.
    retention_minutes: float = Field(default=60.0, gt=0)
    retention_batch_size: int = Field(default=1000, gt=0, le=10000)
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
    # Added to agents' replies and given to templates as `signature` (a queue's own wins).
    signature: str = ""
    # The name we give in EHLO to the relay; default smtp.hostname.
    helo: str | None = Field(default=None, min_length=1, pattern=r"^[A-Za-z0-9.\-\[\]:]+$")
    templates: str | None = None     # folder of Jinja2 templates, before the built-in ones
    # Acknowledgements at most, counted on the address each one goes to (an
    # email's Reply-To; ann+x@ counts as ann@); 0: none. Per mailbox per hour: stops
    # loops with other responders and one victim named in many mails' Reply-To.
    acknowledgements_per_hour: int = Field(default=5, ge=0)
    # Per domain of the recipient per hour: many addresses at one organisation.
    acknowledgements_per_domain_per_hour: int = Field(default=200, ge=0)
    # To anyone per minute: a loop and mail-bomb guard.
    acknowledgements_per_minute: int = Field(default=120, ge=0)
    workers: int = Field(default=1, ge=0)
    max_attempts: int = Field(default=10, gt=0)
    max_age_hours: float = Field(default=48.0, gt=0)
    backoff_initial_seconds: float = Field(default=5.0, gt=0)
    backoff_max_seconds: float = Field(default=900.0, gt=0)
    lease_seconds: float = Field(default=120.0, gt=0)
    timeout_seconds: float = Field(default=30.0, gt=0)

    @field_validator("from_address")
    @classmethod
    def _one_address(cls, value: str | None) -> str | None:
        return _one_address(value)

    @property
    def acknowledgement_limits(self) -> AcknowledgementLimits:
        return AcknowledgementLimits(
            per_recipient_per_hour=self.acknowledgements_per_hour,
            per_domain_per_hour=self.acknowledgements_per_domain_per_hour,
            per_minute=self.acknowledgements_per_minute)


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


class LogSection(_Section):
    # The least severe level logged (`intake --log-level` overrides it).
    level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    # "text": one readable line per record; "json": one JSON object per line.
    format: Literal["text", "json"] = "text"
    # One line per HTTP request (method, path, status, size, time; no query, no body).
    access: bool = False

    @field_validator("level", "format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


class ProcessSection(_Section):
    # Worker processes of `intake serve` sharing the listening ports (SO_REUSEPORT)
    # under a supervisor; unset: one per core on PostgreSQL, one on SQLite.
    count: int | None = Field(default=None, ge=1, le=256)


class MetricsSection(_Section):
    # Count and expose Prometheus metrics (false: the counters are not kept, the
    # baseline of benchmarks/metrics_cost.py).
    enabled: bool = True
    # GET /metrics on its own listener (not the HTTP API's, so no token and no
    # rate limit, and a scrape reaches one known process): worker N of `intake
    # serve` listens on this port + N - 1, each its own scrape target. Unset: none.
    listen: HostPort | None = None
    # The figures read from the database (backlogs, queues) are worked out at most
    # this often per database, by one process (the others export none of them).
    database_seconds: float = Field(default=15.0, gt=0)


class HealthSection(_Section):
    # GET /v1/admin/health and `intake health`: above these, an issue is reported.
    pipeline_lag_seconds: float = Field(default=300.0, gt=0)           # WARNING
    pipeline_lag_critical_seconds: float = Field(default=1800.0, gt=0)  # CRITICAL
    scheduler_late_seconds: float = Field(default=300.0, gt=0)         # CRITICAL
    relay_timeout_seconds: float = Field(default=3.0, gt=0)
    # A [[mailbox]] without a working pass (or never fetched) this long: WARNING.
    mailbox_stale_seconds: float = Field(default=900.0, gt=0)


def _code(value: str | None) -> str | None:
    """A language code, written as gateway/i18n writes them (`pt_BR` is `pt-BR`)."""
    if value is None:
        return None
    code = i18n.normalise(value)
    if code is None:
        raise ValueError(f"not a language code: {value!r} (such as de, pt-BR)")
    return code


def _without_catalogue(value: str) -> str:
    return (f"{value!r} is not a language with a catalogue (shipped: "
            f"{', '.join(i18n.SHIPPED)}; others come from [desk] locales)")


class DeskSection(_Section):
    """The desk as customers meet it: what they read when nothing else decides
    their language, the time zone of the dates they read, and the desk's own
    message catalogues (gateway/i18n; put in force by the loader)."""

    # Folder of gettext catalogues, <lang>/LC_MESSAGES/intake.po, adding languages
    # or rewording shipped ones. Checked first: `language` may be one of its.
    locales: str | None = Field(default=None, validate_default=True)
    language: str = "en"
    timezone: str = "UTC"

    @field_validator("locales")
    @classmethod
    def _catalogues(cls, value: str | None) -> str | None:
        if value is None:
            return None
        _, problems = i18n.read_folder(value)
        if problems:
            raise ValueError("; ".join(problems[:20]) + (
                f"; and {len(problems) - 20} more" if len(problems) > 20 else ""))
        return value

    @field_validator("language")
    @classmethod
    def _a_language(cls, value: str, info: ValidationInfo) -> str:
        code = str(_code(value))
        if "locales" in info.data and code not in (
                frozenset(i18n.SHIPPED) | i18n.folder_languages(info.data["locales"])):
            raise ValueError(_without_catalogue(value))
        return code

    @field_validator("timezone")
    @classmethod
    def _a_zone(cls, value: str) -> str:
        return i18n.check_timezone(value)

    @property
    def languages(self) -> frozenset[str]:
        """Every language with a catalogue: shipped, or in `locales`."""
        return frozenset(i18n.SHIPPED) | i18n.folder_languages(self.locales)


class QueueSection(_Section):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    # What its customers read when their own words and browser do not say
    # (default: [desk] language).
    language: str | None = None
    # A customer's reply reopens a resolved request within this many days; later
    # it becomes a new request linked to the old one (0: never reopen).
    reopen_days: int = Field(default=DEFAULT_REOPEN_DAYS, ge=0, le=3650)
    # Service levels are a later issue; kept as data so the file can carry them.
    sla: dict[str, str] = Field(default_factory=dict)
    # Mail of this queue comes from here (default: the intake address the customer
    # wrote to, else outbound.from_address), with this name and signature
    # (default: [outbound]'s).
    from_address: str | None = None
    from_name: str | None = Field(default=None, max_length=100)
    signature: str | None = None
    # Email to the queue's agents (active `agents` who work it, and the `notify`
    # addresses) on these happenings; empty (the default): none. Sent through the
    # outbox, never inline; held through `quiet_hours` ("HH:MM-HH:MM" in the
    # time zone of the queue's SLA calendar) and gathered per recipient for
    # `digest_minutes` (0: each on its own) into one mail.
    notify_on: list[Literal["new_request", "escalated", "sla_breached"]] = Field(
        default_factory=list)
    notify: list[str] = Field(default_factory=list)
    quiet_hours: str | None = Field(default=None, pattern=r"^\d\d:\d\d-\d\d:\d\d$")
    digest_minutes: int = Field(default=0, ge=0, le=24 * 60)

    @field_validator("from_address")
    @classmethod
    def _one_address(cls, value: str | None) -> str | None:
        return _one_address(value)

    @field_validator("language")
    @classmethod
    def _a_language(cls, value: str | None) -> str | None:
        return _code(value)

    @field_validator("notify")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        return [str(_one_address(a)) for a in value]

    @field_validator("quiet_hours")
    @classmethod
    def _clock_times(cls, value: str | None) -> str | None:
        for part in (value or "").split("-") if value else ():
            hour, minute = int(part[:2]), int(part[3:])
            if hour > 23 or minute > 59:
                raise ValueError(f"not a time of day: {part!r}")
        return value


Days = Annotated[int | None, Field(default=None, ge=1, le=36500)]


class RetentionSection(_Section):
    """A `[[retention]]` table (domain/retention.py): which requests it governs
    (queue and/or type; neither: the default) and how many days things are kept."""

    queue: str | None = Field(default=None, min_length=1, max_length=64)
    type: str | None = Field(default=None, min_length=1, max_length=32)
    delete_after_days: Days = None
    anonymise_after_days: Days = None
    raw_after_days: Days = None
    dead_letters_after_days: Days = None
    outbox_after_days: Days = None
    audit_after_days: Days = None

    @property
    def policy(self) -> Policy:
        return Policy(**self.model_dump())

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        found = retention_problems(self.policy)
        if found:
            raise ValueError("; ".join(found))
        return self


MAILBOX_NAME = r"^[A-Za-z0-9_.-]{1,64}$"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _folder_key(name: str) -> str:
    """INBOX is the one folder name that is not case-sensitive (RFC 3501 5.1)."""
    return "INBOX" if name.upper() == "INBOX" else name


class OAuth2Section(_Section):
    """XOAUTH2 or OAUTHBEARER with a refresh token (gateway/mailbox/oauth.py)."""

    mechanism: Literal["xoauth2", "oauthbearer"] = "xoauth2"
    token_url: str = Field(pattern=r"^https?://")
    client_id: str = Field(min_length=1)
    client_secret_env: str | None = None  # none: a public client (no secret)
    refresh_token_env: str = Field(min_length=1)
    scope: str | None = None
    # An access token is refreshed this long before it expires.
    refresh_margin_seconds: float = Field(default=300.0, ge=0)


class MailboxSection(_Section):
    """A `[[mailbox]]`: an IMAP mailbox fetched exactly once (gateway/mailbox/)."""

    name: str = Field(pattern=MAILBOX_NAME)
    host: str = Field(min_length=1, max_length=253)
    port: int | None = Field(default=None, gt=0, le=65535)  # 993 implicit TLS, else 143
    # "none" only to a loopback address: passwords and mail never cross a wire in clear.
    tls: Literal["implicit", "starttls", "none"] = "implicit"
    ca_file: str | None = None  # a private server's CA; default: the system's
    user: str = Field(min_length=1, max_length=320)
    password_env: str | None = None
    oauth2: OAuth2Section | None = None
    folders: list[str] = Field(default_factory=lambda: ["INBOX"], min_length=1)
    # After a message is safely stored: "move" it to `move_to`, "keep" it
    # (marked \Seen) or "delete" it (flagged \Deleted and expunged).
    after: Literal["move", "keep", "delete"] = "move"
    move_to: str | None = Field(default=None, min_length=1, max_length=255)
    # The intake addresses it stands for: routing sees them as the envelope's.
    addresses: list[str] = Field(default_factory=list)
    # "archive": store old mail as closed requests, without acknowledgements or
    # escalations, at their own dates.
    mode: Literal["intake", "archive"] = "intake"
    # The first fetch of a folder takes mail from this date on (None: all of it).
    since: date | None = None
    # Messages stored per pass at most: a huge first fetch goes in steps.
    max_per_run: int = Field(default=500, gt=0, le=100_000)
    # IDLE when the server has it; else (and for other folders) a look this often.
    idle: bool = True
    poll_seconds: float = Field(default=60.0, gt=0)
    # How long a process holds the mailbox without renewing; another takes over then.
    lease_seconds: float = Field(default=30.0, ge=3)
    timeout_seconds: float = Field(default=60.0, gt=0)
    # Reconnection after a failure waits this long, doubling up to the max (tenacity).
    backoff_initial_seconds: float = Field(default=1.0, gt=0)
    backoff_max_seconds: float = Field(default=300.0, gt=0)

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        return [str(_one_address(a)).lower() for a in value]

    @field_validator("folders")
    @classmethod
    def _folder_names(cls, value: list[str]) -> list[str]:
        for folder in value:
            if not folder or len(folder) > 255 or any(ord(c) < 32 for c in folder):
                raise ValueError(f"not a folder name: {folder!r}")
        if len({_folder_key(f) for f in value}) != len(value):
            raise ValueError("a folder is named twice")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.password_env is None) == (self.oauth2 is None):
            raise ValueError("give either password_env or [mailbox.oauth2], not both")
        if self.after == "move" and not self.move_to:
            raise ValueError('after = "move" needs move_to (the folder to move mail to)')
        if self.after == "move" and _folder_key(self.move_to or "") in {
                _folder_key(f) for f in self.folders}:
            raise ValueError("move_to cannot be one of the folders read")
        if self.tls == "none" and self.host.strip("[]") not in LOOPBACK_HOSTS \
                and not self.host.startswith("127."):
            raise ValueError('tls = "none" is allowed only to a loopback address')
        return self

    @property
    def address(self) -> tuple[str, int]:
        return self.host.strip("[]"), self.port or (993 if self.tls == "implicit" else 143)


class Sections(BaseModel):
    """Every table of the file that pydantic checks; the loader gives the others
    to their own readers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    intake: IntakeSection = Field(default_factory=IntakeSection)
    # Before [[queue]]: a queue's language may come from the desk's catalogues.
    desk: DeskSection = Field(default_factory=DeskSection)
    database: DatabaseSection = Field(default_factory=DatabaseSection)
    smtp: SmtpSection = Field(default_factory=SmtpSection)
    http: HttpSection = Field(default_factory=HttpSection)
    pipeline: PipelineSection = Field(default_factory=PipelineSection)
    threading: ThreadingSection = Field(default_factory=ThreadingSection)
    outbound: OutboundSection = Field(default_factory=OutboundSection)
    broker: BrokerSection = Field(default_factory=BrokerSection)
    log: LogSection = Field(default_factory=LogSection)
    process: ProcessSection = Field(default_factory=ProcessSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    health: HealthSection = Field(default_factory=HealthSection)
    queue: list[QueueSection] = Field(default_factory=lambda: [QueueSection(name="general")])
    retention: list[RetentionSection] = Field(default_factory=list)
    mailbox: list[MailboxSection] = Field(default_factory=list)
    sender_auth: SenderAuthSection = Field(default_factory=SenderAuthSection)

    @field_validator("retention")
    @classmethod
    def _one_policy_each(cls, value: list[RetentionSection],
                         info: ValidationInfo) -> list[RetentionSection]:
        queues = {q.name for q in info.data.get("queue", [])}
        for policy in value:
            if policy.queue is not None and queues and policy.queue not in queues:
                raise ValueError(f"unknown queue {policy.queue!r}")
        keys = [(p.queue, p.type) for p in value]
        twice = sorted({p.policy.name for p in value if keys.count((p.queue, p.type)) > 1})
        if twice:
            raise ValueError(f"more than one [[retention]] for {', '.join(twice)}")
        return value

    @field_validator("mailbox")
    @classmethod
    def _unique_mailbox_names(cls, value: list[MailboxSection]) -> list[MailboxSection]:
        names = [m.name for m in value]
        if twice := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"duplicate mailbox name(s): {', '.join(twice)}")
        return value

    @property
    def retention_policies(self) -> tuple[Policy, ...]:
        return tuple(p.policy for p in self.retention)

    @field_validator("queue")
    @classmethod
    def _queue_languages(cls, value: list[QueueSection],
                         info: ValidationInfo) -> list[QueueSection]:
        desk = info.data.get("desk")
        languages = desk.languages if isinstance(desk, DeskSection) else frozenset(
            i18n.SHIPPED)
        for queue in value:
            if queue.language is not None and queue.language not in languages:
                raise ValueError(f"queue {queue.name!r}: language "
                                 f"{_without_catalogue(queue.language)}")
        return value

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
