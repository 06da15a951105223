"""What we write to a customer is in their language: acknowledgements (and
their retry after a template fault) and the words we add to agents' replies,
chosen as gateway/delivery/outbound.py chooses them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.config.templates import TemplateSet
from gateway.delivery.outbound import (
    acknowledgement,
    agent_reply,
    customer_language,
    rendered_again,
)
from parsers.addresses import parse_address
from tests.helpers import make_config

CLASSIFIED_DE = {"kind": "classified", "data": {"classification": {
    "language": {"value": "de", "score": 0.99, "source": "py3langid"}}}}


def config(**desk: Any) -> Any:
    return make_config("sqlite+aiosqlite://", desk=desk,
                       queue=[{"name": "general"}, {"name": "billing", "language": "it"}])


def ack(cfg: Any, templates: TemplateSet | None = None, **choice: Any) -> Any:
    return acknowledgement(
        cfg, templates or cfg.templates, reference="7PY9-9T9S", queue="general",
        status_token="tok", template=None, to_name="Ann", to=parse_address("ann@example.com"),
        subject="", customer_message_id=None, references=[],
        received_at=datetime(2026, 1, 5, 8, 30, tzinfo=UTC), **choice)


def test_customer_language__in_the_order_of_the_issue() -> None:
    cfg = config(language="nl")
    assert customer_language(cfg, "billing", detected="de", accept_language="fr") == "de"
    assert customer_language(cfg, "billing", detected="und", accept_language="fr") == "fr"
    assert customer_language(cfg, "billing") == "it"
    assert customer_language(cfg, "general") == "nl"
    assert customer_language(cfg, "no such queue") == "nl"


def test_acknowledgement__language_date_and_empty_subject() -> None:
    message = ack(config(timezone="Europe/Paris"), accept_language="fr")
    assert message.flags["language"] == "fr"
    assert message.subject == "Re: [#7PY9-9T9S] (sans objet)"
    assert "le 5 janvier 2026, 09:30 +0100 et l’avons enregistrée" in message.text


def test_acknowledgement__a_held_one_is_rendered_again_in_its_language() -> None:
    cfg = config()
    broken = TemplateSet({"acknowledgement.txt": "{{ subject[30] }}"})
    message = ack(cfg, broken, detected="de")
    assert message.text == "" and "render_error" in message.flags
    held = message.flags["render"]
    assert held["language"] == "de"
    payload, problem = rendered_again(cfg, {"render": held, "message": {"text": ""}})
    assert problem is None
    assert payload["message"]["text"].startswith("Hallo Ann,\n\nwir haben Ihre Anfrage")


def test_agent_reply__the_words_we_add_follow_the_request_language() -> None:
    request = {"reference": "7PY9-9T9S", "subject": "", "queue": "general",
               "requester": {"email": "ann@example.com", "name": "Ann"},
               "messages": [], "timeline": [CLASSIFIED_DE]}
    reply = agent_reply(config(), request, "Erledigt.")
    assert reply.flags["language"] == "de"
    assert reply.subject == "Re: [#7PY9-9T9S] (kein Betreff)"
    assert reply.text == "Erledigt."  # the agent's words are theirs
    # Nothing detected, no form: the queue's language.
    billing = agent_reply(config(), request | {"queue": "billing", "timeline": []}, "Fatto.")
    assert billing.flags["language"] == "it"
