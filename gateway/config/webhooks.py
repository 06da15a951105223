"""`[[webhook]]` tables: who receives signed deliveries of which events.

Read by the config loader; the outbox (`gateway.delivery.webhooks`) delivers
to the `Subscription`s made here. Every problem of every table is reported,
each as `webhook[N].KEY: what`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from yarl import URL

from domain.errors import ConfigError

# What receivers can subscribe to; a typo in a subscription stops start-up.
EVENTS = frozenset({"created", "routed", "escalated", "status_changed", "replied"})
ALL_EVENTS = "*"

DEFAULT_TIMEOUT_SECONDS = 10.0
# An attempt holds an outbox worker slot for at most this long.
MAX_TIMEOUT_SECONDS = 60.0

_KEYS = frozenset({"name", "url", "events", "secret", "secret_env", "timeout",
                   "timeout_seconds", "allow_private"})


@dataclass(frozen=True)
class Subscription:
    name: str
    url: str
    events: tuple[str, ...]
    secret: str = field(repr=False)  # kept out of logs
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    allow_private: bool = False

    def wants(self, event: str) -> bool:
        return ALL_EVENTS in self.events or event in self.events


def read_webhooks(data: object, env: Mapping[str, str]
                  ) -> tuple[tuple[Subscription, ...], list[str]]:
    """The subscriptions of `[[webhook]]` tables, and every problem with them."""
    if isinstance(data, Mapping):
        data = [data]  # one [webhook] table
    if not isinstance(data, Sequence) or isinstance(data, str | bytes):
        return (), ["webhook: must be an array of tables ([[webhook]])"]
    errors: list[str] = []
    subscriptions: list[Subscription] = []
    names: set[str] = set()
    for index, table in enumerate(data):
        where = f"webhook[{index}]"
        if not isinstance(table, Mapping):
            errors.append(f"{where}: must be a table")
            continue
        problems: dict[str, str] = {}
        subscription = _parse_one(table, env, problems)
        if subscription is not None and subscription.name in names:
            problems["name"] = f"duplicate name {subscription.name!r}"
        errors += [f"{where}.{key}: {why}" for key, why in problems.items()]
        if subscription is not None and not problems:
            names.add(subscription.name)
            subscriptions.append(subscription)
    return tuple(subscriptions), errors


def parse_subscriptions(data: Sequence[Mapping[str, Any]],
                        env: Mapping[str, str] | None = None) -> list[Subscription]:
    """Validate `[[webhook]]` tables; the ConfigError names every bad key, one a line."""
    subscriptions, problems = read_webhooks(data, os.environ if env is None else env)
    if problems:
        raise ConfigError("\n".join(problems))
    return list(subscriptions)


def _parse_one(table: Mapping[str, Any], env: Mapping[str, str],
               problems: dict[str, str]) -> Subscription | None:
    for key in sorted(set(table) - _KEYS):
        problems[key] = "unknown key"
    name = table.get("name")
    if not isinstance(name, str) or not name.strip():
        problems["name"] = "required, a non-empty string"
    url = table.get("url")
    if not isinstance(url, str):
        problems["url"] = "required, a string"
    elif (why := url_problem(url)) is not None:
        problems["url"] = why
    events = _parse_events(table.get("events"), problems)
    secret = _parse_secret(table, env, problems)
    timeout = _parse_timeout(table, problems)
    allow_private = table.get("allow_private", False)
    if not isinstance(allow_private, bool):
        problems["allow_private"] = "must be true or false"
    if problems:
        return None
    assert isinstance(name, str) and isinstance(url, str) and secret is not None
    return Subscription(name=name, url=url, events=events, secret=secret,
                        timeout_seconds=timeout, allow_private=allow_private)


def _parse_events(value: Any, problems: dict[str, str]) -> tuple[str, ...]:
    if (not isinstance(value, list) or not value
            or not all(isinstance(event, str) for event in value)):
        problems["events"] = f'required, a non-empty list of event names or "{ALL_EVENTS}"'
        return ()
    unknown = sorted(set(value) - EVENTS - {ALL_EVENTS})
    if unknown:
        problems["events"] = (f"unknown event {unknown[0]!r} (known: "
                              f"{', '.join(sorted(EVENTS))} or \"{ALL_EVENTS}\")")
    return (ALL_EVENTS,) if ALL_EVENTS in value else tuple(dict.fromkeys(value))


def _parse_secret(table: Mapping[str, Any], env: Mapping[str, str],
                  problems: dict[str, str]) -> str | None:
    if "secret" in table and "secret_env" in table:
        problems["secret"] = "give secret or secret_env, not both"
        return None
    if "secret_env" in table:
        variable = table["secret_env"]
        if not isinstance(variable, str) or not variable:
            problems["secret_env"] = "must name an environment variable"
            return None
        if not env.get(variable):
            problems["secret_env"] = f"environment variable {variable} is not set"
            return None
        return env[variable]
    secret = table.get("secret")
    if not isinstance(secret, str) or not secret:
        problems["secret"] = "required, a non-empty string (or secret_env)"
        return None
    return secret


def _parse_timeout(table: Mapping[str, Any], problems: dict[str, str]) -> float:
    # "timeout" reads naturally in TOML; "timeout_seconds" matches the other sections.
    if "timeout" in table and "timeout_seconds" in table:
        problems["timeout"] = "give timeout or timeout_seconds, not both"
        return DEFAULT_TIMEOUT_SECONDS
    key = "timeout" if "timeout" in table else "timeout_seconds"
    value = table.get(key, DEFAULT_TIMEOUT_SECONDS)
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not 0 < value <= MAX_TIMEOUT_SECONDS):
        problems[key] = f"must be a number of seconds above 0 and at most {MAX_TIMEOUT_SECONDS:g}"
        return DEFAULT_TIMEOUT_SECONDS
    return float(value)


def url_problem(url: str) -> str | None:
    """Why this webhook URL is unusable, or None (checked when read and when delivering)."""
    try:
        parsed = URL(url)
        port = parsed.port
    except (ValueError, TypeError):
        return "not a valid URL"
    if parsed.scheme not in ("http", "https"):
        return "must be http or https"
    host = parsed.raw_host
    if not host or port is None or any(c.isspace() for c in host):
        return "must be an absolute URL with a host"
    return None
