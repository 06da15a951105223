"""Problem messages a customer reads on a page, in their language.

The checks (parsers/forms.py, the form handlers) word their problems in
English for the JSON API, which stays English. A page shows the same problem
translated: each English text below is a message id, its `%(name)s` parts
match the variable parts of the English text (a file name, a limit), and
`customer_text` finds the one a problem was written with and translates it.
A problem worded nowhere here is shown as it was written.
"""

from __future__ import annotations

import re
from functools import lru_cache

from gateway.i18n.catalogues import translations


def N_(message: str) -> str:
    """Marks `message` for the catalogues; translated where it is shown."""
    return message


# Problems of a web form post, worded exactly as the checks word them.
FORM_PROBLEMS = (
    # parsers/forms.py: the fields
    N_("this field was given more than once"),
    N_("this field is required"),
    N_("this field must not contain NUL characters"),
    N_("this field must be at most %(limit)s characters"),
    N_("this is not an email address"),
    N_("choose one of the options"),
    N_("choose a file to send"),
    # parsers/forms.py: the fill-time token
    N_("the form's security token is missing; reload the page and send again"),
    N_("the form's security token is not valid; reload the page and send again"),
    N_("the form was sent too quickly; wait a few seconds and send it again"),
    N_("the page has been open too long; reload it and send the form again"),
    # gateway/http/form_post.py: reading the post
    N_("the form data must be at most %(limit)s bytes in all"),
    N_("this field is not valid UTF-8 text"),
    N_("this is not a file field of this form"),
    N_("%(file)s: files of type %(type)s are not accepted (accepted: %(accepted)s)"),
    N_("at most %(count)s files may be sent"),
    N_("%(file)s is larger than %(limit)s bytes"),
    N_("%(file)s is larger than the limit of %(size)s"),
    N_("a file was sent without a file name"),
    N_("this field is too long"),
    N_("multipart/form-data needs a boundary parameter"),
    N_("each part of the body needs a Content-Disposition: form-data with a name"),
    N_("the multipart body cannot be read: %(reason)s"),
    N_("send the form as multipart/form-data or application/x-www-form-urlencoded"),
    N_("a field name is not valid UTF-8"),
    # gateway/http/forms.py: the defences and storage
    N_("posts from %(origin)s are not allowed for this form"),
    N_("the form was refused: a field meant to stay empty was filled in (this catches "
       "automated posts)"),
    N_("this page was sent already; reload the page to send the form again"),
    N_("the form has invalid fields"),
    N_("we could not take your request just now; please send it again in a minute"),
    N_("too many posts from your address; wait a minute and send again"),
)

# The titles of problem pages a customer may see, by HTTP status.
TITLES = {
    400: N_("The request could not be read"),
    403: N_("Not allowed"),
    404: N_("Not found"),
    409: N_("This was changed meanwhile"),
    410: N_("This link no longer works"),
    413: N_("Too large"),
    415: N_("Not a form post"),
    422: N_("Please check what you sent"),
    429: N_("Too many attempts"),
    500: N_("Something went wrong on our side"),
    503: N_("Please try again in a minute"),
}
GENERIC_TITLE = N_("Something went wrong")

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


@lru_cache(maxsize=1)
def _patterns() -> tuple[tuple[re.Pattern[str], str], ...]:
    made = []
    for message in FORM_PROBLEMS:
        parts = _PLACEHOLDER.split(message)  # text, name, text, name, ..., text
        pattern = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>.+?)"
                          for i, p in enumerate(parts))
        made.append((re.compile(pattern, re.DOTALL), message))
    return tuple(made)


def message_of(text: str) -> tuple[str, dict[str, str]] | None:
    """The message id `text` was worded from, with its variable parts; None
    when it is no known problem."""
    for pattern, message in _patterns():
        found = pattern.fullmatch(text)
        if found is not None:
            return message, found.groupdict()
    return None


def customer_text(text: str, language: str | None) -> str:
    """A problem as a customer reads it in `language` (as written when unknown)."""
    known = message_of(text)
    if known is None:
        return text
    message, values = known
    return translations(language).gettext(message) % values


def customer_title(status: int, language: str | None) -> str:
    """The title of a problem page for `status`, in `language`."""
    return translations(language).gettext(TITLES.get(status, GENERIC_TITLE))
