"""Large buffers go back to the system when they are freed (glibc).

glibc serves an allocation of at least M_MMAP_THRESHOLD with its own mapping,
returned to the system on free; but it raises that threshold to the size of
each such block freed (up to 32 MiB), so the next 25 MB mail is carved from a
heap arena instead and stays there. With one arena per thread (aiosqlite runs
each connection in a thread of its own), the retained blocks add up: 20
mails of 25 MB left the gateway 676 MiB larger on SQLite, 301 MiB with a fixed
1 MiB threshold (tests/adversarial/test_large_mail_memory.py). Fixing the
threshold turns the adjustment off; each large buffer costs a mapping and its
page faults, a few milliseconds per 25 MB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("intake.pipeline")

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
LARGE_BUFFER_BYTES = 1024 * 1024

_done = False


def return_large_buffers(threshold: int = LARGE_BUFFER_BYTES) -> bool:
    """Fix glibc's mmap threshold (once per process); False where there is no glibc."""
    global _done  # noqa: PLW0603 - a process-wide setting, made once
    if _done:
        return True
    name = ctypes.util.find_library("c")
    mallopt = getattr(ctypes.CDLL(name), "mallopt", None) if name else None
    if mallopt is None or not mallopt(M_MMAP_THRESHOLD, threshold):
        log.debug("mallopt(M_MMAP_THRESHOLD) not available: large buffers may be kept")
        return False
    _done = True
    return True
