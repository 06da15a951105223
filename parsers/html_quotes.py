"""Cut the quoted history out of an HTML reply, then read it as text.

Mail apps mark their quotes in the markup (Gmail's ``gmail_quote``, Outlook's
``divRplyFwdMsg`` and border-top header block, Thunderbird's cite blockquote,
Hotmail's ``stopSpelling`` rule); those are removed from the tree first, and
the text-level rules then catch reply headers left in plain markup.
"""

from __future__ import annotations

import re

from lxml import html as lxml_html  # type: ignore[import-untyped]

from parsers.html_text import parse_html, tree_to_text
from parsers.reply_headers import attribution_span
from parsers.reply_phrases import FORWARD_SEPARATORS
from parsers.reply_quotes import strip_quotes

# Elements that start the quoted history; they and everything after them go.
_HISTORY_IDS = {
    "divrplyfwdmsg",
    "x_divrplyfwdmsg",
    "olk_src_body_section",
    "appendonsend",
    "x_appendonsend",
    "stopspelling",
    "ecxstopspelling",
    "mail-editor-reference-message-container",
}
_HISTORY_CLASSES = {"yahoo_quoted", "zmail_extra", "ms-outlook-mobile-reference-message"}
_BORDER_TOP = re.compile(r"border-top\s*:\s*solid|border-top-style\s*:\s*solid", re.IGNORECASE)
_HEADER_START = re.compile(
    r"^\s*(?:From|Von|De|Van|Fra|Från|Od|Da|От|Date|Sent|Gesendet|Envoyé)\s*:", re.IGNORECASE
)
# Gmail's forwarded-message marker in every language the clients' table covers.
_FORWARDED = re.compile(
    "|".join(re.escape(phrase.text) for phrase in FORWARD_SEPARATORS), re.IGNORECASE
)


def strip_html_quotes(html: str) -> str:
    """Text of the reply in ``html`` without its quoted history."""
    return text_and_reply(html)[1]


def text_and_reply(html: str) -> tuple[str, str]:
    """The whole text of ``html`` and the reply alone, from one parse."""
    tree = parse_html(html)
    if tree is None:
        return "", ""
    whole = tree_to_text(tree)
    cut = _cut_history(tree)
    reply = strip_quotes(tree_to_text(tree))
    if cut:
        reply = _without_dangling_attribution(reply)
    # Everything looked quoted (a reply written inside the quote): keep it all.
    return whole, reply if reply.strip() else whole


def _without_dangling_attribution(reply: str) -> str:
    """``reply`` without an "Alice wrote:" left at its end once the quote below it is gone.

    Thunderbird writes it outside the cite blockquote (``moz-cite-prefix``), as do
    clients that put it in a plain <div> above the quote.
    """
    lines = reply.rstrip().split("\n")
    span = attribution_span(lines, len(lines) - 1)
    if not span or not "".join(lines[: len(lines) - span]).strip():
        return reply
    return "\n".join(lines[: len(lines) - span]).rstrip()


def _cut_history(tree: lxml_html.HtmlElement) -> bool:
    """Remove the quoted history from ``tree``; whether anything was removed."""
    cut = False
    for element in list(tree.iter()):
        if not isinstance(element.tag, str) or element.getparent() is None:
            continue
        ident = (element.get("id") or "").lower()
        classes = set((element.get("class") or "").lower().split())
        if (
            ident in _HISTORY_IDS
            or classes & _HISTORY_CLASSES
            or _is_outlook_header(element)
            or _is_rule_before_header(element)
        ):
            _remove_with_followers(element)
            cut = True
            continue
        if "gmail_quote" in classes and element.tag != "blockquote":
            if not _FORWARDED.search(element.text_content()[:300]):
                _remove(element)
                cut = True
    blockquotes = [
        element
        for element in tree.iter("blockquote")
        if "gmail_quote" not in (element.get("class") or "")
        and not any(ancestor.tag == "blockquote" for ancestor in element.iterancestors())
    ]
    if blockquotes:
        _remove(blockquotes[-1])
        cut = True
    return cut


def _is_outlook_header(element: lxml_html.HtmlElement) -> bool:
    if element.tag != "div" or not _BORDER_TOP.search(element.get("style") or ""):
        return False
    return bool(_HEADER_START.match(element.text_content()[:200]))


def _is_rule_before_header(element: lxml_html.HtmlElement) -> bool:
    """An <hr> directly followed by "From:" or "Date:" (Hotmail, AOL, older Outlook)."""
    if element.tag != "hr":
        return False
    following = [element.tail or ""]
    for sibling in element.itersiblings():
        following.append(sibling.text_content())
        following.append(sibling.tail or "")
        if sum(map(len, following)) > 200:
            break
    return bool(_HEADER_START.match("".join(following)[:200]))


def _remove(element: lxml_html.HtmlElement) -> None:
    parent = element.getparent()
    if parent is None:
        return
    # Keep the text that follows the element inside its parent.
    tail = element.tail
    previous = element.getprevious()
    if tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(element)


def _remove_with_followers(element: lxml_html.HtmlElement) -> None:
    """Remove ``element`` and everything after it in document order, up to <body>.

    Clients wrap the header block (Outlook's border-top <div>) in containers of
    their own; the quoted message follows the container, not the block.
    """
    node = element
    while node is not None and node.tag not in ("body", "html"):
        parent = node.getparent()
        if parent is None:
            break
        for follower in list(node.itersiblings()):
            parent.remove(follower)
        node.tail = None
        node = parent
    parent = element.getparent()
    if parent is not None:
        parent.remove(element)
