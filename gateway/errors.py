"""The gateway's exception tree.

Whether a failure is temporary is a property of the error (`temporary`), so the
SMTP and HTTP edges map it to 451/503 or to a permanent answer in one place
each. Storage errors (storage/errors.py) carry the same attribute.
"""

from __future__ import annotations

from storage.errors import STORAGE_FAULTS


class GatewayError(Exception):
    """Root of the gateway's own errors."""

    temporary: bool = False


class ConfigError(GatewayError):
    """The configuration is wrong; the message names the file, key and problem."""


def is_temporary(exc: BaseException) -> bool:
    """A fault of ours that may pass: answer "try again later" (451, 503)."""
    return bool(getattr(exc, "temporary", False)) or isinstance(exc, STORAGE_FAULTS)
