"""`intake mailboxes test NAME`: log in and look at the folders, fetch nothing.

What a new mailbox's set-up goes wrong on (the host, TLS, the password or the
OAuth token, a folder's name, the folder to move to) is found here, before
the first fetch, without changing anything on the server or in the database
(a rotated OAuth refresh token is the one thing kept, as a fetch would).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config.sections import MailboxSection
from gateway.mailbox.client import ImapError, Session
from gateway.mailbox.oauth import TokenError, Tokens


@dataclass(slots=True)
class CheckResult:
    ok: bool = True
    lines: list[str] = field(default_factory=list)  # what was found, one a line

    def good(self, text: str) -> None:
        self.lines.append(f"ok    {text}")

    def bad(self, text: str) -> None:
        self.ok = False
        self.lines.append(f"FAIL  {text}")


async def check_mailbox(engine: AsyncEngine, section: MailboxSection,
                        env: Mapping[str, str] | None = None) -> CheckResult:
    env = os.environ if env is None else env
    result = CheckResult()
    host, port = section.address
    password = token = None
    try:
        if section.oauth2 is not None:
            token = await Tokens(engine, section, env=env).access_token()
            result.good(f"an access token from {section.oauth2.token_url}")
        else:
            password = env.get(section.password_env or "")
            if not password:
                result.bad(f"the environment variable {section.password_env} is not set")
                return result
        session = await Session.open(section, password=password, token=token)
    except (ImapError, TokenError, OSError, TimeoutError) as exc:
        result.bad(f"{host}:{port} ({section.tls}) as {section.user}: "
                   f"{exc or type(exc).__name__}")
        return result
    try:
        result.good(f"logged in to {host}:{port} ({section.tls}) as {section.user}")
        for folder in section.folders:
            try:
                selected = await session.select(folder)
            except ImapError as exc:
                result.bad(f"folder {folder!r}: {exc}")
                continue
            result.good(f"folder {folder!r}: {selected.exists} messages, "
                        f"UIDVALIDITY {selected.uidvalidity}")
        if section.after == "move" and section.move_to:
            names = await session.folders()
            if section.move_to in names:
                result.good(f"folder {section.move_to!r} to move mail to exists")
            else:
                result.good(f"folder {section.move_to!r} to move mail to will be created "
                            "at the first fetch")
        for capability in ("IDLE", "MOVE", "UIDPLUS"):
            if capability not in session.capabilities:
                result.lines.append(f"note  the server does not offer {capability}")
    except (ImapError, OSError, TimeoutError) as exc:
        result.bad(str(exc) or type(exc).__name__)
    finally:
        await session.close()
    return result
