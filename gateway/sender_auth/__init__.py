"""Sender authentication for mail received directly (a listener's
`sender_auth = "verify"`): SPF, DKIM, ARC and DMARC. Interface only, for now."""

from __future__ import annotations

from gateway.config.sections import SenderAuthSection
from parsers.auth_results import Verdicts


class Verifier:
    """One per pipeline process: its resolver's cache is shared by the workers."""

    def __init__(self, settings: SenderAuthSection) -> None:
        self._settings = settings

    async def verify(self, raw: bytes, *, ip: str | None, mail_from: str | None,
                     helo: str | None) -> Verdicts:
        """The verdicts for one message; never raises (a fault is temperror)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release the resolver's sockets."""
