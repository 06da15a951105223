"""In-process wake-ups for agents waiting on a queue.

Each queue has a future that is resolved, and replaced, when work arrives for
it (from this process's pipeline or a notification from another process).
"""

from __future__ import annotations

import asyncio
import contextlib


class WorkSignals:
    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[None]] = {}

    def signal(self, queue: str) -> None:
        future = self._waiting.pop(queue, None)
        if future is not None and not future.done():
            future.set_result(None)

    async def wait(self, queue: str, seconds: float) -> bool:
        """True if work arrived for `queue` within `seconds`."""
        future = self._waiting.get(queue)
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            self._waiting[queue] = future
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(future), seconds)
            return True
        return False
