"""gateway/pipeline/stages.py: a batch built a stage at a time, each item's
failure its own; and the real builders give what building whole gives."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from gateway.pipeline.building import Steps
from gateway.pipeline.stages import Started, Turns, build_all, build_all_yielding, finish
from gateway.pipeline.worker import build_request, build_steps
from storage.processing import ClaimedItem
from storage.records import NewMessage, NewRequest
from tests.helpers import make_config, normal

STAGES = 4


def request(name: str) -> NewRequest:
    return NewRequest(queue=name, message=NewMessage(subject=name, text="", new_text="",
                                                     from_address=None, from_name=None),
                      requester_email=None, requester_name=None)


def staged(name: str, trace: list[tuple[str, int]], fails_at: int | None = None
           ) -> Callable[[], Started]:
    def steps() -> Steps:
        for stage in range(STAGES):
            trace.append((name, stage))
            if stage == fails_at:
                raise ValueError(f"{name} fails")
            if stage < STAGES - 1:
                yield
        return request(name)
    return steps


def test_build_all__every_item_ends_a_stage_before_any_starts_the_next() -> None:
    trace: list[tuple[str, int]] = []
    names = ["a", "b", "c"]
    outcomes = build_all([staged(name, trace) for name in names])
    assert [o.queue for o in outcomes if isinstance(o, NewRequest)] == names
    assert trace == [(name, stage) for stage in range(STAGES) for name in names]


def test_build_all__a_failure_is_that_items_outcome_alone() -> None:
    trace: list[tuple[str, int]] = []

    def raises_at_once() -> Started:
        raise RuntimeError("no steps at all")

    outcomes = build_all([staged("a", trace), staged("b", trace, fails_at=1),
                          raises_at_once, lambda: request("whole"), staged("c", trace)])
    assert [type(o).__name__ for o in outcomes] == [
        "NewRequest", "ValueError", "RuntimeError", "NewRequest", "NewRequest"]
    assert [o.queue for o in outcomes if isinstance(o, NewRequest)] == ["a", "whole", "c"]
    # b stopped at its failing stage; the others went through every stage.
    assert ("b", 2) not in trace and ("c", STAGES - 1) in trace


def test_finish__runs_all_stages_or_takes_a_request_as_it_is() -> None:
    trace: list[tuple[str, int]] = []
    assert finish(staged("a", trace)()).queue == "a"
    assert trace == [("a", stage) for stage in range(STAGES)]
    whole = request("whole")
    assert finish(whole) is whole
    with pytest.raises(ValueError, match="b fails"):
        finish(staged("b", trace, fails_at=2)())


async def test_build_all_yielding__the_loop_runs_between_slices() -> None:
    ticks = 0

    async def ticking() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    trace: list[tuple[str, int]] = []
    seen: list[int] = []

    def watched(name: str) -> Callable[[], Started]:
        inner = staged(name, trace)

        def steps() -> Steps:
            seen.append(ticks)
            return (yield from inner())
        return steps

    ticker = asyncio.create_task(ticking())
    await asyncio.sleep(0)
    try:
        # A slice of 0: a turn after every step, so the ticker ran between items.
        outcomes = await build_all_yielding([watched(n) for n in "abcd"], Turns(0.0))
        assert len(set(seen)) == 4
        # A slice longer than the whole build: no turn in between.
        seen.clear()
        await build_all_yielding([watched(n) for n in "abcd"], Turns(3600.0))
        assert len(set(seen)) == 1
    finally:
        ticker.cancel()
    assert [o.queue for o in outcomes if isinstance(o, NewRequest)] == list("abcd")


API_BODY = (b'{"requester": {"email": "ann@example.com", "name": "Ann"},'
            b' "subject": "Invoice export fails", "body": "Since this morning the'
            b' invoice export fails with a timeout after thirty seconds."}')
MAIL = (b"From: Bob <bob@example.org>\r\nTo: support@localhost\r\n"
        b"Subject: Printer on fire\r\nMessage-ID: <m1@example.org>\r\n\r\n"
        b"Hello, the printer on the third floor is on fire again. Please send help.\r\n")


def test_build_all__real_builders_give_what_building_whole_gives() -> None:
    config = make_config("sqlite+aiosqlite:///unused.db")
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    items = [ClaimedItem(id=n + 1, channel=channel, raw=raw, meta={}, attempts=1,
                         received_at=now)
             for n, (channel, raw) in enumerate([("api", API_BODY), ("smtp", MAIL),
                                                 ("api", b"{not json"), ("smtp", MAIL)])]
    staged_outcomes = build_all([lambda item=item: build_steps(  # type: ignore[misc]
        item, config, config.rules, config.sla) for item in items])
    for item, outcome in zip(items, staged_outcomes, strict=True):
        if item.raw == b"{not json":
            assert isinstance(outcome, Exception)
            with pytest.raises(type(outcome)):
                build_request(item, config, config.rules, config.sla)
            continue
        whole = build_request(item, config, config.rules, config.sla)
        assert isinstance(outcome, NewRequest)
        # Alike but for what is drawn at random per build.
        assert outcome.status_token != whole.status_token
        assert normal(outcome) == normal(whole)
