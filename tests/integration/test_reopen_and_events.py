"""Reopening finished requests, the events subscribers are told, an agent's
answer threading on a person's message, and quarantine holding the clocks.
On both backends, through the pipeline and the storage actions."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from jsonschema import Draft202012Validator
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.lifecycle import EventKind, Outcome, Status
from gateway.config import Config
from gateway.delivery.outbound import agent_reply
from gateway.http.openapi import document
from gateway.pipeline.scheduler import Scheduler
from gateway.pipeline.worker import Pipeline
from gateway.rules_in_force import RulesHolder
from storage import actions, queries
from storage.engine import utcnow
from storage.inbox import NewItem, accept_many
from storage.models import events, messages, outbox, requests, sla_marks
from storage.processing import claim_items
from tests.helpers import AppClient, auth, count_rows, delivery_report, make_config

AGENT = "token:1"


def mail(message_id: str, *, parent: str | None = None, sender: str = "ann@example.com",
         subject: str = "Printer on fire", extra: str = "") -> bytes:
    threading = f"In-Reply-To: <{parent}>\r\nReferences: <{parent}>\r\n" if parent else ""
    return (f"From: Ann <{sender}>\r\nTo: support@localhost\r\nSubject: {subject}\r\n"
            f"Message-ID: <{message_id}>\r\n{threading}{extra}\r\nIt is on fire.\r\n").encode()


async def store(engine: AsyncEngine, config: Config, *raws: bytes,
                one_batch: bool = False, announced: list[str] | None = None) -> list[str]:
    """Accept `raws` and process them (each alone, or all in one batch); their
    requests' references, in order. `announced`: the queues agents are told
    have work."""
    ids = await accept_many(engine, [NewItem("smtp", raw, {"rcpt_tos": ["support@localhost"]})
                                     for raw in raws])
    pipe = Pipeline(engine=engine, config=config,
                    on_new_work=announced.append if announced is not None else None)
    items = await claim_items(engine, limit=50, lease_seconds=30)
    if one_batch:
        await pipe.process_batch(items)
    else:
        for item in items:
            await pipe.process(item)
    async with engine.connect() as conn:
        rows = (await conn.execute(
            select(messages.c.inbox_item_id, requests.c.reference)
            .join(requests, requests.c.id == messages.c.request_id)
            .where(messages.c.inbox_item_id.in_(ids)))).all()
    by_item = dict(rows)
    return [by_item[item_id] for item_id in ids]


async def request_row(engine: AsyncEngine, reference: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(
            select(requests).where(requests.c.reference == reference))).one()


async def told(engine: AsyncEngine, reference: str) -> list[dict[str, Any]]:
    """The events subscribers are told about a request (outbox event rows)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.payload).where(outbox.c.kind == "event")
                                   .order_by(outbox.c.id))).scalars().all()
    return [p for p in rows if p["reference"] == reference]


def documented(payload: dict[str, Any]) -> list[str]:
    """What is wrong with an event as subscribers get it (an outbox event row's
    payload and the delivery id the worker adds), by the OpenAPI document."""
    schemas = document("http://127.0.0.1")
    body = payload | {"delivery": "1"}
    check = Draft202012Validator({"$ref": f"#/components/schemas/Webhook"
                                  f"{''.join(p.capitalize() for p in body['event'].split('_'))}",
                                  "components": schemas["components"]})
    return [error.message for error in check.iter_errors(body)]


async def timeline(engine: AsyncEngine, reference: str) -> list[str]:
    row = await request_row(engine, reference)
    async with engine.connect() as conn:
        return list((await conn.execute(select(events.c.kind).where(
            events.c.request_id == row.id).order_by(events.c.id))).scalars())


async def resolve(engine: AsyncEngine, reference: str, *, days_ago: float = 0) -> None:
    done = await actions.update_fields(engine, reference, None, {"status": "resolved"}, AGENT)
    assert done.outcome == Outcome.OK
    if days_ago:
        async with engine.begin() as conn:
            await conn.execute(update(requests).where(requests.c.reference == reference)
                               .values(resolved_at=utcnow() - timedelta(days=days_ago)))


# A subscriber to every event: the pipeline records only events someone takes.
EVERYTHING = [{"name": "all", "url": "https://all.example.com/hook", "events": ["*"],
               "secret": "s" * 32}]


def with_windows(db_url: str, general: int | None = None, **sections: Any) -> Config:
    queue: dict[str, Any] = {"name": "general"}
    if general is not None:
        queue["reopen_days"] = general
    return make_config(db_url, queue=[queue, {"name": "billing"}],
                       **{"webhook": EVERYTHING, **sections})


# --- reopening ------------------------------------------------------------------


async def test_reopen__reply_within_window_reopens_counts_and_tells(
        engine: AsyncEngine, db_url: str) -> None:
    config = with_windows(db_url)  # the default window: 14 days
    [ref] = await store(engine, config, mail("r1@example.com"))
    await resolve(engine, ref, days_ago=13)
    announced: list[str] = []
    [landed] = await store(engine, config, mail("r2@example.com", parent="r1@example.com"),
                           announced=announced)
    assert landed == ref
    assert announced == ["general"]  # agents waiting on its queue are woken
    row = await request_row(engine, ref)
    assert (row.status, row.reopened_count, row.resolved_at) == (Status.REOPENED, 1, None)
    kinds = await timeline(engine, ref)
    assert kinds[-3:] == [EventKind.MESSAGE_RECEIVED, EventKind.STATUS_CHANGED,
                          EventKind.REOPENED]
    sent = [(p["event"], p["data"].get("status")) for p in await told(engine, ref)]
    assert sent[-3:] == [("message_received", None), ("status_changed", "reopened"),
                         ("reopened", None)]
    for payload in await told(engine, ref):  # every event names the requester
        assert payload["requester"] == {"email": "ann@example.com", "name": "Ann"}
        assert documented(payload) == [], payload
    shown = await queries.get_request(engine, ref)
    assert shown is not None and shown["reopened_count"] == 1


async def test_reopen__reply_after_window_starts_a_linked_request(
        engine: AsyncEngine, db_url: str) -> None:
    config = with_windows(db_url)
    [old] = await store(engine, config, mail("l1@example.com"))
    await resolve(engine, old, days_ago=15)
    [new] = await store(engine, config, mail("l2@example.com", parent="l1@example.com"))
    assert new != old
    assert (await request_row(engine, old)).status == Status.RESOLVED
    assert (await request_row(engine, new)).status == Status.NEW
    old_shown, new_shown = (await queries.get_request(engine, old),
                            await queries.get_request(engine, new))
    assert old_shown is not None and new_shown is not None
    assert (old_shown["linked_from"], old_shown["follow_ups"]) == (None, [new])
    assert (new_shown["linked_from"], new_shown["follow_ups"]) == (old, [])
    assert EventKind.LINKED_FROM in await timeline(engine, new)
    assert (await timeline(engine, old))[-1] == EventKind.FOLLOWED_UP
    created = [p for p in await told(engine, new) if p["event"] == "created"]
    assert created[0]["data"]["linked_from"] == old
    # The new request is acknowledged as any new one is.
    assert await count_rows(engine, messages, messages.c.direction == "out") == 2


async def test_events__only_events_a_subscriber_takes_are_recorded_for_fan_out(
        engine: AsyncEngine, db_url: str) -> None:
    nobody = make_config(db_url)
    [quiet] = await store(engine, nobody, mail("q1@example.com"))
    [quiet_reply] = await store(engine, nobody, mail("q2@example.com", parent="q1@example.com"))
    assert quiet_reply == quiet
    assert await told(engine, quiet) == []
    # The request's own timeline is whole either way.
    assert EventKind.MESSAGE_RECEIVED in await timeline(engine, quiet)
    created_only = make_config(db_url, webhook=[{**EVERYTHING[0], "events": ["created"]}])
    [ref] = await store(engine, created_only, mail("c1@example.com"))
    await store(engine, created_only, mail("c2@example.com", parent="c1@example.com"))
    assert [p["event"] for p in await told(engine, ref)] == ["created"]
    # A queue that notifies its agents of new requests takes `created` too.
    notifying = make_config(db_url, queue=[{"name": "general", "notify_on": ["new_request"]},
                                           {"name": "billing"}])
    [noticed] = await store(engine, notifying, mail("n1@example.com"))
    assert [p["event"] for p in await told(engine, noticed)] == ["created"]


async def test_reopen__window_zero_never_reopens(engine: AsyncEngine, db_url: str) -> None:
    config = with_windows(db_url, general=0)
    [old] = await store(engine, config, mail("z1@example.com"))
    await resolve(engine, old)  # a minute ago: still, never reopened
    [new] = await store(engine, config, mail("z2@example.com", parent="z1@example.com"))
    assert new != old and (await request_row(engine, old)).reopened_count == 0
    assert (await request_row(engine, new)).linked_from_id == (await request_row(engine, old)).id


async def test_reopen__clocks_resume_where_resolution_stopped_them(
        engine: AsyncEngine, db_url: str) -> None:
    """Worked an hour, resolved 13 days ago, reopened now: its 8h resolution
    target has 7h left, not breached by the days it stood resolved."""
    config = with_windows(db_url, sla=[{"name": "standard", "resolution": "8h"}])
    [ref] = await store(engine, config, mail("c1@example.com"))
    await resolve(engine, ref)
    resolved_at = utcnow() - timedelta(days=13)
    async with engine.begin() as conn:
        await conn.execute(update(requests).where(requests.c.reference == ref).values(
            created_at=resolved_at - timedelta(hours=1), resolved_at=resolved_at))
    await store(engine, config, mail("c2@example.com", parent="c1@example.com"))
    row = await request_row(engine, ref)
    assert row.status == Status.REOPENED
    [[start, end]] = row.sla_pauses
    assert abs(datetime.fromisoformat(start) - resolved_at) < timedelta(seconds=1)
    assert await Scheduler(engine=engine, rules=RulesHolder.load(config)).tick() == 0
    shown = await queries.get_request(engine, ref, whole=False)
    assert shown is not None
    left = shown["resolution_due_at"] - utcnow()
    assert timedelta(hours=6, minutes=50) < left <= timedelta(hours=7)


async def test_reopen__automatic_mail_never_reopens(engine: AsyncEngine, db_url: str) -> None:
    config = with_windows(db_url)
    [ref] = await store(engine, config, mail("a1@example.com"))
    await resolve(engine, ref)
    [ooo] = await store(engine, config, mail("a2@example.com", parent="a1@example.com",
                                             extra="Auto-Submitted: auto-replied\r\n"))
    assert ooo == ref  # joins the request, changes nothing
    row = await request_row(engine, ref)
    assert (row.status, row.reopened_count) == (Status.RESOLVED, 0)
    # ... even past the window: no new request for an out-of-office either.
    await resolve(engine, ref, days_ago=30)
    [late] = await store(engine, config, mail("a3@example.com", parent="a1@example.com",
                                              extra="Auto-Submitted: auto-replied\r\n"))
    assert late == ref and await count_rows(engine, requests) == 1
    received = [p for p in await told(engine, ref) if p["event"] == "message_received"]
    assert [p["data"]["automatic"] for p in received] == [True, True]


async def test_reopen__two_replies_in_one_batch_reopen_once(
        engine: AsyncEngine, db_url: str) -> None:
    config = with_windows(db_url)
    [ref] = await store(engine, config, mail("b1@example.com"))
    await resolve(engine, ref)
    await store(engine, config, mail("b2@example.com", parent="b1@example.com"),
                mail("b3@example.com", parent="b1@example.com"), one_batch=True)
    row = await request_row(engine, ref)
    assert (row.status, row.reopened_count) == (Status.REOPENED, 1)
    assert (await timeline(engine, ref)).count(EventKind.REOPENED) == 1


async def test_merge__into_finished_request_reopens_within_window_links_after(
        engine: AsyncEngine, db_url: str) -> None:
    config = with_windows(db_url)
    recent, old, dup1, dup2 = await store(
        engine, config, mail("m1@example.com"), mail("m2@example.com", subject="Other"),
        mail("m3@example.com", subject="Dup"), mail("m4@example.com", subject="Dup again"))
    await resolve(engine, recent, days_ago=2)
    await resolve(engine, old, days_ago=20)
    windows = {q.name: q.reopen_days for q in config.queue}
    assert await actions.merge(engine, dup1, recent, AGENT, reopen_days=windows) == Outcome.OK
    row = await request_row(engine, recent)
    assert (row.status, row.reopened_count) == (Status.REOPENED, 1)
    assert [p["event"] for p in await told(engine, recent)][-2:] == ["status_changed",
                                                                    "reopened"]
    assert [p["event"] for p in await told(engine, dup1)][-2:] == ["merged", "status_changed"]
    # Past the window: not buried in the old request, linked to it instead.
    assert await actions.merge(engine, dup2, old, AGENT, reopen_days=windows) == Outcome.LINKED
    source, target = await request_row(engine, dup2), await request_row(engine, old)
    assert (source.status, source.merged_into_id, source.linked_from_id) == (
        Status.NEW, None, target.id)
    assert (target.status, target.reopened_count) == (Status.RESOLVED, 0)


# --- events ---------------------------------------------------------------------


def dsn(original_id: str) -> bytes:
    return delivery_report(original_id, report_id="bounce-9@mx.example.net")


async def test_events__note_status_by_reply_and_bounce_are_told(
        engine: AsyncEngine, db_url: str) -> None:
    config = with_windows(db_url)
    [ref] = await store(engine, config, mail("e1@example.com"))
    await actions.add_event(engine, ref, EventKind.NOTE, AGENT, {"body": "call her"})
    request = await queries.get_request(engine, ref)
    assert request is not None
    answer = agent_reply(config, request, "Please send the model number.")
    done = await actions.add_reply(engine, ref, answer, AGENT, status=Status.WAITING)
    assert done.outcome == Outcome.OK
    [bounced] = await store(engine, config, dsn(str(answer.message_id)))
    assert bounced == ref
    sent = [(p["event"], p["data"]) for p in await told(engine, ref)]
    names = [name for name, _ in sent]
    assert names[names.index("note_added"):] == ["note_added", "replied", "status_changed",
                                                 "bounced"]
    data = dict(sent)
    assert data["note_added"]["body"] == "call her"
    assert (data["status_changed"]["from"], data["status_changed"]["status"]) == (
        "new", "waiting")
    assert data["bounced"]["bounced_message_id"] == answer.message_id
    for payload in await told(engine, ref):
        assert documented(payload) == [], payload


async def test_events__sla_warning_and_breach_are_told(
        engine: AsyncEngine, db_url: str) -> None:
    config = with_windows(db_url, sla=[{"name": "standard", "first_response": "1h",
                                        "resolution": "8h"}])
    [ref] = await store(engine, config, mail("w1@example.com"))
    two_hours_ago = utcnow() - timedelta(hours=2)
    async with engine.begin() as conn:
        await conn.execute(update(requests).where(requests.c.reference == ref).values(
            created_at=two_hours_ago, next_check_at=two_hours_ago))
    await Scheduler(engine=engine, rules=RulesHolder.load(config)).tick()
    reached = [(p["event"], p["data"]) for p in await told(engine, ref)
               if p["event"].startswith("sla_")]
    assert [(name, data["target"]) for name, data in reached] == [
        ("sla_warning", "first_response"), ("sla_breached", "first_response")]
    assert reached[0][1]["policy"] == "standard"
    for payload in await told(engine, ref):
        assert documented(payload) == [], payload


# --- an agent's answer threads on a person's message ----------------------------


async def test_agent_reply__threads_on_the_last_message_from_a_person(
        engine: AsyncEngine, db_url: str) -> None:
    config = with_windows(db_url)
    [ref] = await store(engine, config, mail("t1@example.com"))
    await store(engine, config, mail("t2@example.com", parent="t1@example.com"),
                mail("t3@example.com", parent="t2@example.com",
                     extra="Auto-Submitted: auto-replied\r\n"))
    request = await queries.get_request(engine, ref)
    assert request is not None
    answer = agent_reply(config, request, "On it.")
    assert answer.in_reply_to == "t2@example.com"  # not the out-of-office t3
    assert answer.references[-1] == "t2@example.com"
    assert "t3@example.com" not in answer.references


async def test_agent_reply__only_automatic_answers_thread_on_the_first_message(
        engine: AsyncEngine, db_url: str) -> None:
    config = with_windows(db_url)
    [ref] = await store(engine, config, mail("f1@example.com",
                                             extra="Auto-Submitted: auto-replied\r\n"))
    await store(engine, config, mail("f2@example.com", parent="f1@example.com",
                                     extra="Auto-Submitted: auto-replied\r\n"))
    request = await queries.get_request(engine, ref)
    assert request is not None
    answer = agent_reply(config, request, "Hello?")
    assert (answer.in_reply_to, answer.references) == ("f1@example.com", ["f1@example.com"])


# --- quarantine -----------------------------------------------------------------


SPAM = {"name": "spam", "when": {"subject": {"contains": "lottery"}},
        "then": {"quarantine": True}}


async def test_quarantine__no_checks_until_released_then_clocks_start(
        engine: AsyncEngine, db_url: str) -> None:
    config = with_windows(
        db_url, rule=[SPAM], sla=[{"name": "standard", "first_response": "1h",
                                   "resolution": "8h"}],
        escalation=[{"name": "late", "when": {"breached": "first_response"},
                     "then": {"priority": "P1"}}])
    [ref] = await store(engine, config, mail("q1@example.com", subject="You won the lottery"))
    row = await request_row(engine, ref)
    assert row.status == Status.QUARANTINED
    assert row.sla_paused_at is not None and row.next_check_at is None
    # Held for two hours (twice its first-response target), and looked at anyway.
    two_hours_ago = utcnow() - timedelta(hours=2)
    async with engine.begin() as conn:
        await conn.execute(update(requests).where(requests.c.id == row.id).values(
            created_at=two_hours_ago, sla_paused_at=two_hours_ago,
            next_check_at=two_hours_ago))
    scheduler = Scheduler(engine=engine, rules=RulesHolder.load(config))
    assert await scheduler.tick() == 0
    assert await count_rows(engine, sla_marks) == 0
    assert (await request_row(engine, ref)).next_check_at is None  # not looked at again

    assert await actions.release(engine, ref, AGENT) == "general"
    released = await request_row(engine, ref)
    assert released.status == Status.NEW and released.sla_paused_at is None
    [[start, end]] = released.sla_pauses
    assert abs(datetime.fromisoformat(start) - two_hours_ago) < timedelta(seconds=1)
    assert datetime.fromisoformat(end) > two_hours_ago + timedelta(hours=1)
    # Its clocks start at the release: nothing is breached yet.
    assert await scheduler.tick() == 0
    shown = await queries.get_request(engine, ref, whole=False)
    assert shown is not None and shown["priority"] != "P1"
    assert shown["first_response_due_at"] > utcnow() + timedelta(minutes=50)
    assert await count_rows(engine, sla_marks) == 0
    status_events = [p for p in await told(engine, ref) if p["event"] == "status_changed"]
    assert status_events[-1]["data"]["status"] == "new"


async def test_merge_http__past_the_window_answers_linked(
        app_client: AppClient, pipeline: Pipeline, engine: AsyncEngine,
        admin_token: str) -> None:
    refs = []
    for subject in ("Old", "New"):
        async with app_client.post("/v1/requests", headers=auth(admin_token), json={
                "requester": {"email": "ann@example.com", "name": "Ann"},
                "subject": subject, "body": "x"}) as resp:
            assert resp.status == 201
            refs.append((await resp.json())["reference"])
    await pipeline.drain()
    old, new = refs
    await resolve(engine, old, days_ago=20)
    async with app_client.post(f"/v1/requests/{new}/merge", headers=auth(admin_token),
                               json={"into": old}) as resp:
        assert resp.status == 200
        assert await resp.json() == {"reference": new, "merged": False, "linked_from": old}
    async with app_client.get(f"/v1/requests/{new}", headers=auth(admin_token)) as resp:
        shown = await resp.json()
    assert (shown["status"], shown["linked_from"]) == ("new", old)
    async with app_client.get(f"/v1/requests/{old}", headers=auth(admin_token)) as resp:
        assert (await resp.json())["follow_ups"] == [new]
