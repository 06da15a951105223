"""Message data a listener holds while messages arrive, bounded by configuration.

aiosmtpd keeps a message's DATA in memory until its final dot: its lines as a
list, then joined, then handed to us. Twenty 25 MB mails arriving at once held
about 1.3 GiB before one of them was stored. So each listener has a budget of
bytes in flight (`smtp.data_in_flight_bytes`): a session whose next packet
takes the listener past it stops being read (TCP holds the rest at the
sender's side) until messages ahead of it are stored. Nothing is refused and
no deadline of the client's runs while it waits.

The session that entered DATA first is never held, so one message always
moves and each one stored makes room: there is no deadlock, and what is held
is at most the budget plus one message and a packet per waiting session.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable


class DataBudget:
    """Bytes of DATA received and not yet stored, per session, against a limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.peak = 0  # the most held at once, for tests and metrics
        self.holds = 0  # how often a session was held back
        # In the order the sessions entered DATA: the first is never held.
        self._sessions: OrderedDict[Hashable, int] = OrderedDict()
        # Sessions held back, in the order they were, with how to let them go on.
        self._held_back: OrderedDict[Hashable, Callable[[], None]] = OrderedDict()

    def add(self, session: Hashable, size: int) -> bool:
        """Count `size` bytes of `session`'s message; False if it must wait now."""
        self._sessions[session] = self._sessions.get(session, 0) + size
        self.held += size
        self.peak = max(self.peak, self.held)
        return self.held <= self.limit or next(iter(self._sessions)) == session

    def hold(self, session: Hashable, resume: Callable[[], None]) -> None:
        """`session` waits; `resume` is called once there is room for it."""
        self.holds += 1
        self._held_back[session] = resume

    def release(self, session: Hashable) -> None:
        """`session`'s message is stored, refused or gone: its bytes are free."""
        self.held -= self._sessions.pop(session, 0)
        self._held_back.pop(session, None)
        first = next(iter(self._sessions), None)
        if first in self._held_back:
            self._held_back.pop(first)()
        while self._held_back and self.held < self.limit:
            _, resume = self._held_back.popitem(last=False)
            resume()
