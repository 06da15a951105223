"""Building requests in a child process, beside the process that stores them.

Parsing, classifying, routing, fitting and acknowledging an item is about two
thirds of the pipeline's CPU, and needs no database. A gateway that runs as
one process (the SQLite default: one writer) would leave the second core to
the client and the database; with `[pipeline] build_process` the batch is
built in a child (gateway/pipeline/build_child.py) while this process accepts
mail and stores the previous batch.

The child is a help, never a dependency: while it starts, after it died, for
a config it cannot make again (`Config.recipe`: a changed copy has none), and
for any item whose build raised there, the item is built in this process as
before. A batch that outlives `timeout` ends the child. A dead child is
started again after a pause that doubles with each death in a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import time
from collections.abc import Sequence
from typing import Any

from gateway.config import Config
from gateway.config.model import Recipe
from gateway.pipeline.parse_child import LENGTH
from gateway.pipeline.parsing import end_child, start_child
from parsers.auth_results import Verdicts
from storage.processing import ClaimedItem
from storage.records import NewRequest

log = logging.getLogger("intake.pipeline")

# Pauses before a dead child is started again: doubled per death in a row.
FIRST_PAUSE = 1.0
LONGEST_PAUSE = 60.0
# How long a batch waits for the child while another batch is in it; then it
# is built in the gateway process. An ordinary batch takes well under a second.
TURN_WAIT = 5.0
# Making the config and loading the language model: seconds, not minutes.
START_TIMEOUT = 120.0


class _Child:
    """One build process and the recipe of the config it holds."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.recipe: tuple[Recipe, ...] | None = None

    async def ask(self, request: tuple[Any, ...]) -> tuple[Any, ...]:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        data = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
        stdin.write(LENGTH.pack(len(data)))
        stdin.write(data)
        await stdin.drain()
        size = LENGTH.unpack(await stdout.readexactly(LENGTH.size))[0]
        answer = pickle.loads(await stdout.readexactly(size))  # noqa: S301 - our child's
        assert isinstance(answer, tuple)
        return answer

    async def end(self) -> None:
        await end_child(self.process)


class Builder:
    """`await build(items, config, verified)`: each item's request as the child
    built it, or None where this process is to build it."""

    def __init__(self, *, timeout: float) -> None:
        self._timeout = timeout
        self._child: _Child | None = None
        self._starting: asyncio.Task[None] | None = None
        self._turn = asyncio.Lock()  # one batch in the child at a time
        self._deaths = 0
        self._not_before = 0.0
        self._refused: tuple[Recipe, ...] | None = None
        self.batches = 0  # built in the child (for tests)

    async def build(self, items: Sequence[ClaimedItem], config: Config,
                    verified: dict[int, Verdicts]) -> list[NewRequest | None]:
        nothing: list[NewRequest | None] = [None] * len(items)
        if not items or not config.recipe or config.recipe == self._refused:
            return nothing
        try:
            # A batch the child is slow on must not hold up the other workers'
            # batches longer than a few ordinary ones take: they build here.
            async with asyncio.timeout(TURN_WAIT):
                await self._turn.acquire()
        except TimeoutError:
            return nothing
        try:
            return await self._build_in_turn(items, config, verified, nothing)
        finally:
            self._turn.release()

    async def _build_in_turn(self, items: Sequence[ClaimedItem], config: Config,
                             verified: dict[int, Verdicts], nothing: list[NewRequest | None]
                             ) -> list[NewRequest | None]:
        child = self._ready(config.recipe)
        if child is None:
            return nothing
        try:
            async with asyncio.timeout(self._timeout):
                if child.recipe != config.recipe:
                    answer = await child.ask(("config", config.recipe))
                    if answer[0] != "ready":
                        log.warning("the build process cannot make this config: %s",
                                    answer[-1])
                        self._refused, child.recipe = config.recipe, None
                        return nothing
                    child.recipe = config.recipe
                answer = await child.ask(("build", [(item, verified.get(item.id))
                                                    for item in items]))
        except TimeoutError:
            log.error("building %d items took over %.0f s; the build process is ended",
                      len(items), self._timeout)
            await self._lost(child)
            return nothing
        except Exception as exc:  # noqa: BLE001 - died, or a frame it could not take
            log.error("the build process failed: %s: %s", type(exc).__name__, exc)
            await self._lost(child)
            return nothing
        except BaseException:  # cancelled mid-batch: the child's state is unknown
            await asyncio.shield(self._lost(child))
            raise
        built = answer[1] if answer[0] == "built" else nothing
        if len(built) != len(items):
            return nothing
        self.batches += 1
        self._deaths = 0
        return list(built)

    def prepare(self, config: Config) -> None:
        """Start the child now (in the background), not at the first batch: it
        takes about two seconds to make the config and load the language model."""
        if config.recipe and config.recipe != self._refused:
            self._ready(config.recipe)

    def _ready(self, recipe: tuple[Recipe, ...]) -> _Child | None:
        """The child, once ready; starts one (in the background) when due."""
        if self._child is not None and self._child.process.returncode is None:
            return self._child
        if self._child is not None:  # it exited between two batches
            log.error("the build process exited with %s", self._child.process.returncode)
            self._child, self._deaths = None, self._deaths + 1
            self._not_before = time.monotonic() + self._pause()
        if self._starting is None and time.monotonic() >= self._not_before:
            self._starting = asyncio.create_task(self._start(recipe))
        return None

    def _pause(self) -> float:
        return float(min(LONGEST_PAUSE, FIRST_PAUSE * 2 ** max(self._deaths - 1, 0)))

    async def _start(self, recipe: tuple[Recipe, ...]) -> None:
        """Start a child and have it make the config; it takes batches once ready."""
        child: _Child | None = None
        try:
            child = _Child(await start_child("gateway.pipeline.build_child"))
            async with asyncio.timeout(START_TIMEOUT):
                answer = await child.ask(("config", recipe))
            if answer[0] != "ready":
                log.warning("the build process cannot make this config: %s", answer[-1])
                self._refused = recipe
                await child.end()
                return
            child.recipe = recipe
            self._child = child
            log.info("build process ready: pid %d", child.process.pid)
        except BaseException as exc:
            if child is not None:
                await asyncio.shield(child.end())
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.error("the build process could not start: %s", exc or type(exc).__name__)
            self._deaths += 1
            self._not_before = time.monotonic() + self._pause()
        finally:
            self._starting = None

    async def _lost(self, child: _Child) -> None:
        await child.end()
        if self._child is child:
            self._child = None
        self._deaths += 1
        self._not_before = time.monotonic() + self._pause()

    async def close(self) -> None:
        """End the child (a later batch starts another)."""
        starting, self._starting = self._starting, None
        if starting is not None:
            starting.cancel()
            with contextlib.suppress(BaseException):
                await starting
        child, self._child = self._child, None
        if child is not None:
            await child.end()
