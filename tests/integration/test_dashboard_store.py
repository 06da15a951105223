"""The dashboard's own queries (storage/dashboard.py) on both backends, against
the reports' hand-worked fixture desk (tests/integration/test_reports.py: its
period Mon 2026-03-02 to Sun 03-08, its clock Tue 03-10 12:00 UTC)."""

from __future__ import annotations

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import dashboard
from storage.dashboard import (
    Compliance,
    compliance_by_queue_and_priority,
    current_breaches,
    first_response_histogram,
    session_key,
)
from storage.models import install_keys, requests
from tests.integration.test_reports import END, NOW, START, at, load_desk


async def test_dashboard_store__breaches_open_now_longest_overdue_first(
        engine: AsyncEngine) -> None:
    await load_desk(engine)
    found, total = await current_breaches(engine, now=NOW, queues=None, limit=100)
    # Open (not resolved, closed or merged), target not met, due before now:
    # G0 both (due Feb 27 14:00, Mar 3 10:00), G10 both (Thu 13:00, Fri 17:00),
    # G3's resolution (Fri 15:00), G7's first response (Mon 9 10:00), G8's
    # resolution (Tue 10 10:00). G7's resolution (due Tue 10 14:00) is not yet.
    assert [(b.reference, b.target, b.due_at) for b in found] == [
        ("G0", "first_response", at(27, 14, month=2)), ("G0", "resolution", at(3, 10)),
        ("G10", "first_response", at(5, 13)), ("G3", "resolution", at(6, 15)),
        ("G10", "resolution", at(6, 17)), ("G7", "first_response", at(9, 10)),
        ("G8", "resolution", at(10, 10))]
    assert total == 7
    assert (found[0].queue, found[0].subject, found[0].status) == ("general", "G0", "open")
    first, total = await current_breaches(engine, now=NOW, queues=None, limit=2)
    assert ([b.reference for b in first], total) == (["G0", "G0"], 7)
    assert await current_breaches(engine, now=NOW, queues=["billing"], limit=100) == ([], 0)


async def test_dashboard_store__a_paused_clock_breaches_only_if_overdue_when_paused(
        engine: AsyncEngine) -> None:
    await load_desk(engine)
    b3 = requests.c.reference == "B3"  # waiting on the customer since Wed 11:00
    async with engine.begin() as conn:
        await conn.execute(update(requests).where(b3).values(resolution_due_at=at(4, 12)))
    assert await current_breaches(engine, now=NOW, queues=["billing"], limit=10) == ([], 0)
    async with engine.begin() as conn:
        await conn.execute(update(requests).where(b3).values(resolution_due_at=at(4, 10, 30)))
    found, total = await current_breaches(engine, now=NOW, queues=["billing"], limit=10)
    assert ([(b.reference, b.target) for b in found], total) == ([("B3", "resolution")], 1)


async def test_dashboard_store__first_response_histogram(engine: AsyncEngine) -> None:
    await load_desk(engine)
    # First answered in the period, wall-clock from creation: 30 min G6, B3;
    # 1 h (the bin's bound, included) G1, G8, G11, B1; 2 h G4, G9, B4; 12 h B2,
    # 18 h G2; 26 h G5, 43 h G3. B6 was answered after the period.
    assert await first_response_histogram(engine, start=START, end=END, queues=None) == [
        0, 6, 3, 0, 2, 2, 0]
    assert await first_response_histogram(engine, start=START, end=END,
                                          queues=["billing"]) == [0, 2, 1, 0, 1, 0, 0]


async def test_dashboard_store__compliance_per_queue_and_priority(
        engine: AsyncEngine) -> None:
    await load_desk(engine)
    async with engine.begin() as conn:
        await conn.execute(update(requests).where(requests.c.reference.in_(["G5", "G10"]))
                           .values(priority="P1"))
        await conn.execute(update(requests).where(requests.c.reference == "G9")
                           .values(priority=None))
    # Decided in the period (as of its end): first responses of G1-G6, G8-G11
    # (G5, G10 missed), resolutions of G0-G6, G9-G11 (G0, G3, G5, G10 missed);
    # billing has no targets. P1: G5 and G10, all missed; no priority: G9, both
    # met; P2 the other seven: resolutions met by G1, G2, G4, G6, G11 (5 of 7).
    assert await compliance_by_queue_and_priority(
        engine, start=START, end=END, now=NOW, queues=None) == [
        Compliance(queue="general", priority="P1", first_response_decided=2,
                   first_response_met=0, resolution_decided=2, resolution_met=0),
        Compliance(queue="general", priority="P2", first_response_decided=7,
                   first_response_met=7, resolution_decided=7, resolution_met=5),
        Compliance(queue="general", priority=None, first_response_decided=1,
                   first_response_met=1, resolution_decided=1, resolution_met=1)]
    assert await compliance_by_queue_and_priority(
        engine, start=START, end=END, now=NOW, queues=["billing"]) == []


async def test_dashboard_store__session_key_is_made_once_and_kept(
        engine: AsyncEngine) -> None:
    key = await session_key(engine)
    assert len(key) == 32
    assert await session_key(engine) == key
    # Another process (a fresh cache) reads the same key from the database.
    dashboard._keys.clear()
    assert await session_key(engine) == key
    async with engine.begin() as conn:
        await conn.execute(delete(install_keys).where(install_keys.c.name == "dashboard"))
    dashboard._keys.clear()
    assert await session_key(engine) != key
