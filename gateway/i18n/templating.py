"""Translations in Jinja2 templates: `{% trans %}` blocks and `_()`, the
i18n extension's new-style gettext (the call formats its own `%(name)s` and,
where the template escapes, escapes the values and not the translation).

The callables go in with each render (`functions(language)`), not into the
environment, so one environment serves every language from any thread.
"""

from __future__ import annotations

import functools
import gettext as _gettext
from collections.abc import Callable
from typing import Any

from jinja2 import Environment, pass_context
from jinja2.runtime import Context
from markupsafe import Markup

from gateway.i18n.catalogues import translations
from gateway.i18n.codes import DEFAULT, normalise

# The names a template may call (besides the values it is given).
NAMES = frozenset({"gettext", "ngettext", "pgettext", "npgettext", "_"})


def _escaped(context: Context, text: str) -> str:
    return Markup(text) if context.eval_ctx.autoescape else text


def _new_style(t: _gettext.NullTranslations) -> dict[str, Callable[..., str]]:
    @pass_context
    def gettext(context: Context, message: str, /, **values: Any) -> str:
        # Always formatted, as Jinja's own new-style gettext: "%%" is a percent sign.
        return _escaped(context, t.gettext(message)) % values

    @pass_context
    def ngettext(context: Context, singular: str, plural: str, num: int, /,
                 **values: Any) -> str:
        values.setdefault("num", num)
        return _escaped(context, t.ngettext(singular, plural, num)) % values

    @pass_context
    def pgettext(context: Context, where: str, message: str, /, **values: Any) -> str:
        return _escaped(context, t.pgettext(where, message)) % values

    @pass_context
    def npgettext(context: Context, where: str, singular: str, plural: str, num: int, /,
                  **values: Any) -> str:
        values.setdefault("num", num)
        return _escaped(context, t.npgettext(where, singular, plural, num)) % values

    return {"gettext": gettext, "_": gettext, "ngettext": ngettext, "pgettext": pgettext,
            "npgettext": npgettext}


# The callables of the catalogues used lately, made once each (an
# acknowledgement is rendered for every new request). Bounded: a reload makes
# new catalogues, and the callables hold theirs, so a weak map would keep them.
_made = functools.lru_cache(maxsize=128)(_new_style)


def functions(language: str | None) -> dict[str, Any]:
    """What a render needs to write in `language`: the gettext callables, and
    `language` itself (for `<html lang>`). A new dict each call."""
    code = normalise(language) or DEFAULT
    return {**_made(translations(code)), "language": code}


def prepare(env: Environment) -> Environment:
    """Give `env` the i18n extension, new-style, with English as the default
    (a render that passes `functions(language)` writes in that language)."""
    env.add_extension("jinja2.ext.i18n")
    env.newstyle_gettext = True  # type: ignore[attr-defined]
    env.globals.update(_new_style(_gettext.NullTranslations()))
    return env
