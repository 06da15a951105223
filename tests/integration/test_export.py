"""Right of access, on both backends: one person's export opens as a zip, its
JSON validates against the schema it carries (and documents), its .eml files
are the mails byte for byte as received, its file names stay inside the
archive whatever the attachments were called, and other people's messages are
not in it."""

from __future__ import annotations

import io
import json
import re
import zipfile
from typing import Any

import jsonschema
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.export_archive import SCHEMA, safe_name, write_archive
from gateway.pipeline.worker import Pipeline
from storage.erasures import address_hash
from storage.models import audit_events
from storage.tokens import create_token
from tests.helpers import AppClient, auth
from tests.integration.test_erasure import (
    MARKER,
    NAME,
    OLAF_TEXT,
    ZELDA,
    _deliver,
    config,  # noqa: F401 - the form the seed posts to
    mail,
    seed,
)

HOSTILE = "../../..\\evil/.bashrc"
SAFE_PATH = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)?")


async def _seeded(engine: AsyncEngine, http: AppClient, pipeline: Pipeline
                  ) -> tuple[dict[str, Any], list[bytes]]:
    sent: list[bytes] = []
    refs = await seed(engine, http, pipeline, sent)
    await _deliver(engine, pipeline, ZELDA, sent=sent, raw=mail(
        (NAME, ZELDA), "Script", "see file", "<z9@erase.example>",
        attachment=b"echo hi\n", filename=HOSTILE))
    return refs, sent


def _check(archive: zipfile.ZipFile, sent: list[bytes]) -> dict[str, Any]:
    names = archive.namelist()
    assert {"README.txt", "requests.json", "requests.schema.json"} <= set(names)
    for name in names:
        assert SAFE_PATH.fullmatch(name), name
        assert not name.startswith(("/", ".")) and ".." not in name.split("/"), name
    document = json.loads(archive.read("requests.json"))
    schema = json.loads(archive.read("requests.schema.json"))
    assert schema == SCHEMA
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(document)
    # Every mail of hers that became a message, byte for byte (the dead letter
    # became none).
    emls = sorted(archive.read(n) for n in names if n.startswith("mails/"))
    assert emls == sorted(sent)
    submissions = [json.loads(archive.read(n)) for n in names if n.startswith("submissions/")]
    assert len(submissions) == 2  # the API request and the form post
    readme = archive.read("README.txt").decode()
    for documented in ("requests.json", "requests.schema.json", "mails/", "submissions/",
                       "attachments/"):
        assert documented in readme
    return document


async def test_export__archive_opens_validates_and_keeps_the_mails_exact(
        app_client: AppClient, engine: AsyncEngine, pipeline: Pipeline) -> None:
    refs, sent = await _seeded(engine, app_client, pipeline)
    buffer = io.BytesIO()
    summary = await write_archive(engine, ZELDA.upper(), buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
        document = _check(archive, sent)
        by_ref = {r["reference"]: r for r in document["requests"]}
        assert set(by_ref) > set(refs.values()) and len(by_ref) == len(refs) + 1  # + Script
        assert by_ref[refs["VPN down"]]["role"] == "participant"
        assert by_ref[refs["Printer jammed"]]["role"] == "requester"
        # Olaf's messages are his: not in her export, though his requests are.
        texts = json.dumps(document)
        assert OLAF_TEXT not in texts and "whole team" not in texts
        assert MARKER in texts
        files = {a["filename"]: archive.read(a["file"]) for r in document["requests"]
                 for m in r["messages"] for a in m["attachments"]}
    assert files["notes.txt"] == f"notes {MARKER}\n".encode()
    assert files["badge.txt"] == f"badge photo {MARKER}".encode()
    assert files[HOSTILE] == b"echo hi\n"
    assert summary.requests == len(refs) + 1


async def test_export__over_http_for_admins_only_and_audited(
        app_client: AppClient, engine: AsyncEngine, pipeline: Pipeline,
        admin_token: str) -> None:
    _, sent = await _seeded(engine, app_client, pipeline)
    _, agent = await create_token(engine, name="agent", role="agent", queues=[])
    async with app_client.post("/v1/admin/exports", json={"requester": ZELDA},
                               headers=auth(agent)) as resp:
        assert resp.status == 403
    async with app_client.post("/v1/admin/exports", json={"requester": ZELDA},
                               headers=auth(admin_token)) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "application/zip"
        body = await resp.read()
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        _check(archive, sent)
    async with engine.connect() as conn:
        event = (await conn.execute(select(audit_events).where(
            audit_events.c.action == "export.create"))).one()
    assert event.target == f"requester:{await address_hash(engine, ZELDA)}"
    assert ZELDA.lower() not in json.dumps(event.data).lower()


def test_export__attachment_names_are_made_safe() -> None:
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("..\\..\\boot.ini") == "boot.ini"
    assert safe_name(".hidden") == "hidden"
    assert safe_name("ünïcodé name?.pdf") == "unicode_name_.pdf"
    assert safe_name("") == safe_name(None) == safe_name("///") == "file"
    assert len(safe_name("a" * 500 + ".txt")) <= 80
