"""The shortcut of reply stripping: text `_plain` passes is what marking every
line would give back whole (parsers/reply_quotes.py).

Whenever `_plain` says a text holds no quote, separator or reply header, the
full marking must cut nothing: checked on the corpus's replies and messages and
on generated texts built from the pieces those forms are made of.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parsers.limits import MAX_QUOTE_SCAN_CHARS, MAX_QUOTE_SCAN_LINES
from parsers.mail import parse_email
from parsers.reply_quotes import _plain, _strip_marked, strip_quotes
from tests.corpus import require_corpus


def _pieces(text: str) -> tuple[str, list[str]]:
    head = text[:MAX_QUOTE_SCAN_CHARS].replace("\r\n", "\n")
    return head, head.split("\n", MAX_QUOTE_SCAN_LINES)[:MAX_QUOTE_SCAN_LINES]


def _shortcut_holds(text: str) -> bool:
    """True when the shortcut was taken (and then marking agreed); False when not taken."""
    head, scanned = _pieces(text)
    if not _plain(head, scanned):
        return False
    assert _strip_marked(text, head, scanned) == text, text
    return True


def test_reply_shortcut__plain_paragraphs_take_it_and_quotes_do_not() -> None:
    plain = "Hello,\n\nthe export fails since Monday 3 Feb (we tried 2 browsers).\n\nThanks\nBob"
    assert _shortcut_holds(plain)
    assert strip_quotes(plain) == plain
    for history in ("> the old text\n> more", "On Mon, 3 Feb 2025 at 10:00, Jane wrote:\n> x",
                    "-----Original Message-----\nFrom: Jane", "Von: Jane Roe\nGesendet: heute",
                    "Jane Roe <jane@example.org> wrote:\n> x",
                    "W dniu 3 lutego 2025 Jan napisał\n> x", "\u200fOn Mon Jane wrote:\n> x"):
        text = f"Fixed now.\n\n{history}"
        assert not _shortcut_holds(text), history
        assert strip_quotes(text) == "Fixed now.", history


# One text per way a line is more than text: each is cut by marking, so the
# shortcut must not pass it (each of `_plain`'s tests but the first, an early
# way out for quoted replies, is needed by one of these).
CUT = [
    "Thanks!\n\n03.02.2025 09:12, Иван Иванов пишет:\nthe old text",  # ends in a colon
    "Thanks!\n\nOn 3 Feb 2025 Jane wrote\nthe old text",              # a lead, no colon
    "Thanks!\n\nFrom: Jane Roe\nSent: Monday\nthe old text",         # a field block
    "Thanks!\n\n-----Original Message-----\nthe old text",             # a separator
    "Thanks!\n\n   -----Original Message-----\nthe old text",          # indented
    # A lead only a case-insensitive match finds ("İl" for "Il") counts beside an
    # address, a quoted name or an angle bracket: "İl" alone is text.
    "Thanks!\n\nİl 3 febbraio 2025 mario@example.org ha scritto\nthe old text",
    'Thanks!\n\nİl 3 febbraio 2025 "Mario" ha scritto\nthe old text',
    "Thanks!\n\nİl 3 febbraio 2025 Mario <mario ha scritto\nthe old text",
    "Thanks!\n\n\u200fOn 3 Feb 2025 Jane wrote\nthe old text",       # directional marks
    "Thanks!\n\n> the old text\n> more of it",                         # a quote
]


@pytest.mark.parametrize("text", CUT)
def test_reply_shortcut__texts_marking_cuts_do_not_take_it(text: str) -> None:
    assert strip_quotes(text) == "Thanks!"
    assert not _shortcut_holds(text)


def test_reply_shortcut__agrees_with_marking_on_the_corpus() -> None:
    root = require_corpus()
    texts = [path.read_text("utf-8", "replace")
             for path in sorted((root / "replies").glob("*/raw/*")) if path.is_file()]
    texts += [parse_email(path.read_bytes()).text
              for path in sorted((root / "mime" / "raw").glob("*")) if path.is_file()]
    taken = sum(_shortcut_holds(text) for text in texts if text.strip())
    assert taken >= 10, "some corpus texts are plain paragraphs"
    assert taken < len(texts), "and most replies are not"


_LINE_PIECES = [
    "Hello", "We tried 2 times", "the export fails", "On", "on", "Monday,", "3 Feb 2025",
    "at 10:00", "10.30", "Jane", "Jane Roe", "wrote", "wrote:", "a écrit :", "schrieb",
    "napisał", "Am", "Le", "El", "W dniu", "Op", "В", "пишет:", "From:", "Von:", "De :",
    "Sent:", "Date:", "Subject:", "To:", "-----Original Message-----", "---", "___", "==",
    "*", "**", "~~", "-", ">", "> quoted", "<jane@example.org>", "jane@example.org", '"Jane"',
    "Sent from my iPhone", "Regards,", "Thanks", "2011/4/7", "03.02.2025", "in", "the",
    "Forwarded message", "Begin forwarded message:", "：", "\u200f", "  ", "\t", "",
]
_LINE = st.lists(st.sampled_from(_LINE_PIECES), max_size=4).map(" ".join)


@settings(max_examples=1500, deadline=None)
@given(st.lists(_LINE, min_size=1, max_size=8).map("\n".join))
def test_reply_shortcut__agrees_with_marking_on_generated_texts(text: str) -> None:
    _shortcut_holds(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["Hello there", "We tried 2 browsers", "Thanks", "Bob",
                                 "the export fails", "Once more", "Without it", ""]),
                min_size=1, max_size=10).map("\n".join))
def test_reply_shortcut__paragraphs_of_plain_words_take_it(text: str) -> None:
    assert _shortcut_holds(text)
