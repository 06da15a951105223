"""GET /v1/reports/requests and `intake report`: JSON and CSV from requests
made and answered through the API, who may read which queues, every bad
parameter a 400 (or exit 2) naming it; the CLI's figures are the fixture
desk's hand-worked ones."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.pipeline.worker import Pipeline
from gateway.report_output import COLUMNS
from storage.engine import utcnow
from storage.models import requests
from storage.tokens import create_token
from tests.e2e.test_cli import intake
from tests.helpers import AppClient, auth
from tests.integration.test_reports import BILLING, GENERAL, load_desk
from tests.process import write_config

PATH = "/v1/reports/requests"


def _period() -> dict[str, str]:
    # Whole days either side of now: the requests made here fall inside.
    today = utcnow().date()
    return {"from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1))}


async def _desk(http: AppClient, engine: AsyncEngine, pipeline: Pipeline, token: str) -> None:
    """Two requests in general (one answered and resolved), one in billing (answered)."""
    refs = []
    for subject in ("Printer", "Scanner", "Invoice"):
        async with http.post("/v1/requests", headers=auth(token), json={
                "requester": {"email": "ann@example.com"}, "subject": subject,
                "body": f"about the {subject}"}) as resp:
            assert resp.status == 201
            refs.append((await resp.json())["reference"])
    await pipeline.drain()
    async with engine.begin() as conn:
        await conn.execute(update(requests).where(requests.c.reference == refs[2])
                           .values(queue="billing"))
    for ref, body in ((refs[0], {"body": "Fixed.", "status": "resolved"}),
                      (refs[2], {"body": "Looking."})):
        async with http.post(f"/v1/requests/{ref}/replies", json=body,
                             headers=auth(token)) as resp:
            assert resp.status == 201, await resp.text()


async def _report(http: AppClient, token: str, **query: str) -> Any:
    async with http.get(PATH, params=query, headers=auth(token)) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_reports_http__json_and_csv(app_client: AppClient, engine: AsyncEngine,
                                          pipeline: Pipeline, admin_token: str) -> None:
    await _desk(app_client, engine, pipeline, admin_token)
    document = await _report(app_client, admin_token, **_period())
    assert document["group"] == "queue"
    rows = {item["group"]: item for item in document["items"]}
    assert {q: (r["created"], r["resolved"], r["backlog"], r["first_response_count"],
                r["first_response_business_count"], r["resolution_count"])
            for q, r in rows.items()} == {"general": (2, 1, 1, 1, 1, 1),
                                          "billing": (1, 0, 1, 1, 1, 0)}
    # No policy: the 24x7 calendar, so business time is the wall-clock time.
    general = rows["general"]
    assert general["first_response_business_median_seconds"] == pytest.approx(
        general["first_response_median_seconds"], abs=0.002)
    assert general["first_response_sla_percent"] is None  # no targets
    async with app_client.get(PATH, params={**_period(), "format": "csv", "group": "day"},
                              headers=auth(admin_token)) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/csv"
        table = list(csv.reader(io.StringIO(await resp.text())))
    assert tuple(table[0]) == COLUMNS
    assert [row[0] for row in table[1:]] == sorted(row[0] for row in table[1:])
    assert len(table) == 1 + 3  # a row per day of the period, empty days too
    created = COLUMNS.index("created")
    assert sum(int(row[created]) for row in table[1:]) == 3


async def test_reports_http__agents_see_their_queues_only(
        app_client: AppClient, engine: AsyncEngine, pipeline: Pipeline,
        admin_token: str) -> None:
    await _desk(app_client, engine, pipeline, admin_token)
    _, billing = await create_token(engine, name="b", role="agent", queues=["billing"])
    _, anywhere = await create_token(engine, name="a", role="agent", queues=[])
    _, intake_token = await create_token(engine, name="i", role="intake", queues=[])
    scoped = await _report(app_client, billing, **_period())
    assert [item["group"] for item in scoped["items"]] == ["billing"]
    unscoped = await _report(app_client, anywhere, **_period(), group="channel")
    assert sum(item["created"] for item in unscoped["items"]) == 3
    async with app_client.get(PATH, params=_period()) as resp:
        assert resp.status == 401
    async with app_client.get(PATH, params=_period(), headers=auth(intake_token)) as resp:
        assert resp.status == 403


async def test_reports_http__bad_parameters_are_400_naming_them(
        app_client: AppClient, admin_token: str) -> None:
    cases = [
        ("to=2026-01-31", ["from"]),  # required
        ("from=2026-01-01", ["to"]),
        ("from=2026-13-01&to=2026-12-31", ["from"]),  # no such month
        ("from=yesterday&to=2026-12-31", ["from"]),
        ("from=\u0662\u0660\u0662\u0666-01-01&to=2026-12-31", ["from"]),  # not ASCII digits
        ("from=9999-12-01&to=9999-12-31", ["to"]),  # its end is past year 9999
        ("from=2026-01-01T00:00:00&to=2026-12-31", ["from"]),  # no offset
        ("from=" + "2" * 41 + "&to=2026-12-31", ["from"]),  # too long
        ("from=2026-02-01&to=2026-01-01", ["to"]),  # before from
        ("from=2026-01-01T10:00:00Z&to=2026-01-01T10:00:00Z", ["to"]),  # empty
        ("from=2025-01-01&to=2026-12-31&group=day", ["to"]),  # past a year of days
        ("from=2016-01-01&to=2026-12-31", ["to"]),  # past five years
        ("from=2026-01-01&to=2026-01-31&group=requester", ["group"]),
        ("from=2026-01-01&to=2026-01-31&format=xml", ["format"]),
        ("from=2026-01-01&to=2026-01-31&format=table", ["format"]),  # the CLI's only
        ("from=2026-01-01&from=2026-01-02&to=2026-01-31", ["from"]),  # twice
        ("from=2026-01-01&to=2026-01-31&queue=general&x=1", ["queue", "x"]),
    ]
    for query, named in cases:
        async with app_client.get(f"{PATH}?{query}", headers=auth(admin_token)) as resp:
            assert resp.status == 400, (query, resp.status)
            assert resp.content_type == "application/problem+json"
            problem = await resp.json()
            assert [e["parameter"] for e in problem["errors"]] == named, query
    # The same period spelt as date-times with offsets is fine.
    async with app_client.get(PATH, params={"from": "2026-01-01T01:00:00+01:00",
                                            "to": "2026-01-02T00:00:00.123456789Z"},
                              headers=auth(admin_token)) as resp:
        assert resp.status == 200
        assert (await resp.json())["from"] == "2026-01-01T00:00:00+00:00"


async def test_reports_cli__the_desk_as_worked_by_hand(db_url: str, engine: AsyncEngine,
                                                       tmp_path: Path) -> None:
    """Without [[sla]] the business times are the 24x7 calendar's, so the
    wall-clock figures and the counts are compared with the hand-worked ones."""
    await load_desk(engine)
    config = write_config(tmp_path / "c.toml", db_url)
    period = ("--from", "2026-03-02", "--to", "2026-03-08")  # both days included
    result = intake("report", *period, "--format", "json", config=config)
    assert result.returncode == 0, result.stderr
    rows = {item["group"]: item for item in json.loads(result.stdout)["items"]}
    wall = [f for f in COLUMNS[1:] if "business" not in f]
    assert {q: {f: rows[q][f] for f in wall} for q in rows} == {
        "billing": {f: BILLING[f] for f in wall}, "general": {f: GENERAL[f] for f in wall}}

    result = intake("report", *period, "--format", "csv", "--queue", "billing", config=config)
    assert result.returncode == 0, result.stderr
    table = list(csv.reader(io.StringIO(result.stdout)))
    assert [row[:5] for row in table] == [list(COLUMNS[:5]), ["billing", "7", "3", "0", "3"]]

    result = intake("report", *period, "--group", "day", config=config)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:5] == ["group", "created", "resolved", "reopened", "backlog"]
    assert [line.split()[0] for line in lines[1:]] == [f"2026-03-0{d}" for d in range(2, 9)]

    result = intake("report", *period, "--group", "colour", config=config)
    assert result.returncode == 2 and "--group" in result.stderr
