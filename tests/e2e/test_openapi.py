"""The published OpenAPI document against the real app and a running gateway.

The document must name every route the app serves and nothing else, validate
as OpenAPI 3.1, and be true on the wire: Schemathesis generates requests for
every operation and checks each answer against it (no 5xx; documented status
code, content type, headers and body schema). The gateway runs on SQLite only
here: the document does not depend on the backend, and the other e2e tests run
on both.
"""

from __future__ import annotations

import asyncio
import smtplib
import time
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from typing import Any

import aiohttp
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.app import Gateway
from gateway.config import DEFAULT_FORM, Config
from tests.helpers import auth, make_config, wait_for

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
MAX_EXAMPLES = 12
BODY = {"requester": {"email": "ann@example.com", "name": "Ann"}, "subject": "VPN down",
        "body": "Cannot connect since 9am."}


@pytest.fixture
def config(db_url: str) -> Config:
    # One form without the fill-time token, limited loosely: generated posts
    # reach the real checks instead of stopping at 422 or 429.
    return make_config(db_url, form=[DEFAULT_FORM | {
        "min_fill_seconds": 0, "rate_limit_per_minute": 100_000}])


async def test_openapi__documents_every_route_and_validates(
        gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.get("/v1/openapi.json") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        document = await resp.json()
    validate(document)  # OpenAPI 3.1, with its JSON Schema 2020-12 dialect
    assert document["openapi"].startswith("3.1.")
    assert document["servers"] == [{"url": gateway.config.public_url}]
    served = {(route.method, route.resource.canonical)
              for route in gateway.runner.app.router.routes()
              if route.method != "HEAD" and route.resource is not None}
    documented = {(method.upper(), path) for path, item in document["paths"].items()
                  for method in item if method in METHODS}
    assert served - documented == set(), "routes the document does not describe"
    assert documented - served == set(), "documented operations the app does not serve"
    ids = [op["operationId"] for item in document["paths"].values()
           for method, op in item.items() if method in METHODS]
    assert len(ids) == len(set(ids)) == len(served)


# --- seeding: real objects for the generated requests to reach ----------------

def _mail(message_id: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Carol <carol@example.com>"
    msg["To"] = "support@localhost"
    msg["Subject"] = "Invoice attached"
    msg["Message-ID"] = message_id
    msg.set_content("Please see the attached invoice.")
    msg.add_attachment(b"%PDF-1.4 not really", maintype="application", subtype="pdf",
                       filename="invoice.pdf")
    return msg.as_bytes(policy=policy.SMTP)


def _smtp_send(port: int, data: bytes) -> str:
    """Deliver one mail; the reference from the 250 answer."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo()
        client.mail("carol@example.com")
        client.rcpt("support@localhost")
        code, reply = client.data(data)
    assert code == 250, reply
    return reply.split()[-1].decode()


@dataclass
class Seed:
    reference: str        # an API request, processed
    duplicate: str        # another, to merge into `reference`
    mailed: str           # an email with one attachment
    attachment_id: int
    received: str         # a duplicate delivery: stored, never a request ("received")
    status_token: str
    token_id: int         # a token that may be revoked


async def _seed(gateway: Gateway, http: aiohttp.ClientSession, token: str) -> Seed:
    async def read(ref: str, status: str = "new") -> dict[str, Any]:
        async def fetch() -> dict[str, Any] | None:
            async with http.get(f"/v1/requests/{ref}", headers=auth(token)) as resp:
                data = await resp.json()
            wanted = data.get("status") == status and (
                status != "received" or data.get("processing") == "done")
            return data if wanted else None
        return await wait_for(fetch)

    refs = []
    for _ in range(2):
        async with http.post("/v1/requests", json=BODY, headers=auth(token)) as resp:
            assert resp.status == 201
            refs.append((await resp.json())["reference"])
    mail = _mail("<openapi-seed@example.com>")
    mailed = await asyncio.to_thread(_smtp_send, gateway.smtp_port, mail)
    request = await read(mailed)
    received = await asyncio.to_thread(_smtp_send, gateway.smtp_port, mail)
    await read(received, "received")
    first = await read(refs[0])
    await read(refs[1])
    async with http.post("/v1/admin/tokens", json={"role": "agent", "name": "doomed"},
                         headers=auth(token)) as resp:
        doomed = (await resp.json())["id"]
    return Seed(reference=refs[0], duplicate=refs[1], mailed=mailed,
                attachment_id=request["messages"][0]["attachments"][0]["id"],
                received=received, status_token=first["status_url"].rsplit("/", 1)[1],
                token_id=doomed)


# --- Schemathesis ---------------------------------------------------------------

@dataclass
class Variant:
    """Generated cases for one operation, some path parameters (or the body) fixed."""

    name: str
    path: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    fresh_etag: bool = False  # send the request's current ETag as If-Match


def _variants(operation: Any, seed: Seed) -> list[Variant]:
    names = {p.name for p in operation.path_parameters}
    method = operation.method.upper()
    if "token_id" in names:
        # Generated ids would revoke the admin token the run depends on.
        return [Variant("doomed token", {"token_id": seed.token_id})]
    if "attachment_id" in names:
        return [Variant("generated"),
                Variant("generated reference", {"attachment_id": seed.attachment_id}),
                Variant("real attachment", {"reference": seed.mailed,
                                            "attachment_id": seed.attachment_id})]
    if "token" in names:
        return [Variant("generated"), Variant("real status link",
                                              {"token": seed.status_token})]
    if "reference" not in names:
        return [Variant("generated")]
    variants = [Variant("generated"), Variant("processed request",
                                              {"reference": seed.reference})]
    variants.append(Variant("received, not a request", {"reference": seed.received}))
    if method == "PATCH":
        variants.append(Variant("current ETag", {"reference": seed.reference},
                                fresh_etag=True))
    if operation.path.endswith("/merge"):
        variants.append(Variant("merge a duplicate", {"reference": seed.duplicate},
                                body={"into": seed.reference}))
    return variants


def _etag(session: requests.Session, base_url: str, reference: str) -> str:
    return session.get(f"{base_url}/v1/requests/{reference}").headers["ETag"]


def _examples(strategy: Any, variant: Variant, session: requests.Session, base_url: str,
              token: str, seed: Seed) -> Any:
    """The Hypothesis test for one variant of one operation."""

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def check(case: schemathesis.Case) -> None:
        if isinstance(case.body, dict) and "wait" in case.body:
            case.body["wait"] = 0  # long-polls up to 60 s: keep the run short
        if variant.fresh_etag:
            case.headers = {**(case.headers or {}),
                            "If-Match": _etag(session, base_url, seed.reference)}
        case.call_and_validate(base_url=base_url, session=session, headers=auth(token),
                               checks=CHECKS, timeout=10)

    return check


def _run_schemathesis(base_url: str, token: str, seed: Seed) -> dict[str, str]:
    """Every operation, a few generated examples each; the failures by operation."""
    schema = schemathesis.openapi.from_url(f"{base_url}/v1/openapi.json")
    session = requests.Session()
    session.headers.update(auth(token))
    failures: dict[str, str] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        for variant in _variants(operation, seed):
            strategy = operation.as_strategy(
                path_parameters=variant.path or None,
                **({"body": variant.body} if variant.body is not None else {}))
            try:
                _examples(strategy, variant, session, base_url, token, seed)()
            # Schemathesis raises FailureGroup, a BaseExceptionGroup: catch it too.
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - reported together
                failures[f"{operation.label} [{variant.name}]"] = f"{type(exc).__name__}: {exc}"
    return failures


async def test_openapi__schemathesis_finds_no_violation(
        gateway: Gateway, http: aiohttp.ClientSession, admin_token: str) -> None:
    seed = await _seed(gateway, http, admin_token)
    started = time.monotonic()
    # Schemathesis speaks synchronous HTTP: run it beside the server's event loop.
    failures = await asyncio.to_thread(_run_schemathesis, gateway.http_url, admin_token, seed)
    print(f"schemathesis: {time.monotonic() - started:.1f} s")
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())


# --- server bugs Schemathesis found once, kept as regression checks ---------------

REGRESSIONS = {
    "attachment id past 64 bits": (
        "GET", "/v1/requests/{reference}/attachments/{attachment_id}",
        lambda seed: {"path_parameters": {"reference": seed.mailed,
                                          "attachment_id": 7153613248413493624832}},
        "an all-digit id too large for the database integer answered 500, not 404"),
    "token id past 64 bits": (
        "DELETE", "/v1/admin/tokens/{token_id}",
        lambda seed: {"path_parameters": {"token_id": 7153613248413493624832}},
        "an all-digit id too large for the database integer answered 500, not 404"),
    "reply to a received reference": (
        "POST", "/v1/requests/{reference}/replies",
        lambda seed: {"path_parameters": {"reference": seed.received},
                      "body": {"body": "Thanks"}},
        "admin reply to a stored-but-unprocessed reference: KeyError 'messages', 500"),
    "escalate a received reference": (
        "POST", "/v1/requests/{reference}/escalate",
        lambda seed: {"path_parameters": {"reference": seed.received}, "body": {}},
        "admin escalation of a stored-but-unprocessed reference: KeyError "
        "'escalation_level', 500"),
}


class ServerBug(Exception):
    pass


def _reproduce(base_url: str, token: str, method: str, path: str,
               case_args: dict[str, Any]) -> None:
    schema = schemathesis.openapi.from_url(f"{base_url}/v1/openapi.json")
    case = schema[path][method].Case(**case_args)
    response = case.call(base_url=base_url, headers=auth(token), timeout=10)
    if response.status_code >= 500:
        raise ServerBug(f"{method} {case.formatted_path} answered {response.status_code}: "
                        f"{response.text}")
    case.validate_response(response, checks=CHECKS)  # once fixed, the answer must conform


@pytest.mark.parametrize("bug", list(REGRESSIONS))
async def test_openapi__former_server_bug_stays_fixed(
        gateway: Gateway, http: aiohttp.ClientSession, admin_token: str, bug: str) -> None:
    method, path, args, _ = REGRESSIONS[bug]
    seed = await _seed(gateway, http, admin_token)
    await asyncio.to_thread(_reproduce, gateway.http_url, admin_token, method, path,
                            args(seed))
