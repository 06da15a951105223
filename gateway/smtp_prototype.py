"""aiosmtpd's SMTP.__init__, once per listener instead of once per connection.

For every new connection, aiosmtpd's SMTP.__init__ reads every member of the
session and of the handler (`inspect.getmembers`, twice), `dir()`s both,
takes the EHLO hook's signature and formats a log line naming the AUTH
mechanisms. With one message per connection (most senders) that was about a
tenth of the gateway's CPU per mail (py-spy under `smtp-source`). What it
finds is the same for every session of a listener, so it is found once: the
first session runs the real __init__, and its state, taken right then, is the
start of every later session with the same class, handler, settings and loop.
Each later one gets its own stream reader (asyncio's StreamReaderProtocol
state, made as aiosmtpd makes it) and its own methods bound to itself.
tests/unit/test_smtp_prototype.py checks that a session made so holds what
one made by aiosmtpd holds.
"""

from __future__ import annotations

import asyncio
import collections
import types
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from aiosmtpd.smtp import SMTP, _AuthMechAttr

# (class, handler, loop, settings) -> what SMTP.__init__ left in a session.
# Bounded: a reload makes a new TLS context, and with it a new key.
_KEPT = 16
_STATES: OrderedDict[tuple[Hashable, ...], dict[str, Any]] = OrderedDict()
# Filled by asyncio.StreamReaderProtocol.__init__: never shared between sessions.
_STREAM_KEYS: frozenset[str] | None = None


def _stream_keys(loop: asyncio.AbstractEventLoop) -> frozenset[str]:
    global _STREAM_KEYS
    if _STREAM_KEYS is None:
        # With a callback, as a server's protocol is made: it then also keeps
        # a strong reference to its reader.
        probe = asyncio.StreamReaderProtocol(asyncio.StreamReader(loop=loop),
                                             client_connected_cb=lambda *_: None, loop=loop)
        _STREAM_KEYS = frozenset(vars(probe))
    return _STREAM_KEYS


def init_session(session: SMTP, handler: Any, settings: dict[str, Any]) -> None:
    """What `SMTP.__init__(session, handler, **settings)` does, from a kept
    state when a session like this one was made before in this process."""
    loop = asyncio.get_running_loop()
    try:
        key: tuple[Hashable, ...] = (type(session), id(handler), loop,
                                     *sorted(settings.items()))
        state = _STATES.get(key)
    except TypeError:  # a setting that cannot be a key: made the slow way
        key, state = (), None
    if state is None or state["event_handler"] is not handler:
        SMTP.__init__(session, handler, **settings)
        if key:
            _keep(key, session, loop)
    else:
        _STATES.move_to_end(key)
        vars(session).update(state)
        # The reader and the protocol's own state, as SMTP.__init__ makes them.
        asyncio.StreamReaderProtocol.__init__(
            session, asyncio.StreamReader(loop=session.loop, limit=session.line_length_limit),
            client_connected_cb=session._cb_client_connected, loop=session.loop)
        # The session's own methods are bound to it, not to the first session.
        session._smtp_methods = {name: types.MethodType(method.__func__, session)
                                 for name, method in state["_smtp_methods"].items()}
        session._auth_methods = {
            name: _AuthMechAttr(types.MethodType(attr.method.__func__, session)
                                if attr.is_builtin else attr.method, attr.is_builtin)
            for name, attr in state["_auth_methods"].items()}
        session._handle_hooks = dict(state["_handle_hooks"])  # the handler's: shared
    # aiosmtpd keeps the commands' size limits in one dict of the class, which
    # every session's EHLO raises and every new session clears: each session
    # gets its own, so one sender's EHLO never widens another's limit.
    session.command_size_limits = collections.defaultdict(  # type: ignore[misc]
        lambda: SMTP.command_size_limit)


def _keep(key: tuple[Hashable, ...], session: SMTP, loop: asyncio.AbstractEventLoop) -> None:
    """The state SMTP.__init__ left, taken before anything changes it (copies
    of the dicts a session changes, such as the commands wrapped for TLS)."""
    stream = _stream_keys(loop)
    state = {name: value for name, value in vars(session).items() if name not in stream}
    for name in ("_smtp_methods", "_auth_methods", "_handle_hooks"):
        state[name] = dict(state[name])
    _STATES[key] = state
    while len(_STATES) > _KEPT:
        _STATES.popitem(last=False)
