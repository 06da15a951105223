"""Personal data over HTTP (admin): erasures (right to erasure) and exports
(right of access).

POST /v1/admin/erasures answers 202 once the task is committed; every
`intake serve` process's scheduler works it (gateway/erasure.py) and GET
/v1/admin/erasures/{id} tells how far it is. Neither ever shows the address:
an erasure is known by its id and the keyed hash of the address.
POST /v1/admin/exports answers with the zip itself (gateway/export_archive.py),
built in a temporary file first so that a fault half-way is a 503, not a cut
archive.
"""

from __future__ import annotations

import asyncio
import tempfile
from typing import Annotated

from aiohttp import web
from pydantic import ConfigDict, Field

from gateway.export_archive import write_archive
from gateway.http.audit import audited
from gateway.http.auth import ADMINS, require_role
from gateway.http.problems import Problem, invalid
from gateway.http.shared import CONFIG, ENGINE, json_response, small_int
from gateway.http.validation import Body, Says, read
from parsers.addresses import mailbox_or_none
from storage.audit import record
from storage.erasures import address_hash, start, view

# An export past this many bytes is spooled to disk while it is built.
SPOOL_BYTES = 8 * 1024 * 1024
SEND_CHUNK = 256 * 1024


class Person(Body):
    """POST /v1/admin/erasures and /v1/admin/exports: whose data."""

    model_config = ConfigDict(extra="forbid")

    requester: Annotated[str, Field(max_length=320), Says("must be one email address")]


def _address(person: Person) -> str:
    mailbox = mailbox_or_none(person.requester.strip())
    if mailbox is None:
        raise invalid("/requester", "must be one email address")
    return mailbox.addr_spec


def _url(request: web.Request, erasure_id: int) -> str:
    return f"{request.app[CONFIG].public_url}/v1/admin/erasures/{erasure_id}"


async def create_erasure(request: web.Request) -> web.Response:
    token = await require_role(request, ADMINS)
    address = _address(await read(request, Person))
    found, _ = await start(request.app[ENGINE], address, audit=audited(request, token))
    url = _url(request, found["id"])
    return json_response(found | {"url": url}, status=202, headers={"Location": url})


async def get_erasure(request: web.Request) -> web.Response:
    await require_role(request, ADMINS)
    number = small_int(request.match_info["erasure_id"])
    found = None if number is None else await view(request.app[ENGINE], number)
    if found is None:
        raise Problem(404, "no erasure with this id")
    return json_response(found | {"url": _url(request, found["id"])},
                         headers={"Cache-Control": "no-store"})


async def create_export(request: web.Request) -> web.StreamResponse:
    token = await require_role(request, ADMINS)
    address = _address(await read(request, Person))
    engine = request.app[ENGINE]
    digest = await address_hash(engine, address)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        summary = await write_archive(engine, address, spool)
        who = audited(request, token)
        await record(engine, actor=who.actor, action="export.create",
                     target=f"requester:{digest}", client=who.client,
                     data={"requests": summary.requests, "messages": summary.messages,
                           "files": summary.files})
        size = spool.tell()
        spool.seek(0)
        response = web.StreamResponse(headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="intake-export-{digest[:12]}.zip"',
            "Cache-Control": "no-store"})
        response.content_length = size
        await response.prepare(request)
        while piece := await asyncio.to_thread(spool.read, SEND_CHUNK):
            await response.write(piece)
        await response.write_eof()
        return response


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/admin/erasures", create_erasure)
    app.router.add_get("/v1/admin/erasures/{erasure_id}", get_erasure)
    app.router.add_post("/v1/admin/exports", create_export)
