"""The web forms' HTML pages: the form (errors beside their fields), thanks, not found.

Pages work without script. Each is sent with a Content-Security-Policy that
lets only the form's allowed sites frame it and lets it post only to us.

Each page is in the visitor's language (`page_language`: their browser's
Accept-Language, else the form's queue's language, else the desk's), problems
included; the form's own words (title, labels, hints) are the desk's, as
configured.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from gateway import i18n
from gateway.http.form_post import Refused
from gateway.http.shared import RULES
from parsers.forms import TOKEN_FIELD, FormSpec

_REFERENCE = re.compile(r"^[0-9A-Z]{4}-[0-9A-Z]{4}$")
# trim_blocks and lstrip_blocks as gateway/i18n/extraction.py reads these templates.
_TEMPLATES = i18n.prepare(Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=select_autoescape(default=True), trim_blocks=True, lstrip_blocks=True))
# Problems read as clauses ("this field is required"); on the page, a sentence.
_TEMPLATES.filters["sentence"] = lambda text: text[:1].upper() + text[1:]


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _page_headers(spec: FormSpec) -> dict[str, str]:
    # The page may be framed by the sites the form allows, and nowhere else; it
    # posts only to us (and follows our redirects to the configured pages).
    targets = sorted({origin_of(u) for u in (spec.success_url, spec.failure_url)
                      if u and u.startswith("http")})
    policy = ["default-src 'none'", "style-src 'unsafe-inline'", "base-uri 'none'",
              " ".join(["form-action 'self'", *targets]),
              " ".join(["frame-ancestors 'self'", *spec.allowed_origins])]
    return {"Content-Security-Policy": "; ".join(policy), "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}


def page_language(request: web.Request, queue: str | None = None, *,
                  detected: str | None = None) -> str:
    """The language of a customer's page (gateway/i18n choose): `detected` in
    their request, their browser's Accept-Language, the queue's, the desk's."""
    config = request.app[RULES].config
    spec = next((q for q in config.queue if q.name == queue), None)
    return i18n.choose(detected=detected,
                       accept_language=request.headers.get("Accept-Language"),
                       queue=spec.language if spec is not None else None,
                       desk=config.desk.language)


def _html(spec: FormSpec | None, template: str, status: int = 200,
          headers: dict[str, str] | None = None, language: str | None = None,
          **values: Any) -> web.Response:
    words = i18n.template_functions(language)
    page = _TEMPLATES.get_template(template).render(form=spec, **values, **words)
    extra = _page_headers(spec) if spec is not None else {
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
        "X-Content-Type-Options": "nosniff"}
    # The page's words follow Accept-Language: a cache must keep one per language.
    extra |= {"Content-Language": words["language"], "Vary": "Accept-Language"}
    return web.Response(text=page, status=status, content_type="text/html", charset="utf-8",
                        headers=extra | (headers or {}))


def form_page(spec: FormSpec, token: str, *, status: int = 200,
              values: dict[str, list[str]] | None = None,
              errors: list[dict[str, str]] | None = None,
              headers: dict[str, str] | None = None,
              language: str | None = None) -> web.Response:
    """The form with a fresh fill-time `token`; after a refusal, what was typed and why."""
    errors = errors or []
    shown = {k: v[0] for k, v in (values or {}).items()
             if v and k not in (TOKEN_FIELD, spec.honeypot)}
    return _html(spec, "form.html", status, headers, language,
                 action=f"/v1/forms/{spec.id}", token=token, token_field=TOKEN_FIELD,
                 values=shown, errors=errors,
                 field_errors={e["field"]: e["detail"] for e in errors if e.get("field")},
                 accept=",".join(spec.file_types))


def refused_page(spec: FormSpec, refused: Refused, token: str,
                 values: dict[str, list[str]], headers: dict[str, str],
                 language: str | None = None) -> web.Response:
    """The form again, each problem beside its field (or above the form), in
    `language` (the JSON API's problem document stays English)."""
    labels = {f.name: f.label for f in spec.fields}
    errors = [{"field": p.pointer.lstrip("/"), "detail": i18n.customer_text(p.detail, language),
               "label": labels.get(p.pointer.lstrip("/"), "")} for p in refused.problems]
    if not errors:
        errors = [{"field": "", "detail": i18n.customer_text(refused.detail or "", language)}]
    return form_page(spec, token, status=refused.status, values=values, errors=errors,
                     headers=headers, language=language)


def thanks_page(spec: FormSpec, reference: str, language: str | None = None) -> web.Response:
    """The default success page; shows the reference if it looks like one."""
    return _html(spec, "form_thanks.html", language=language,
                 reference=reference if _REFERENCE.match(reference) else None,
                 form_url=f"/forms/{spec.id}")


def not_found_page(language: str | None = None) -> web.Response:
    t = i18n.translations(language)
    return _html(None, "form_problem.html", 404, language=language,
                 title=t.gettext("Form not found"),
                 detail=t.gettext("There is no form at this address."), form_url=None)
