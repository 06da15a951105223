"""Reports against a fixture desk whose every figure was worked out by hand, on
both backends: 20 requests in two queues over one week, with known reply and
resolution times, a holiday, pauses (waiting on the customer, resolved until
reopened), breaches, escalations, a merge and a mail closed at once. The
report's clock is injected (`ReportQuery.now`); business-hours times are
measured by the gateway's sweep from the stored columns.

The desk: queue `general` under policy `standard` (first response 4 h,
resolution 16 h of calendar `office`: Monday to Friday 09:00-17:00 UTC, closed
on Wednesday 2026-03-04, the holiday); queue `billing` under no policy (the
built-in 24x7 calendar, no due times). The period is Monday 2026-03-02 to
Sunday 2026-03-08 (to 2026-03-09T00:00Z, exclusive); the clock says
2026-03-10T12:00Z, so targets due by the period's end are decided.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.pipeline.scheduler import Scheduler
from gateway.reports import measure
from gateway.rules_in_force import RulesHolder
from routing.sla import Calendar, OpenRange, SlaConfig
from routing.sla.calendar import DEFAULT_CALENDAR
from routing.sla.policy import Policy
from storage.models import events, requests
from storage.reports import ReportQuery, report
from tests.helpers import make_config

H = 3600
START = datetime(2026, 3, 2, tzinfo=UTC)
END = datetime(2026, 3, 9, tzinfo=UTC)
NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
NINE_TO_FIVE = (OpenRange(9 * 60, 17 * 60),)
OFFICE = Calendar(name="office", week=(NINE_TO_FIVE,) * 5 + ((), ()),
                  closed=frozenset({date(2026, 3, 4)}))
SLA = SlaConfig(calendars=(DEFAULT_CALENDAR, OFFICE), policies=(
    Policy(name="standard", first_response=timedelta(hours=4),
           resolution=timedelta(hours=16), calendar=OFFICE, queue=("general",)),))


def at(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def span(start: datetime, end: datetime) -> list[str]:
    return [start.isoformat(), end.isoformat()]


# ref: queue, created, first response, resolved, due times (first response,
# resolution) as the scheduler stores them, and the rest of the row. Times are
# 2026-03 UTC; Mon 2, Tue 3, Wed 4 (holiday), Thu 5, Fri 6, Sat 7, Sun 8.
DESK: dict[str, dict[str, Any]] = {
    # Before the period, never answered: open at its start (the backlog's
    # base); its resolution was due Tue 10:00 (Fri 27 10-17 7h + Mon 8h + 1h).
    "G0": dict(queue="general", created=at(27, 10, month=2), fr_due=at(27, 14, month=2),
               res_due=at(3, 10), status="open", breached=[at(3, 10)]),
    # Mon 09:00, answered 10:00, resolved 15:00: 1 h and 6 h, both clocks.
    "G1": dict(queue="general", created=at(2, 9), fr=at(2, 10), res=at(2, 15),
               fr_due=at(2, 13), res_due=at(3, 17), status="resolved", agent="agent:1"),
    # Mon 16:00, answered Tue 10:00 (wall 18 h; business Mon 1 h + Tue 1 h = 2 h),
    # resolved Thu 11:00 (wall 67 h; business 1 + 8 + 0 holiday + 2 = 11 h).
    "G2": dict(queue="general", created=at(2, 16), fr=at(3, 10), res=at(5, 11),
               fr_due=at(3, 12), res_due=at(5, 16), status="resolved", agent="agent:1"),
    # Tue 15:00, answered Thu 10:00 over the holiday (wall 43 h; business Tue 2 h
    # + Thu 1 h = 3 h, due Thu 11:00: met); unresolved, resolution due Fri 15:00.
    "G3": dict(queue="general", created=at(3, 15), fr=at(5, 10), fr_due=at(5, 11),
               res_due=at(6, 15), status="open", agent="agent:1",
               breached=[at(6, 15)]),
    # Mon 09:00, answered 11:00 and waiting on the customer until Tue 11:00,
    # resolved Tue 14:00: wall 29 h; business Mon 2 h + Tue 11-14 3 h = 5 h.
    "G4": dict(queue="general", created=at(2, 9), fr=at(2, 11), res=at(3, 14),
               fr_due=at(2, 13), res_due=at(5, 17), status="resolved", agent="agent:1",
               pauses=[span(at(2, 11), at(3, 11))]),
    # Mon 10:00, answered late Tue 12:00 (wall 26 h; business 7 + 3 = 10 h; due
    # Mon 14:00: breached and escalated then), resolved late Thu 12:00 (wall
    # 74 h; business 7 + 8 + 3 = 18 h; due Thu 10:00: breached then).
    "G5": dict(queue="general", created=at(2, 10), fr=at(3, 12), res=at(5, 12),
               fr_due=at(2, 14), res_due=at(5, 10), status="resolved", agent="agent:1",
               breached=[at(2, 14), at(5, 10)], escalated=[at(2, 14)]),
    # Tue 09:00, answered 09:30; resolved Tue 12:00, reopened Thu 10:00 (the time
    # resolved is a pause), resolved again Thu 13:00: wall 52 h; business 3 + 3
    # = 6 h. The sweep measured the first resolution (3 h): measured again.
    "G6": dict(queue="general", created=at(3, 9), fr=at(3, 9, 30), res=at(5, 13),
               fr_due=at(3, 13), res_due=at(6, 15), status="resolved", agent="agent:1",
               pauses=[span(at(3, 12), at(5, 10))], reopened=[at(5, 10)],
               measured=(3 * H, at(3, 12))),
    # Fri 14:00, unanswered: due Mon 9 10:00 and 10 14:00, after the period's end.
    "G7": dict(queue="general", created=at(6, 14), fr_due=at(9, 10), res_due=at(10, 14),
               status="new"),
    # Fri 10:00, answered 11:00 (1 h both); resolution due Tue 10 10:00.
    "G8": dict(queue="general", created=at(6, 10), fr=at(6, 11), fr_due=at(6, 14),
               res_due=at(10, 10), status="open", agent="agent:2"),
    # Sat 10:00, answered 12:00 and resolved Sun 10:00: wall 2 h and 24 h,
    # business 0 (the weekend); both met (due Mon 9 13:00, Tue 10 17:00).
    "G9": dict(queue="general", created=at(7, 10), fr=at(7, 12), res=at(8, 10),
               fr_due=at(9, 13), res_due=at(10, 17), status="resolved", agent="agent:2"),
    # Thu 09:00, never answered: first response missed at Thu 13:00 (breached,
    # escalated), resolution missed at Fri 17:00 (breached).
    "G10": dict(queue="general", created=at(5, 9), fr_due=at(5, 13), res_due=at(6, 17),
                status="open", breached=[at(5, 13), at(6, 17)], escalated=[at(5, 13)]),
    # Thu 14:00, answered 15:00 (1 h), resolved Fri 10:00 (wall 20 h; business
    # Thu 3 h + Fri 1 h = 4 h; due Mon 9 14:00: met Fri 10:00).
    "G11": dict(queue="general", created=at(5, 14), fr=at(5, 15), res=at(6, 10),
                fr_due=at(6, 10), res_due=at(9, 14), status="resolved", agent="agent:2"),
    # Wed 08:00, an auto-reply closed at once: no policy, never resolved, finished.
    "G12": dict(queue="general", created=at(4, 8), status="closed", policy=None),
    # billing: no policy, the 24x7 calendar (business = wall less pauses), no due times.
    "B1": dict(queue="billing", created=at(2, 8), fr=at(2, 9), res=at(2, 12),
               status="resolved", agent="agent:2"),  # 1 h, 4 h
    "B2": dict(queue="billing", created=at(2, 20), fr=at(3, 8), res=at(4, 20),
               status="resolved", agent="agent:2"),  # 12 h, 48 h
    # Wed 10:00, answered 10:30, waiting on the customer since 11:00 (still).
    "B3": dict(queue="billing", created=at(4, 10), fr=at(4, 10, 30), status="waiting",
               paused_at=at(4, 11), agent="token:7"),
    # Thu 09:00, answered 11:00 (2 h), waiting Thu 12:00 to Fri 12:00, resolved
    # Fri 14:00: wall 29 h, business 29 - 24 = 5 h.
    "B4": dict(queue="billing", created=at(5, 9), fr=at(5, 11), res=at(6, 14),
               status="resolved", pauses=[span(at(5, 12), at(6, 12))], agent="token:7"),
    "B5": dict(queue="billing", created=at(7, 9), status="new"),
    # Sun 23:00, answered Mon 9 01:00: after the period, not counted.
    "B6": dict(queue="billing", created=at(8, 23), fr=at(9, 1), status="open",
               agent="agent:2"),
    # Tue 12:00, merged into another at 13:00: finished, never resolved.
    "B7": dict(queue="billing", created=at(3, 12), updated=at(3, 13), status="merged"),
}


async def load_desk(engine: AsyncEngine) -> None:
    rows, timeline = [], []
    for n, (ref, r) in enumerate(DESK.items(), start=1):
        policy = r.get("policy", "standard" if r["queue"] == "general" else None)
        measured = r.get("measured", (None, None))
        rows.append({
            "id": n, "reference": ref, "status": r["status"], "queue": r["queue"],
            "channel": "smtp" if n % 2 else "api", "priority": "P2", "type": "incident",
            "component": None, "subject": ref, "custom_fields": {}, "tags": [],
            "escalation_level": len(r.get("escalated", [])), "version": 1,
            "created_at": r["created"], "updated_at": r.get("updated", r["created"]),
            "first_response_at": r.get("fr"), "resolved_at": r.get("res"),
            "sla_policy": policy, "first_response_due_at": r.get("fr_due"),
            "resolution_due_at": r.get("res_due"), "sla_pauses": r.get("pauses"),
            "sla_paused_at": r.get("paused_at"), "reopened_count": len(r.get("reopened", [])),
            "resolution_business_seconds": measured[0], "resolution_measured_for": measured[1],
        })
        if "agent" in r:
            timeline.append({"request_id": n, "kind": "replied", "actor": r["agent"],
                             "at": r["fr"], "data": {}})
            # A later reply by someone else: the first one is the responder.
            timeline.append({"request_id": n, "kind": "replied", "actor": "token:99",
                             "at": r["fr"] + timedelta(minutes=5), "data": {}})
        for kind, key in (("sla_breached", "breached"), ("escalated", "escalated"),
                          ("reopened", "reopened")):
            timeline += [{"request_id": n, "kind": kind, "actor": "scheduler", "at": when,
                          "data": {}} for when in r.get(key, [])]
    # G0's first response breached before the period: not counted.
    timeline.append({"request_id": 1, "kind": "sla_breached", "actor": "scheduler",
                     "at": at(27, 14, month=2), "data": {}})
    async with engine.begin() as conn:
        await conn.execute(insert(requests), rows)
        await conn.execute(insert(events), sorted(timeline, key=lambda e: e["at"]))


async def run(engine: AsyncEngine, grouping: str, **kw: Any) -> dict[str | None, dict[str, Any]]:
    await measure(engine, SLA)
    query = ReportQuery(start=START, end=END, grouping=grouping, now=kw.pop("now", NOW), **kw)
    return {row.pop("group"): row for row in await report(engine, query)}


def times(prefix: str, count: int, median: float, p90: float, mean: float) -> dict[str, Any]:
    """The four figures of a time; seconds to the millisecond, as reported."""

    def shown(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return {f"{prefix}_count": count, f"{prefix}_median_seconds": shown(median),
            f"{prefix}_p90_seconds": shown(p90), f"{prefix}_mean_seconds": shown(mean)}


# percentile_cont(p) of n sorted values: at position (n - 1) * p, interpolated.
GENERAL = {
    "created": 12,  # G1-G12 (G0 is older)
    "resolved": 7,  # G1 G2 G4 G5 G6 G9 G11
    "reopened": 1,  # G6
    "backlog": 5,  # G0 G3 G7 G8 G10 open at the end (G12 closed at once)
    # G6 0.5, G1 1, G8 1, G11 1, G4 2, G9 2, G2 18, G5 26, G3 43 (hours): median
    # the 5th, 2 h; p90 at 7.2: 26 + 0.2 * (43 - 26) = 29.4 h; mean 94.5 / 9 = 10.5 h.
    **times("first_response", 9, 2 * H, 29.4 * H, 10.5 * H),
    # G9 0, G6 0.5, G1 1, G8 1, G11 1, G2 2, G4 2, G3 3, G5 10: median 1 h; p90 3
    # + 0.2 * 7 = 4.4 h; mean 20.5 / 9 h = 8200 s.
    **times("first_response_business", 9, 1 * H, 4.4 * H, 8200.0),
    # G1 6, G11 20, G9 24, G4 29, G6 52, G2 67, G5 74: median 29 h; p90 at 5.4:
    # 67 + 0.4 * 7 = 69.8 h; mean 272 / 7 h = 139885.714 s.
    **times("resolution", 7, 29 * H, 69.8 * H, 139885.714),
    # G9 0, G11 4, G4 5, G1 6, G6 6, G2 11, G5 18: median 6 h; p90 11 + 0.4 * 7
    # = 13.8 h; mean 50 / 7 h = 25714.286 s.
    **times("resolution_business", 7, 6 * H, 13.8 * H, 25714.286),
    # Met: G1 G2 G3 G4 G6 G8 G9 G11; missed: G5 (late), G10 (none); G7 not due yet.
    "first_response_met": 8, "first_response_missed": 2, "first_response_sla_percent": 80.0,
    # Met: G1 G2 G4 G6 G9 G11; missed: G5 (late), G3 G10 G0 (due, unresolved).
    "resolution_met": 6, "resolution_missed": 4, "resolution_sla_percent": 60.0,
    "breaches": 6,  # G5 x2, G10 x2, G3, G0 (its earlier one is before the period)
    "escalations": 2,  # G5, G10
}
BILLING = {
    "created": 7, "resolved": 3, "reopened": 0,  # B1 B2 B4 resolved
    "backlog": 3,  # B3 B5 B6 (B7 merged)
    # B3 0.5, B1 1, B4 2, B2 12 (B6 answered after the period): median at 1.5:
    # 1.5 h; p90 at 2.7: 2 + 0.7 * 10 = 9 h; mean 15.5 / 4 = 3.875 h. No pause
    # before an answer, so business (24x7) = wall.
    **times("first_response", 4, 1.5 * H, 9 * H, 3.875 * H),
    **times("first_response_business", 4, 1.5 * H, 9 * H, 3.875 * H),
    # B1 4, B4 29, B2 48: median 29 h; p90 at 1.8: 29 + 0.8 * 19 = 44.2 h; mean 27 h.
    **times("resolution", 3, 29 * H, 44.2 * H, 27 * H),
    # B1 4, B4 5 (29 less its 24 h pause), B2 48: median 5 h; p90 5 + 0.8 * 43
    # = 39.4 h; mean 57 / 3 = 19 h.
    **times("resolution_business", 3, 5 * H, 39.4 * H, 19 * H),
    "first_response_met": 0, "first_response_missed": 0, "first_response_sla_percent": None,
    "resolution_met": 0, "resolution_missed": 0, "resolution_sla_percent": None,
    "breaches": 0, "escalations": 0,
}


async def test_reports__by_queue_every_figure_as_worked_by_hand(engine: AsyncEngine) -> None:
    await load_desk(engine)
    assert await run(engine, "queue") == {"billing": BILLING, "general": GENERAL}


def day(created: int, resolved: int, backlog: int, *, reopened: int = 0, breaches: int = 0,
        escalations: int = 0, fr: tuple[Any, ...] = (0, None, None, None),
        fr_business: tuple[Any, ...] | None = None, res: tuple[Any, ...] = (0, None, None, None),
        res_business: tuple[Any, ...] | None = None,
        fr_sla: tuple[int, int, float | None] = (0, 0, None),
        res_sla: tuple[int, int, float | None] = (0, 0, None)) -> dict[str, Any]:
    return {"created": created, "resolved": resolved, "reopened": reopened, "backlog": backlog,
            **times("first_response", *fr),
            **times("first_response_business", *(fr_business or fr)),
            **times("resolution", *res), **times("resolution_business", *(res_business or res)),
            "first_response_met": fr_sla[0], "first_response_missed": fr_sla[1],
            "first_response_sla_percent": fr_sla[2],
            "resolution_met": res_sla[0], "resolution_missed": res_sla[1],
            "resolution_sla_percent": res_sla[2],
            "breaches": breaches, "escalations": escalations}


# Backlog: G0 open at the start (1); each day adds its created and takes off its
# finished (resolved, closed at once, merged).
BY_DAY = {
    # Created G1 G2 G4 G5 B1 B2; finished G1 B1: 1 + 6 - 2 = 5. Answers G1 1, G4 2,
    # B1 1 h: median 1 h, p90 at 1.8: 1.8 h, mean 4/3 h. Resolved G1 6, B1 4 h:
    # median 5 h, p90 at 0.9: 5.8 h. G1 G4 answered in time, G5 missed at 14:00.
    "2026-03-02": day(6, 2, 5, breaches=1, escalations=1, fr=(3, H, 1.8 * H, 4800.0),
                      res=(2, 5 * H, 5.8 * H, 5 * H), fr_sla=(2, 1, 66.67),
                      res_sla=(1, 0, 100.0)),
    # Created G3 G6 B7; finished G4 B7: 5 + 3 - 2 = 6. Answers G6 0.5, B2 12, G2 18,
    # G5 26 h (business 0.5, 2, 10, 12): median 15 h (6 h), p90 at 2.7: 18 + 0.7
    # * 8 = 23.6 h (10 + 0.7 * 2 = 11.4 h), mean 14.125 h (6.125 h). Resolved G4
    # (29 h, 5 h). Met G2 G6 and G4; G0's resolution missed at 10:00.
    "2026-03-03": day(3, 1, 6, breaches=1, fr=(4, 15 * H, 23.6 * H, 14.125 * H),
                      fr_business=(4, 6 * H, 11.4 * H, 6.125 * H),
                      res=(1, 29 * H, 29 * H, 29 * H), res_business=(1, 5 * H, 5 * H, 5 * H),
                      fr_sla=(2, 0, 100.0), res_sla=(1, 1, 50.0)),
    # The holiday. Created G12 B3; finished G12 B2: 6. B3 answered in 0.5 h; B2
    # resolved in 48 h (24x7).
    "2026-03-04": day(2, 1, 6, fr=(1, 1800.0, 1800.0, 1800.0),
                      res=(1, 48 * H, 48 * H, 48 * H)),
    # Created G10 G11 B4; finished G2 G5 G6: 6. Answers G11 1, B4 2, G3 43 h
    # (business 1, 2, 3): median 2 h, p90 2 + 0.8 * 41 = 34.8 h (2.8 h), mean
    # 46/3 h (2 h). Resolved G6 52, G2 67, G5 74 h (6, 11, 18): median 67 h
    # (11 h), p90 67 + 0.8 * 7 = 72.6 h (16.6 h), mean 193/3 h (35/3 h). Answers
    # met G3 G11, missed G10; resolutions met G2 G6, missed G5.
    "2026-03-05": day(3, 3, 6, reopened=1, breaches=2, escalations=1,
                      fr=(3, 2 * H, 34.8 * H, 55200.0), fr_business=(3, 2 * H, 2.8 * H, 2 * H),
                      res=(3, 67 * H, 72.6 * H, 231600.0),
                      res_business=(3, 11 * H, 16.6 * H, 42000.0),
                      fr_sla=(2, 1, 66.67), res_sla=(2, 1, 66.67)),
    # Created G7 G8; finished G11 B4: 6. G8 answered in 1 h. Resolved G11 20 h,
    # B4 29 h (business 4, 5): median 24.5 h (4.5 h), p90 20 + 0.9 * 9 = 28.1 h
    # (4.9 h). G11 met; G3 (15:00) and G10 (17:00) missed.
    "2026-03-06": day(2, 2, 6, breaches=2, fr=(1, H, H, H),
                      res=(2, 24.5 * H, 28.1 * H, 24.5 * H),
                      res_business=(2, 4.5 * H, 4.9 * H, 4.5 * H),
                      fr_sla=(1, 0, 100.0), res_sla=(1, 2, 33.33)),
    # Created G9 B5: 8. G9 answered in 2 h, none of it business time.
    "2026-03-07": day(2, 0, 8, fr=(1, 2 * H, 2 * H, 2 * H), fr_business=(1, 0.0, 0.0, 0.0),
                      fr_sla=(1, 0, 100.0)),
    # Created B6; finished G9 (24 h, business 0): 8.
    "2026-03-08": day(1, 1, 8, res=(1, 24 * H, 24 * H, 24 * H),
                      res_business=(1, 0.0, 0.0, 0.0), res_sla=(1, 0, 100.0)),
}


async def test_reports__by_day_every_bucket_as_worked_by_hand(engine: AsyncEngine) -> None:
    await load_desk(engine)
    assert await run(engine, "day") == BY_DAY


async def test_reports__by_week_adds_up_the_days(engine: AsyncEngine) -> None:
    """One ISO week (Monday 2 to Sunday 8): the days' counts summed, the
    backlog at its end, the percentages over the whole week."""
    await load_desk(engine)
    [(week, row)] = (await run(engine, "week")).items()
    assert week == "2026-03-02"
    assert {k: row[k] for k in ("created", "resolved", "reopened", "backlog", "breaches",
                                "escalations", "first_response_count",
                                "first_response_median_seconds", "resolution_sla_percent")} == {
        "created": 19, "resolved": 10, "reopened": 1, "backlog": 8, "breaches": 6,
        "escalations": 2, "first_response_count": 13,
        # 0.5 0.5 1 1 1 1 2 2 2 12 18 26 43 h: the 7th, 2 h.
        "first_response_median_seconds": 2 * H,
        "resolution_sla_percent": 60.0}  # 6 met, 4 missed (billing has no targets)


async def test_reports__by_agent_the_first_responder(engine: AsyncEngine) -> None:
    await load_desk(engine)
    found = await run(engine, "agent")
    assert {k: (v["created"], v["first_response_count"], v["backlog"])
            for k, v in found.items()} == {
        "agent:1": (6, 6, 1),  # G1-G6; G3 open
        "agent:2": (6, 5, 2),  # G8 G9 G11 B1 B2 B6 (answered after the period); G8 B6 open
        "token:7": (2, 2, 1),  # B3 B4; B3 waiting
        None: (5, 0, 4)}  # G7 G10 G12 B5 B7 (G0 older); G0 G7 G10 B5 open
    # Timeline counts follow the request's first responder too: G5's.
    assert (found["agent:1"]["breaches"], found[None]["breaches"]) == (3, 3)


async def test_reports__the_clock_decides_what_is_due(engine: AsyncEngine) -> None:
    """On Friday 16:00, G10's resolution (due 17:00) is not decided yet."""
    await load_desk(engine)
    general = (await run(engine, "queue", now=at(6, 16)))["general"]
    assert (general["resolution_met"], general["resolution_missed"]) == (6, 3)
    assert general["resolution_sla_percent"] == 66.67


async def test_reports__scoped_to_queues(engine: AsyncEngine) -> None:
    await load_desk(engine)
    assert await run(engine, "queue", queues=["billing"]) == {"billing": BILLING}
    assert await run(engine, "queue", queues=[]) == {}


async def test_reports__measures_each_resolution_once(engine: AsyncEngine) -> None:
    """The sweep stores business seconds for the resolution it measured, and
    measures a reopened request's new resolution; a second sweep finds nothing."""
    await load_desk(engine)
    # Every answered or resolved request: G1-G6 G8 G9 G11, B1-B4 B6.
    assert await measure(engine, SLA) == 14
    assert await measure(engine, SLA) == 0
    async with engine.connect() as conn:
        g6 = (await conn.execute(select(
            requests.c.resolution_business_seconds, requests.c.resolution_measured_for,
            requests.c.first_response_business_seconds)
            .where(requests.c.reference == "G6"))).one()
    assert g6[0] == 6 * H and g6[1].replace(tzinfo=UTC) == at(5, 13) and g6[2] == 0.5 * H


@pytest.mark.parametrize("grouping", ["priority", "type", "channel", "component"])
async def test_reports__every_field_grouping_counts_every_request(
        engine: AsyncEngine, grouping: str) -> None:
    await load_desk(engine)
    found = await run(engine, grouping)
    assert sum(row["created"] for row in found.values()) == 19
    assert sum(row["backlog"] for row in found.values()) == 8
    assert sum(row["breaches"] for row in found.values()) == 6


async def test_reports__the_scheduler_measures_as_it_goes(engine: AsyncEngine,
                                                          db_url: str) -> None:
    await load_desk(engine)
    scheduler = Scheduler(engine=engine, rules=RulesHolder.load(make_config(db_url)),
                          clock=lambda: NOW)
    await scheduler.tick()
    assert await measure(engine, SLA) == 0  # nothing left to measure
