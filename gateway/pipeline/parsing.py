"""Parsing large mail off the event loop, in a few processes of our own.

The full parse is pure Python: about 10 ms of CPU per MB (0.25 s for a 25 MB
mail) and three to four times the message's size in passing memory. On the
event loop that stalls every connection of the process for as long; in a
thread it would still hold the GIL most of the time. So a message of at least
`offload_bytes` is parsed by a child process (gateway/pipeline/parse_child.py:
the parser alone, fed over a pipe), and the second core works meanwhile;
smaller ones, which parse in a few milliseconds, are parsed in place, where
the round trip would cost more than it saves.

At most `processes` parses run at once; the rest wait their turn (a bounded
queue: with batches bounded by bytes, storage/processing.py, what waits is
bounded too). A child gives its memory back after each parse and is replaced
after `PARSES_PER_CHILD`. A parse that outlives `timeout` has its child killed
and fails as the item's own fault (retried, then dead-lettered), like a parse
that kills its child: a memory bomb ends a child, not the gateway.

Not multiprocessing's pool: its children import the parent's main module (the
whole gateway) and cannot be killed one task at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import sys
from pathlib import Path

from gateway.pipeline.parse_child import LENGTH, PARSED
from parsers.mail import parse_email
from parsers.records import ParsedEmail

log = logging.getLogger("intake.pipeline")

# A child is replaced after this many parses (a fresh process, about 0.1 s).
PARSES_PER_CHILD = 500
# The directory holding the `gateway` package, for the child's imports.
SOURCE_ROOT = str(Path(__file__).resolve().parents[2])


async def start_child(module: str) -> asyncio.subprocess.Process:
    """`python -m module` with pipes for its input and output (our frames)."""
    path = os.pathsep.join(filter(None, [SOURCE_ROOT, os.environ.get("PYTHONPATH")]))
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", module,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": path})


async def end_child(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    with contextlib.suppress(Exception):
        await process.wait()


class ParseFailed(Exception):
    """The parse of one message did not finish: it took too long, or killed its
    process. A fault of the item (its attempt counts), not of the database."""


class _Child:
    """One parsing process and how many parses it has done."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.parses = 0

    async def parse(self, raw: bytes) -> ParsedEmail:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(LENGTH.pack(len(raw)))
        stdin.write(raw)
        await stdin.drain()
        status = await stdout.readexactly(1)
        answer = await stdout.readexactly(LENGTH.unpack(await stdout.readexactly(LENGTH.size))[0])
        self.parses += 1
        if status != PARSED:
            raise ParseFailed(answer.decode(errors="replace"))
        parsed = pickle.loads(answer)  # noqa: S301 - written by our own child process
        assert isinstance(parsed, ParsedEmail)
        return parsed

    async def end(self) -> None:
        await end_child(self.process)


class MailParser:
    """`await parse(raw)`: the parsed email, from a child process when it is large."""

    def __init__(self, *, processes: int, offload_bytes: int, timeout: float) -> None:
        """`processes = 0` parses large messages in a thread instead (one at a time)."""
        self._processes = processes
        self._offload_bytes = offload_bytes
        self._timeout = timeout
        self._slots = asyncio.Semaphore(max(processes, 1))
        self._idle: list[_Child] = []

    async def parse(self, raw: bytes) -> ParsedEmail:
        if len(raw) < self._offload_bytes:
            return parse_email(raw)
        async with self._slots:
            if self._processes == 0:
                return await asyncio.wait_for(asyncio.to_thread(parse_email, raw),
                                              self._timeout)
            child = self._idle.pop() if self._idle else await self._start()
            try:
                parsed = await asyncio.wait_for(child.parse(raw), self._timeout)
            except TimeoutError:
                log.error("parsing a %d-byte message took over %.0f s; its process is ended",
                          len(raw), self._timeout)
                await child.end()
                raise ParseFailed(f"parsing took over {self._timeout:.0f} s") from None
            except ParseFailed:
                self._idle.append(child)
                raise
            except (OSError, EOFError, asyncio.IncompleteReadError) as exc:
                log.error("the process parsing a %d-byte message died: %s", len(raw), exc)
                await child.end()
                raise ParseFailed("the parsing process died") from None
            except BaseException:  # cancelled mid-message: the child's state is unknown
                await asyncio.shield(child.end())
                raise
            if child.parses >= PARSES_PER_CHILD:
                await child.end()
            else:
                self._idle.append(child)
            return parsed

    async def _start(self) -> _Child:
        return _Child(await start_child("gateway.pipeline.parse_child"))

    async def close(self) -> None:
        """End the idle children (a later parse starts new ones)."""
        idle, self._idle = self._idle, []
        for child in idle:
            await child.end()
