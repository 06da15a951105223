"""HTML to readable plain text, through inscriptis (which renders layout, not markdown)."""

from __future__ import annotations

import re

from inscriptis import Inscriptis  # type: ignore[import-untyped]
from inscriptis.model.config import ParserConfig  # type: ignore[import-untyped]
from lxml import html as lxml_html  # type: ignore[import-untyped]
from lxml.etree import LxmlError, ParserError  # type: ignore[import-untyped]

from parsers.limits import MAX_HTML_TO_TEXT_CHARS

_CONFIG = ParserConfig(display_links=False, display_images=False)
_BLANK_RUN = re.compile(r"\n{3,}")
_ENCODING_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>", re.I)


def parse_html(html: str) -> lxml_html.HtmlElement | None:
    """An lxml tree of ``html`` (cut to the render cap), or None when there is nothing to read."""
    html = _ENCODING_DECLARATION.sub("", html[:MAX_HTML_TO_TEXT_CHARS])
    if not html.strip():
        return None
    try:
        return lxml_html.document_fromstring(html)
    except (ParserError, LxmlError, ValueError):
        return None


def tree_to_text(tree: lxml_html.HtmlElement) -> str:
    try:
        text = str(Inscriptis(tree, _CONFIG).get_text())
    except Exception:  # a renderer bug must not fail the parse; fall back to bare text
        text = str(tree.text_content())
    return tidy(text)


def html_to_text(html: str) -> str:
    tree = parse_html(html)
    return "" if tree is None else tree_to_text(tree)


def tidy(text: str) -> str:
    """Remove the layout indentation and trailing blanks the renderer leaves."""
    # Nested blocks are indented by the renderer; mail text reads better flush left.
    text = "\n".join(line.strip() for line in text.replace("\u200e", "").split("\n"))
    return _BLANK_RUN.sub("\n\n", text).strip("\n")
