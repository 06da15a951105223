"""A session started from a kept state holds what aiosmtpd's own __init__ gives."""

from __future__ import annotations

import asyncio
import types
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session, _AuthMechAttr

from gateway.smtp_prototype import _STATES, init_session


class _Handler:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 OK"

    async def handle_EHLO(self, server: SMTP, hostname: str, session: Session,
                          envelope: Envelope, responses: list[str]) -> list[str]:
        return responses

    async def auth_CUSTOM(self, server: SMTP, args: list[str]) -> None:
        return None


class _Session(SMTP):
    async def smtp_XTRA(self, arg: str) -> None:
        await self.push("250 extra")


SETTINGS: dict[str, Any] = {"hostname": "intake.example", "data_size_limit": 1000,
                            "enable_SMTPUTF8": True, "timeout": 30.0}


def _made(handler: Any, how: str) -> SMTP:
    session = _Session.__new__(_Session)
    if how == "aiosmtpd":
        SMTP.__init__(session, handler, **SETTINGS)
    else:
        init_session(session, handler, dict(SETTINGS))
    return session


def _same(name: str, kept: Any, reference: Any, owner: SMTP) -> None:
    """`kept` (of `owner`) stands for what aiosmtpd made (`reference`)."""
    if isinstance(reference, types.MethodType):
        assert isinstance(kept, types.MethodType), name
        assert kept.__func__ is reference.__func__, name
        # Bound to its own session where aiosmtpd's is bound to its session;
        # to the same object (the handler) otherwise.
        expected = owner if isinstance(reference.__self__, SMTP) else reference.__self__
        assert kept.__self__ is expected, name
    elif isinstance(reference, _AuthMechAttr):
        assert kept.is_builtin == reference.is_builtin, name
        _same(name, kept.method, reference.method, owner)
    elif isinstance(reference, dict):
        assert set(kept) == set(reference), name
        for key in reference:
            _same(f"{name}[{key}]", kept[key], reference[key], owner)
    elif isinstance(reference, (asyncio.StreamReader, asyncio.Future)):
        assert type(kept) is type(reference), name
    elif name == "_stream_reader_wr":  # a weak reference to its own reader
        assert type(kept) is type(reference), name
    else:
        assert kept == reference, name


async def test_kept_state__a_later_session_holds_what_aiosmtpd_gives_it() -> None:
    handler = _Handler()
    first, later = _made(handler, "kept"), _made(handler, "kept")
    reference = _made(handler, "aiosmtpd")
    # Ours alone: a size-limit dict per session instead of one shared by the class.
    assert set(vars(later)) == set(vars(reference)) | {"command_size_limits"}
    for name, value in vars(reference).items():
        _same(name, vars(later)[name], value, later)
    # Nothing of the connection is shared with the session the state was taken from.
    assert later._stream_reader_wr() is not first._stream_reader_wr()  # type: ignore[attr-defined]
    assert later._closed is not first._closed  # type: ignore[attr-defined]
    assert later._strong_reader is not first._strong_reader  # type: ignore[attr-defined]
    # The kept state holds nothing of the first session's connection.

    assert not any(isinstance(value, asyncio.StreamReader | asyncio.Future)
                   for state in _STATES.values() for value in state.values())
    assert later._smtp_methods["XTRA"].__self__ is later
    assert later._smtp_methods["NOOP"].__self__ is later
    assert later._auth_methods["LOGIN"].method.__self__ is later
    assert later._auth_methods["CUSTOM"].method.__self__ is handler
    assert later._handle_hooks["DATA"].__self__ is handler
    assert later._handle_hooks is not first._handle_hooks


async def test_kept_state__what_one_session_changes_stays_its_own() -> None:
    """A session's wrapped commands (require_tls does so) and its EHLO's wider
    MAIL limit are not the next session's."""
    handler = _Handler()
    first = _made(handler, "kept")
    first._smtp_methods["MAIL"] = lambda arg: None
    first.command_size_limits["MAIL"] += 36
    later = _made(handler, "kept")
    assert isinstance(later._smtp_methods["MAIL"], types.MethodType)
    assert later._smtp_methods["MAIL"].__func__ is SMTP.smtp_MAIL
    assert later.command_size_limits["MAIL"] == SMTP.command_size_limit
    assert later.command_size_limits is not first.command_size_limits
    assert SMTP.command_size_limits is not later.command_size_limits


async def test_kept_state__another_handler_or_setting_is_made_afresh() -> None:
    one, other = _Handler(), _Handler()
    assert _made(one, "kept")._handle_hooks["DATA"].__self__ is one
    assert _made(other, "kept")._handle_hooks["DATA"].__self__ is other
    session = _Session.__new__(_Session)
    init_session(session, one, dict(SETTINGS, hostname="other.example"))
    assert session.hostname == "other.example"
    assert _made(one, "kept").hostname == "intake.example"
