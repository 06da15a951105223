"""Form tokens spent in this process: each fill-time token takes one post.

A token is spent when its post passes the token check and given back if the
post is then refused for another reason (the person fixes a field and sends
the same page again); one that led to a stored post stays spent until it
expires. The record is bounded: past `MAX_SPENT` the oldest spent token is
dropped and every token issued up to its issue time is refused from then on
(the person reloads the page), so a dropped record never lets a replay in.

Per process and in memory (no schema change in this wave): a token may be
spent once in each process behind a balancer and again after a restart,
within its validity. A table of spent digests, inserted in the same commit as
the post, would make it once for all processes and restarts.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

# 32 bytes of digest and a float each, with the dict's overhead about 150 bytes:
# 100,000 is 15 MB at most, more accepted posts than a form takes in a token's life.
MAX_SPENT = 100_000


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class SpentTokens:
    def __init__(self, *, max_spent: int = MAX_SPENT) -> None:
        self.max_spent = max_spent
        # digest -> (expires at, issued at), in the order they were spent
        self._spent: OrderedDict[bytes, tuple[float, float]] = OrderedDict()
        self._floor = float("-inf")  # tokens issued up to this are refused

    def __len__(self) -> int:
        return len(self._spent)

    def spend(self, token: str, *, issued: float, expires: float, now: float) -> bool:
        """True if `token` was not spent yet (it is now); False for a replay."""
        self._expire(now)
        key = _digest(token)
        if issued <= self._floor or key in self._spent:
            return False
        self._spent[key] = (expires, issued)
        while len(self._spent) > self.max_spent:
            _, (_, dropped) = self._spent.popitem(last=False)
            self._floor = max(self._floor, dropped)
        return True

    def give_back(self, token: str) -> None:
        """Unspend a token whose post was refused for something else."""
        self._spent.pop(_digest(token), None)

    def _expire(self, now: float) -> None:
        # Oldest spent first; a token past its age is refused by the check anyway.
        while self._spent:
            key, (expires, _) = next(iter(self._spent.items()))
            if expires > now:
                return
            del self._spent[key]
