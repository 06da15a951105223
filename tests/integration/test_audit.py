"""The audit trail in storage, on both backends: append-only at the database
(triggers refuse UPDATE and DELETE), the purge as the one way out, filters
and cursor paging, hostile values fitted and secrets withheld."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.rules_in_force import RulesHolder
from storage import audit
from storage.audit import AuditFilters, list_events, purge_before, record, record_action
from storage.models import audit_events, audit_purge
from tests.helpers import count_rows, make_config

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def _insert(engine: AsyncEngine, at: datetime, **values: object) -> int:
    row = {"at": at, "actor": "system", "action": "rules.reload", "target": None,
           "client": None, "data": {}} | values
    async with engine.begin() as conn:
        return int((await conn.execute(insert(audit_events).returning(audit_events.c.id),
                                       row)).scalar_one())


async def _all(engine: AsyncEngine) -> list[dict[str, object]]:
    events, _ = await list_events(engine, AuditFilters(), limit=500)
    return events


async def test_audit__recorded_with_the_action_or_not_at_all(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await record_action(conn, actor="token:7", action="token.revoke", target="token:3",
                            client="192.0.2.9")
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await record_action(conn, actor="token:7", action="token.revoke", target="token:4")
            raise RuntimeError("the action failed")  # rolls the audit back with it
    [event] = await _all(engine)
    assert (event["actor"], event["action"], event["target"], event["client"]) == (
        "token:7", "token.revoke", "token:3", "192.0.2.9")
    assert isinstance(event["at"], datetime) and event["at"].tzinfo is not None


async def test_audit__hostile_values_fitted_and_secrets_withheld(engine: AsyncEngine) -> None:
    await record(engine, actor="cli", action="token.create", target="t\x00" + "x" * 1000,
                 client="\ud800" + "y" * 500,
                 data={"name": "a\x00b", "secret": "itk_abc", "nested": {"Password": "pw"},
                       "many": list(range(1000)), "long": "z" * 10_000,
                       "nan": float("nan")})
    [event] = await _all(engine)
    assert event["target"] == "t\ufffd" + "x" * 298
    assert event["client"] == "\ufffd" + "y" * 99
    data = event["data"]
    assert isinstance(data, dict)
    assert data["name"] == "a\ufffdb"
    assert data["secret"] == audit.WITHHELD and data["nested"] == {"Password": audit.WITHHELD}
    assert "itk_abc" not in str(event) and "pw" not in str(data["nested"])
    assert len(data["many"]) == audit.MAX_ITEMS and len(data["long"]) == audit.MAX_TEXT
    assert data["nan"] is None
    assert data["os_user"]  # the command line's user, added for actor cli


@pytest.mark.parametrize(("actor", "action"), [("root", "token.create"),
                                               ("token:1 OR 1=1", "token.create"),
                                               ("token:1", "token.drop")])
async def test_audit__unknown_actor_or_action_refused(engine: AsyncEngine, actor: str,
                                                      action: str) -> None:
    with pytest.raises(ValueError):
        await record(engine, actor=actor, action=action)
    assert await count_rows(engine, audit_events) == 0


async def test_audit__update_and_delete_refused_by_the_database(engine: AsyncEngine) -> None:
    event_id = await _insert(engine, T0, target="token:1")
    with pytest.raises(DBAPIError, match="append-only"):
        async with engine.begin() as conn:
            await conn.execute(update(audit_events).values(target="token:2"))
    with pytest.raises(DBAPIError, match="append-only"):
        async with engine.begin() as conn:
            await conn.execute(delete(audit_events).where(audit_events.c.id == event_id))
    [event] = await _all(engine)
    assert event["target"] == "token:1"


async def test_audit__truncate_refused_on_postgresql(engine: AsyncEngine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no TRUNCATE")
    await _insert(engine, T0)
    with pytest.raises(DBAPIError, match="append-only"):
        async with engine.begin() as conn:
            await conn.execute(text("TRUNCATE audit_events"))
    assert await count_rows(engine, audit_events) == 1


async def test_audit__purge_escape_allows_delete_only(engine: AsyncEngine) -> None:
    """Even inside the purge's escape an event cannot be changed."""
    await _insert(engine, T0, target="token:1")
    with pytest.raises(DBAPIError, match="append-only"):
        async with engine.begin() as conn:
            await audit._allow_purge(conn)
            await conn.execute(update(audit_events).values(target="token:2"))
    [event] = await _all(engine)
    assert event["target"] == "token:1"


async def test_audit__purge_deletes_old_events_in_bounded_steps(engine: AsyncEngine) -> None:
    for days in (30, 20, 10, 1):
        await _insert(engine, T0 - timedelta(days=days), data={"days": days})
    cutoff = T0 - timedelta(days=5)
    assert await purge_before(engine, cutoff, limit=2) == 2
    assert await purge_before(engine, cutoff, limit=2) == 1
    assert await purge_before(engine, cutoff, limit=2) == 0
    events = await _all(engine)
    kept = [e["data"] for e in events if e["action"] == "rules.reload"]
    assert kept == [{"days": 1}]
    purges = [e for e in events if e["action"] == "audit.purge"]
    assert sorted(e["data"]["deleted"] for e in purges) == [1, 2]  # type: ignore[index]
    assert {e["actor"] for e in purges} == {"system"}
    # The escape closed with the purge: a DELETE after it is refused again.
    assert await count_rows(engine, audit_purge) == 0
    with pytest.raises(DBAPIError, match="append-only"):
        async with engine.begin() as conn:
            await conn.execute(delete(audit_events))


async def test_audit__purge_escape_does_not_outlive_its_transaction(
        engine: AsyncEngine) -> None:
    """A purge that fails leaves no opening behind (PostgreSQL: the setting was
    local; SQLite: the flag row rolls back), on the same pooled connection."""
    await _insert(engine, T0)
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await audit._allow_purge(conn)
            raise RuntimeError("failed mid-purge")
    for _ in range(3):  # whichever pooled connection comes next
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(delete(audit_events))
    assert await count_rows(engine, audit_events) == 1


async def test_audit__filters(engine: AsyncEngine) -> None:
    await _insert(engine, T0, actor="token:1", action="token.create", target="token:5")
    await _insert(engine, T0 + timedelta(hours=1), actor="agent:2",
                  action="request.merge", target="7PY9-9T9S")
    await _insert(engine, T0 + timedelta(hours=2), actor="token:1", action="token.revoke",
                  target="token:5")

    async def actions(**filters: object) -> list[object]:
        events, _ = await list_events(engine, AuditFilters(**filters))  # type: ignore[arg-type]
        return [e["action"] for e in events]

    assert await actions() == ["token.revoke", "request.merge", "token.create"]
    assert await actions(actor="token:1") == ["token.revoke", "token.create"]
    assert await actions(action="request.merge") == ["request.merge"]
    assert await actions(target="token:5", actor="token:1") == ["token.revoke",
                                                                "token.create"]
    assert await actions(since=T0 + timedelta(hours=1)) == ["token.revoke", "request.merge"]
    assert await actions(until=T0 + timedelta(hours=1)) == ["token.create"]
    # Another offset for the same instant finds the same events.
    later = (T0 + timedelta(hours=1)).astimezone(timezone(timedelta(hours=2)))
    assert await actions(since=later, until=later + timedelta(minutes=1)) == ["request.merge"]
    assert await actions(actor="agent:9") == []


async def test_audit__cursor_pages_cover_every_event_once(engine: AsyncEngine) -> None:
    # Several events in one instant: the cursor orders by (at, id), not time alone.
    ids = [await _insert(engine, T0 + timedelta(seconds=s), data={"n": i})
           for i, s in enumerate([0, 1, 1, 1, 2, 3, 3])]
    seen: list[object] = []
    after = None
    for _ in range(10):
        page, cursor = await list_events(engine, AuditFilters(), limit=2, after=after)
        seen += [e["id"] for e in page]
        if cursor is None:
            break
        after = audit.decode_cursor(cursor)
    assert seen == ids[::-1]  # newest first; within an instant, the later id first


# Empty, not base64, not ours, too long, a time without offset, a negative id.
@pytest.mark.parametrize("cursor", ["", "x", "bm90IGEgY3Vyc29y", "QUFB" * 30,
                                    "MjAyNi0wMy0wMVQxMjowMDowMHwx",
                                    "MjAyNi0wMy0wMVQxMjowMDowMCswMDowMHwtMQ"])
def test_audit__foreign_cursor_refused(cursor: str) -> None:
    with pytest.raises(ValueError):
        audit.decode_cursor(cursor)


def test_audit__cursor_round_trip() -> None:
    assert audit.decode_cursor(audit.encode_cursor(T0, 42)) == (T0, 42)


async def test_audit__events_read_back_unchanged(engine: AsyncEngine) -> None:
    await record(engine, actor="agent:3", action="request.reroute", target="ABCD-EFGH",
                 client="2001:db8::1", data={"from": "general", "to": "billing"})
    async with engine.connect() as conn:
        row = (await conn.execute(select(audit_events))).one()
    assert (row.actor, row.action, row.target, row.client, row.data) == (
        "agent:3", "request.reroute", "ABCD-EFGH", "2001:db8::1",
        {"from": "general", "to": "billing"})


async def test_audit__rules_reloads_from_the_watcher_recorded(
        engine: AsyncEngine, db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "intake.toml"
    path.write_text('[[queue]]\nname = "general"\n')
    holder = RulesHolder.load(make_config(db_url).model_copy(update={"source": str(path)}))
    holder.engine = engine
    path.write_text('[[queue]]\nname = "general"\n[[queue]]\nname = "more"\n')
    holder._check_file("")  # one pass of the watcher: the file changed
    path.write_text('[[queue]]\nname = "general"\n[[rule]]\nbroken = true\n')
    holder._check_file("")
    await holder.audited()
    events = [e for e in await _all(engine) if e["action"] == "rules.reload"]
    assert [(e["data"]["trigger"], e["data"]["ok"]) for e in events] == [  # type: ignore[index]
        ("file changed", False), ("file changed", True)]
    assert {(e["actor"], e["target"]) for e in events} == {("system", str(path))}
    assert events[0]["data"]["errors"]  # type: ignore[index]  # why it was refused
