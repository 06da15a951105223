"""The one exception tree.

Whether a failure may pass is a property of the error (`temporary`), so each
edge maps it in one place: SMTP to 451 or a permanent 5xx, HTTP to 503 or a
4xx, the CLI to an exit code. An exception outside this tree is a bug: the
edges answer it as a fault of ours (451, 500) and log it.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Root of the gateway's own errors."""

    temporary: bool = False


class ConfigError(GatewayError, ValueError):
    """The configuration is wrong; the message names the file, the key or rule, and what."""


class Unavailable(GatewayError):
    """A fault of ours that may pass (database down, pool exhausted, a timeout)."""

    temporary = True


class Conflict(GatewayError):
    """The input clashes with what is stored, e.g. a key reused with another body."""
