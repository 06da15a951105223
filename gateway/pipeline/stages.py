"""A batch's requests built a stage at a time, not an item at a time.

Each builder (gateway/pipeline/building.py) yields between its stages: reading
the item (parse, addresses), identifying its language, deciding (classification,
rules), the acknowledgement, fitting. Here every item of the batch finishes one
stage before any item starts the next. Item after item, each stage found its
code and data (email-validator's tables, the language model's automaton and
rows, the rules, the templates) pushed out of the CPU's caches by the other
stages; a stage run for item after item finds them still there. Building 2,048
API requests of `benchmarks/pipeline_cpu.py` in batches of 128 took 380-400 µs
each item by item, 285-295 in three stages (reading, deciding, the rest) and
240-255 with the language a stage of its own.

An item's failure is its own: the exception its build raised is its result,
and the other items go on. A builder may also be a plain function returning
the request (a test's stand-in): it is then built whole in the first stage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence

from gateway.pipeline.building import Steps
from storage.records import NewRequest

# What a builder gives when called: its steps, or the request at once.
Started = Steps | NewRequest
Outcome = NewRequest | Exception


def finish(steps: Started) -> NewRequest:
    """One item's request, all its stages at once."""
    if isinstance(steps, NewRequest):
        return steps  # built at once
    try:
        while True:
            next(steps)
    except StopIteration as done:
        built: NewRequest = done.value
        return built


def build_all(starts: Sequence[Callable[[], Started]]) -> list[Outcome]:
    """Each item's request, or the exception its build raised, in order."""
    outcomes: list[Outcome | None] = [None] * len(starts)
    for _ in _steps(starts, outcomes):
        pass
    return _done(outcomes)


class Turns:
    """Gives the event loop a turn once `slice_seconds` have passed since its
    last one, so a process's connections are served during a long batch."""

    def __init__(self, slice_seconds: float) -> None:
        self._slice = slice_seconds
        self._last = time.perf_counter()

    async def take(self) -> None:
        if time.perf_counter() - self._last >= self._slice:
            await asyncio.sleep(0)
            self._last = time.perf_counter()


async def build_all_yielding(starts: Sequence[Callable[[], Started]], turns: Turns
                             ) -> list[Outcome]:
    """As `build_all`, giving the event loop its `turns` on the way."""
    outcomes: list[Outcome | None] = [None] * len(starts)
    for _ in _steps(starts, outcomes):
        await turns.take()
    return _done(outcomes)


def _steps(starts: Sequence[Callable[[], Started]], outcomes: list[Outcome | None]
           ) -> Iterator[None]:
    """One stage of one item per iteration, every item a stage before the next
    stage; each item's outcome written at its place in `outcomes`."""
    running: list[tuple[int, Steps]] = []
    for place, start in enumerate(starts):
        try:
            started = start()
            if isinstance(started, NewRequest):
                outcomes[place] = started  # built at once
            else:
                next(started)
                running.append((place, started))
        except StopIteration as done:
            outcomes[place] = done.value
        except Exception as exc:  # noqa: BLE001 - the item's own failure, its outcome
            outcomes[place] = exc
        yield
    while running:
        still: list[tuple[int, Steps]] = []
        for place, steps in running:
            try:
                next(steps)
            except StopIteration as done:
                outcomes[place] = done.value
            except Exception as exc:  # noqa: BLE001 - the item's own failure, its outcome
                outcomes[place] = exc
            else:
                still.append((place, steps))
            yield
        running = still


def _done(outcomes: list[Outcome | None]) -> list[Outcome]:
    # Every place was written: each item ended in a return or an exception.
    assert all(outcome is not None for outcome in outcomes)
    return outcomes  # type: ignore[return-value]
