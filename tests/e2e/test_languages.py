"""The customer's language end to end, on both backends: a German mail gets a
German acknowledgement, a form posted with Accept-Language fr a French one
(and French pages), and a queue's language decides when nothing else does.
Real SMTP in, a real HTTP form post, acknowledgements through a real relay."""

from __future__ import annotations

import asyncio
import re
import smtplib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import Gateway, start, stop
from storage import queries
from tests.e2e.test_outbound import Relay, received_count
from tests.helpers import make_config

FORM = {"id": "support", "title": "Contact support", "queue": "general",
        "min_fill_seconds": 0, "rate_limit_per_minute": 100,
        "field": [{"name": "name", "label": "Your name"},
                  {"name": "email", "label": "Your email address", "kind": "email",
                   "required": True},
                  {"name": "subject", "label": "Subject", "required": True},
                  {"name": "message", "label": "How can we help?", "kind": "textarea",
                   "required": True}]}
GERMAN_MONTHS = ("Januar|Februar|März|April|Mai|Juni|Juli|August|September|Oktober|"
                 "November|Dezember")


@asynccontextmanager
async def desk(db_url: str, **sections: Any) -> AsyncIterator[tuple[Gateway, Relay]]:
    relay = Relay()
    await relay.up()
    config = make_config(db_url, outbound={"relay": f"127.0.0.1:{relay.port}",
                                           "backoff_initial_seconds": 0.05,
                                           "backoff_max_seconds": 0.2},
                         form=[FORM], **sections)
    gateway = await start(config)
    try:
        yield gateway, relay
    finally:
        await stop(gateway, grace=3)
        await relay.down()


def mail(gateway: Gateway, subject: str, body: str) -> str:
    data = (f"From: Anna Beispiel <anna@example.com>\r\nTo: support@localhost\r\n"
            f"Subject: {subject}\r\nMessage-ID: <de1@example.com>\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode()
    with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=10) as client:
        client.ehlo()
        client.mail("anna@example.com")
        client.rcpt("support@localhost")
        code, reply = client.data(data)
    assert code == 250
    return reply.split()[-1].decode()


async def post_form(gateway: Gateway, headers: dict[str, str]) -> tuple[str, str]:
    """Post the form as a browser does (too little text to tell its language);
    the reference and the thanks page it lands on."""
    values = {"name": "Ann", "email": "ann@example.com", "subject": "VPN",
              "message": "KO!"}
    async with aiohttp.ClientSession(base_url=gateway.http_url) as http:
        async with http.post("/v1/forms/support", data=values, headers=headers,
                             allow_redirects=False) as resp:
            assert resp.status == 303, await resp.text()
            location = resp.headers["Location"]
        async with http.get(location, headers=headers) as page:
            assert page.status == 200
            return location.rsplit("=", 1)[1], await page.text()


def text_of(message: EmailMessage) -> str:
    return str(message.get_content()).replace("\r\n", "\n")


async def test_languages__a_german_mail_gets_a_german_acknowledgement(
        db_url: str, engine: AsyncEngine) -> None:
    async with desk(db_url, desk={"timezone": "Europe/Berlin"}) as (gateway, relay):
        reference = await asyncio.to_thread(
            mail, gateway, "Drucker defekt",
            "Hallo, der Drucker im zweiten Stock druckt seit gestern nicht mehr. "
            "Können Sie bitte jemanden vorbeischicken? Vielen Dank!")
        await received_count(relay, 1)
    ack = relay.received[0]
    body = text_of(ack)
    assert body.startswith("Hallo Anna Beispiel,\n\nwir haben Ihre Anfrage „Drucker defekt“ am ")
    assert f"unter {reference} erfasst." in body
    assert "Den Stand können Sie hier verfolgen: http" in body
    # Received in the desk's time zone, as German writes a date.
    assert re.search(rf"am \d{{1,2}}\. ({GERMAN_MONTHS}) \d{{4}}, \d\d:\d\d MES?Z ", body)
    assert ack["Subject"] == f"Re: [#{reference}] Drucker defekt"
    request = await queries.get_request(engine, reference)
    assert request is not None
    ours = [m for m in request["messages"] if m["direction"] == "out"]
    assert ours[0]["flags"]["language"] == "de"


async def test_languages__a_form_with_accept_language_fr_gets_french(
        db_url: str, engine: AsyncEngine) -> None:
    async with desk(db_url) as (gateway, relay):
        reference, thanks = await post_form(
            gateway, {"Accept-Language": "fr-CH, en;q=0.5", "Accept": "text/html"})
        await received_count(relay, 1)
        async with aiohttp.ClientSession(base_url=gateway.http_url) as http:
            async with http.get("/forms/support",
                                headers={"Accept-Language": "fr-CH, en;q=0.5"}) as resp:
                page = await resp.text()
                assert resp.headers["Content-Language"] == "fr"
                assert "Accept-Language" in resp.headers["Vary"]
    assert '<html lang="fr">' in page and "(obligatoire)" in page and ">Envoyer<" in page
    assert "Merci, nous avons bien reçu votre demande" in thanks
    assert f'<strong id="reference" class="reference">{reference}</strong>' in thanks
    body = text_of(relay.received[0])
    assert body.startswith("Bonjour Ann,\n\nNous avons reçu votre demande « VPN » le ")
    assert f"sous la référence {reference}." in body
    request = await queries.get_request(engine, reference)
    assert request is not None
    received = next(e for e in request["timeline"] if e["kind"] == "received")
    assert received["data"]["accept_language"] == "fr-CH, en;q=0.5"


async def test_languages__the_queue_language_decides_when_nothing_else_does(
        db_url: str, engine: AsyncEngine) -> None:
    async with desk(db_url, queue=[{"name": "general", "language": "nl"},
                                   {"name": "billing"}]) as (gateway, relay):
        reference, thanks = await post_form(gateway, {"Accept": "text/html"})
        await received_count(relay, 1)
    assert "Bedankt, we hebben uw aanvraag ontvangen" in thanks
    body = text_of(relay.received[0])
    assert body.startswith("Beste Ann,\n\nWe hebben uw aanvraag ‘VPN’ op ")
    assert f"geregistreerd als {reference}." in body


async def test_languages__refused_form_fields_are_explained_in_the_page_language(
        db_url: str) -> None:
    async with desk(db_url) as (gateway, _):
        async with aiohttp.ClientSession(base_url=gateway.http_url) as http:
            async with http.post("/v1/forms/support", data={"email": "not an address"},
                                 headers={"Accept-Language": "de"}) as resp:
                assert resp.status == 422
                page = await resp.text()
            # A JSON client's problem document stays English.
            async with http.post("/v1/forms/support", data={"email": "x"},
                                 headers={"Accept-Language": "de",
                                          "Accept": "application/json"}) as resp:
                problem = await resp.json()
    assert '<html lang="de">' in page and "Es gibt ein Problem" in page
    assert "Fehler: Das ist keine E-Mail-Adresse" in page
    assert "Fehler: Dieses Feld ist erforderlich" in page
    assert {e["detail"] for e in problem["errors"]} >= {"this field is required",
                                                         "this is not an email address"}
