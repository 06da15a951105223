"""Reply stripping on mail written for these tests (not from the scored corpus)."""

from __future__ import annotations

import pytest

from parsers.html_quotes import strip_html_quotes
from parsers.reply_quotes import strip_quotes
from parsers.reply_text import reply_text
from parsers.signatures import split_signature


@pytest.mark.parametrize(
    "header",
    [
        "On Mon, 3 Feb 2025 at 09:12, Jane Roe <jane@example.org> wrote:",
        "Am 03.02.2025 um 09:12 schrieb Jane Roe <jane@example.org>:",
        "Le lun. 3 févr. 2025 à 09:12, Jane Roe <jane@example.org> a écrit :",
        "El lun, 3 feb 2025 a las 09:12, Jane Roe (<jane@example.org>) escribió:",
        "Il giorno lun 3 feb 2025 alle ore 09:12 Jane Roe <jane@example.org> ha scritto:",
        "Op ma 3 feb. 2025 om 09:12 schreef Jane Roe <jane@example.org>:",
        "-----Original Message-----",
        "-----Ursprüngliche Nachricht-----",
        "Jane Roe <jane@example.org> wrote:",
    ],
)
def test_replies__reply_header_languages(header: str) -> None:
    text = f"The VPN works again, thanks.\n\n{header}\n> It is down.\n> Since 9:00.\n"
    assert strip_quotes(text) == "The VPN works again, thanks."


def test_replies__on_wrote_wrapped_over_two_lines() -> None:
    text = "Fixed.\n\nOn Mon, Feb 3, 2025 at 9:12 AM Jane Roe <\njane@example.org> wrote:\n\n> down"
    assert strip_quotes(text) == "Fixed."


def test_replies__outlook_from_sent_block() -> None:
    text = (
        "Please reset my password.\n\n"
        "________________________________\n"
        "From: IT Desk <desk@example.com>\n"
        "Sent: Monday, 3 February 2025 09:12\n"
        "To: Jane Roe\n"
        "Subject: RE: password\n\n"
        "Your ticket was opened.\n"
    )
    assert strip_quotes(text) == "Please reset my password."


def test_replies__outlook_german_block() -> None:
    text = (
        "Danke!\n\nVon: IT Desk\nGesendet: Montag, 3. Februar 2025 09:12\n"
        "An: Jane\nBetreff: x\n\nalt"
    )
    assert strip_quotes(text) == "Danke!"


def test_replies__flattened_from_sent_line() -> None:
    text = "OK for me.\nFrom: IT Desk Sent: Monday To: Jane Subject: RE: x\nold text"
    assert strip_quotes(text) == "OK for me."


def test_replies__plain_angle_quotes_at_end() -> None:
    text = "Yes please.\n\n> Shall we replace the toner?\n> It is empty.\n> Regards\n"
    assert strip_quotes(text) == "Yes please."


def test_replies__inline_answers_kept() -> None:
    text = "> Which floor?\nThird.\n> Which room?\nB12.\n"
    assert strip_quotes(text) == text


def test_replies__forward_kept_whole() -> None:
    text = "FYI\n\n---------- Forwarded message ---------\nFrom: a@example.com\nDate: Mon\n\nhello"
    assert strip_quotes(text) == text


def test_replies__sentence_starting_with_on_is_not_a_header() -> None:
    text = "On Monday the printer jammed.\nIt wrote garbage to the log."
    assert strip_quotes(text) == text


@pytest.mark.parametrize(
    "signature",
    [
        "-- \nJane Roe\nACME Ltd",
        "Sent from my iPhone",
        "Von meinem iPhone gesendet",
        "Best regards,\nJane",
        "Mit freundlichen Grüßen\nJane Roe",
        "-Jane",
    ],
)
def test_replies__signatures(signature: str) -> None:
    body, found = split_signature(f"The scanner on floor 3 is offline again.\n\n{signature}")
    assert body == "The scanner on floor 3 is offline again."
    assert found == signature


def test_replies__sentence_with_sent_from_is_not_a_signature() -> None:
    text = "Hello\n\nSent from my desk, is much easier than my phone."
    assert split_signature(text) == (text, None)


def test_replies__bullets_are_not_a_signature() -> None:
    text = "Steps:\n\n- reboot\n- log in"
    assert split_signature(text) == (text, None)


def test_replies__reply_text_combines_both() -> None:
    text = (
        "Works now.\n\nThanks,\nJane\n\n"
        "On Mon, Feb 3, 2025, IT Desk <desk@example.com> wrote:\n> ok"
    )
    assert reply_text(text) == "Works now."


def test_replies__html_gmail_quote() -> None:
    html = (
        '<div dir="ltr">Works now.</div><div class="gmail_quote">'
        '<div class="gmail_attr">On Mon, Feb 3, 2025 IT Desk wrote:</div>'
        "<blockquote>old</blockquote></div>"
    )
    assert strip_html_quotes(html) == "Works now."


def test_replies__html_outlook_reply_block() -> None:
    html = (
        "<div>Works now.</div><div id=divRplyFwdMsg><b>From:</b> IT Desk</div>"
        "<div>old message</div>"
    )
    assert strip_html_quotes(html) == "Works now."


def test_replies__html_outlook_header_block_inside_a_wrapper() -> None:
    html = (
        '<div class="WordSection1"><p>Still broken.</p><div>'
        '<div style="border:none;border-top:solid #E1E1E1 1.0pt">'
        "<p><b>From:</b> Support<br><b>Sent:</b> Tuesday<br><b>To:</b> John</p></div></div>"
        "<p>Please restart.</p></div>"
    )
    assert strip_html_quotes(html) == "Still broken."


def test_replies__html_everything_quoted_keeps_the_text() -> None:
    assert strip_html_quotes("<blockquote>Only a quote</blockquote>") == "Only a quote"
