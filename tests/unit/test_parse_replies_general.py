"""Reply stripping on ordinary mail, whole messages through parse_email.

Written for these tests (not taken from the scored corpus): the forms mail
clients produce in English, German, French, Spanish, Italian, Dutch and
Russian, and messages that must come through untouched.
"""

from __future__ import annotations

import base64

import pytest

from parsers.mail import parse_email


def _mail(body: str, *, html: bool = False, subject: str = "Re: Printer on floor 3") -> bytes:
    """A whole single-part message carrying ``body`` (UTF-8, base64 so any text survives)."""
    ctype = "text/html" if html else "text/plain"
    encoded = base64.encodebytes(body.encode("utf-8")).decode("ascii")
    return (
        "From: Bob Customer <bob@example.net>\r\n"
        "To: Help Desk <support@help.example>\r\n"
        f"Subject: {subject}\r\n"
        "Date: Tue, 04 Feb 2025 10:15:00 +0100\r\n"
        "Message-ID: <reply-1@example.net>\r\n"
        "MIME-Version: 1.0\r\n"
        f"Content-Type: {ctype}; charset=utf-8\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n" + encoded.replace("\n", "\r\n")
    ).encode("ascii")


def _new_text(body: str, *, html: bool = False) -> str:
    return parse_email(_mail(body, html=html)).new_text


def _alternative(plain: str, html: str) -> bytes:
    return (
        "From: Bob Customer <bob@example.net>\r\n"
        "To: support@help.example\r\n"
        "Subject: Re: VPN\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b1"\r\n'
        "\r\n"
        "--b1\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
        f"{plain}\r\n"
        "--b1\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
        f"{html}\r\n"
        "--b1--\r\n"
    ).encode()


# --- attribution line above a trailing ">" block -------------------------------------------


def test_attribution__on_weekday_wrote_without_a_date() -> None:
    body = "Still burning.\n\nOn Mon, Alice wrote:\n> It is burning.\n"
    assert _new_text(body) == "Still burning."


def test_attribution__name_wrote_alone() -> None:
    body = "Still burning.\n\nAlice wrote:\n> It is burning.\n"
    assert _new_text(body) == "Still burning."


def test_attribution__gmail_english_with_blank_line_before_quote() -> None:
    body = (
        "The new toner fixed it, thank you.\n\n"
        "On Mon, Feb 3, 2025 at 9:12 AM Help Desk <support@help.example> wrote:\n\n"
        "> Hello Bob,\n>\n> please try replacing the toner cartridge.\n>\n> Help Desk\n"
    )
    assert _new_text(body) == "The new toner fixed it, thank you."


def test_attribution__english_wrapped_over_two_lines() -> None:
    body = (
        "Works now.\n\n"
        "On Monday, February 3, 2025 at 09:12, Help Desk of ACME Corporation\n"
        "<support@help.example> wrote:\n"
        "> Did the restart help?\n"
    )
    assert _new_text(body) == "Works now."


def test_attribution__english_wrapped_verb_on_second_line() -> None:
    body = (
        "Works now.\n\n"
        "On Mon, Feb 3, 2025 at 9:12 AM Alice Example <alice@example.org>\n"
        "wrote:\n"
        "> Did the restart help?\n"
    )
    assert _new_text(body) == "Works now."


def test_attribution__german_am_schrieb() -> None:
    body = (
        "Der Drucker druckt wieder, danke.\n\n"
        "Am Montag schrieb Alice Beispiel:\n"
        "> Bitte starten Sie den Drucker neu.\n"
        "> Viele Grüße\n"
    )
    assert _new_text(body) == "Der Drucker druckt wieder, danke."


def test_attribution__german_thunderbird_wrapped() -> None:
    body = (
        "Das Problem besteht weiterhin.\n\n"
        "Am 03.02.25 um 09:12 schrieb Service Desk der Beispiel GmbH\n"
        "(support@help.example):\n"
        "> Ist das Problem behoben?\n"
    )
    assert _new_text(body) == "Das Problem besteht weiterhin."


def test_attribution__french_a_ecrit() -> None:
    body = (
        "Toujours en panne depuis ce matin.\n\n"
        "Le lundi, Alice Martin a écrit\u00a0:\n"  # French typography: no-break space
        "> Le problème est-il résolu ?\n"
    )
    assert _new_text(body) == "Toujours en panne depuis ce matin."


def test_attribution__french_wrapped_between_a_and_ecrit() -> None:
    body = (
        "Toujours en panne.\n\n"
        "Le lun. 3 févr. 2025 à 09:12, Support Technique de la Société Exemple a\n"
        "écrit :\n"
        "> Avez-vous redémarré le poste ?\n"
    )
    assert _new_text(body) == "Toujours en panne."


def test_attribution__spanish_escribio() -> None:
    body = (
        "Sigue sin funcionar la impresora.\n\n"
        "El lunes, María López escribió:\n"
        "> ¿Ha reiniciado el equipo?\n"
        "> Saludos\n"
    )
    assert _new_text(body) == "Sigue sin funcionar la impresora."


def test_attribution__italian_ha_scritto() -> None:
    body = (
        "La stampante funziona di nuovo, grazie.\n\n"
        "Il giorno lun, Giulia Rossi ha scritto:\n"
        "> Può riavviare la stampante?\n"
    )
    assert _new_text(body) == "La stampante funziona di nuovo, grazie."


def test_attribution__dutch_schreef_with_date_after_the_name() -> None:
    body = (
        "De printer doet het weer.\n\n"
        "Jan de Vries schreef op 3 februari 2025 09:12:\n"
        "> Kunt u de printer opnieuw opstarten?\n"
    )
    assert _new_text(body) == "De printer doet het weer."


def test_attribution__dutch_op_schreef() -> None:
    body = (
        "Nog steeds kapot.\n\n"
        "Op ma 3 feb 2025 om 09:12 schreef Helpdesk <support@help.example>:\n\n"
        "> Is het probleem opgelost?\n"
    )
    assert _new_text(body) == "Nog steeds kapot."


def test_attribution__russian_napisal_a() -> None:
    body = (
        "Принтер снова работает, спасибо.\n\n"
        "Иван Петров написал(а):\n"
        "> Попробуйте перезагрузить принтер.\n"
    )
    assert _new_text(body) == "Принтер снова работает, спасибо."


def test_attribution__russian_thunderbird_pishet() -> None:
    body = "Проблема осталась.\n\n03.02.2025 09:12, Служба поддержки пишет:\n> Проблема решена?\n"
    assert _new_text(body) == "Проблема осталась."


def test_attribution__russian_gmail_date_and_address() -> None:
    body = (
        "Проблема осталась.\n\n"
        "пн, 3 февр. 2025 г. в 09:12, Служба поддержки <support@help.example>:\n\n"
        "> Проблема решена?\n"
    )
    assert _new_text(body) == "Проблема осталась."


def test_attribution__quote_followed_by_a_signature() -> None:
    body = (
        "Still burning.\n\n"
        "Alice wrote:\n"
        "> It is burning.\n"
        "> Call the fire brigade.\n\n"
        "-- \nBob Customer\nACME Ltd, 3rd floor\n"
    )
    assert _new_text(body) == "Still burning."


def test_attribution__signature_above_the_attribution() -> None:
    body = (
        "Confirmed, the laptop is back.\n\n"
        "Sent from my iPhone\n\n"
        "On Feb 3, 2025, at 09:12, Help Desk <support@help.example> wrote:\n\n"
        "> Your laptop is ready for pickup.\n"
    )
    assert _new_text(body) == "Confirmed, the laptop is back."


def test_attribution__nested_history_goes_too() -> None:
    body = (
        "Thanks, all good now.\n\n"
        "On Tue, Alice wrote:\n"
        "> Did it work?\n"
        ">\n"
        "> On Mon, Bob Customer wrote:\n"
        ">> It does not work.\n"
    )
    assert _new_text(body) == "Thanks, all good now."


def test_attribution__nested_header_inside_the_quote() -> None:
    body = (
        "Thanks, all good now.\n\n"
        "Alice wrote:\n"
        "> Did it work?\n"
        ">\n"
        "> On Mon, 3 Feb 2025 at 09:00, Bob Customer <bob@example.net> wrote:\n"
        ">> It does not work.\n"
    )
    assert _new_text(body) == "Thanks, all good now."


def test_attribution__address_wrapped_to_the_second_line() -> None:
    body = (
        "Still burning.\n\nOn Monday, Alice Example\n<alice@example.org> wrote:\n> It is burning.\n"
    )
    assert _new_text(body) == "Still burning."


def test_attribution__line_above_a_one_line_attribution_is_kept() -> None:
    body = "Still burning.\nOn Monday I tested it again\nAlice wrote:\n> It is burning.\n"
    assert _new_text(body) == "Still burning.\nOn Monday I tested it again"


def test_attribution__quote_without_attribution_at_the_end() -> None:
    body = "Yes, please replace it.\n\n> Shall we replace the toner?\n"
    assert _new_text(body) == "Yes, please replace it."


# --- Outlook header blocks and separators ---------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "block"),
    [
        pytest.param(
            "Please close the ticket.",
            "From: Help Desk <support@help.example>\nSent: Monday, February 3, 2025 9:12 AM\n"
            "To: Bob Customer <bob@example.net>\nSubject: RE: Printer on floor 3",
            id="english",
        ),
        pytest.param(
            "Bitte schließen Sie das Ticket.",
            "Von: Help Desk <support@help.example>\nGesendet: Montag, 3. Februar 2025 09:12\n"
            "An: Bob Customer <bob@example.net>\nBetreff: AW: Drucker im 3. Stock",
            id="german",
        ),
        pytest.param(
            "Merci de clôturer le ticket.",
            "De : Help Desk <support@help.example>\nEnvoyé : lundi 3 février 2025 09:12\n"
            "À : Bob Customer <bob@example.net>\nObjet : RE: Imprimante du 3e étage",
            id="french",
        ),
        pytest.param(
            "Può chiudere il ticket, grazie.",
            "Da: Help Desk <support@help.example>\nInviato: lunedì 3 febbraio 2025 09:12\n"
            "A: Bob Customer <bob@example.net>\nOggetto: R: Stampante al terzo piano",
            id="italian",
        ),
        pytest.param(
            "Puede cerrar el ticket.",
            "De: Help Desk <support@help.example>\nEnviado: lunes, 3 de febrero de 2025 9:12\n"
            "Para: Bob Customer <bob@example.net>\nAsunto: RE: Impresora",
            id="spanish",
        ),
        pytest.param(
            "U mag het ticket sluiten.",
            "Van: Help Desk <support@help.example>\nVerzonden: maandag 3 februari 2025 09:12\n"
            "Aan: Bob Customer <bob@example.net>\nOnderwerp: RE: Printer",
            id="dutch",
        ),
        pytest.param(
            "Можно закрыть заявку.",
            "От: Help Desk <support@help.example>\nОтправлено: 3 февраля 2025 г. 9:12\n"
            "Кому: Bob Customer <bob@example.net>\nТема: RE: Принтер",
            id="russian",
        ),
    ],
)
def test_outlook__header_block_with_underscore_separator(reply: str, block: str) -> None:
    body = (
        f"{reply}\n\nBob\n\n________________________________\n{block}\n\n"
        "Hello Bob,\nthe printer has been repaired.\nHelp Desk\n"
    )
    assert _new_text(body) == f"{reply}\n\nBob"


def test_outlook__header_block_without_separator() -> None:
    body = (
        "Danke, das hat geholfen.\n\n"
        "Von: Help Desk [mailto:support@help.example]\n"
        "Gesendet: Montag, 3. Februar 2025 09:12\n"
        "An: Bob Customer\n"
        "Betreff: AW: VPN\n\n"
        "Bitte installieren Sie den neuen Client.\n"
    )
    assert _new_text(body) == "Danke, das hat geholfen."


@pytest.mark.parametrize(
    "separator",
    [
        "-----Original Message-----",
        "-----Ursprüngliche Nachricht-----",
        "-----Message d'origine-----",
        "-----Mensaje original-----",
        "-----Messaggio originale-----",
        "-----Oorspronkelijk bericht-----",
        "-----Исходное сообщение-----",
    ],
)
def test_separator__original_message(separator: str) -> None:
    body = (
        f"It still crashes on start.\n\n{separator}\n"
        "From: Help Desk\nSent: Monday, February 3, 2025 9:12 AM\nTo: Bob\nSubject: RE: crash\n\n"
        "Please update the application.\n"
    )
    assert _new_text(body) == "It still crashes on start."


def test_separator__original_message_without_fields() -> None:
    body = (
        "Yes, that is the right invoice.\n\n-----Original Message-----\n"
        "Please confirm the invoice number 4711.\n"
    )
    assert _new_text(body) == "Yes, that is the right invoice."


# --- forwards: the note and the forwarded message are both kept -----------------------------


def test_forward__gmail_note_and_message_kept() -> None:
    body = (
        "Please look at the error below, it came from our supplier.\n\n"
        "---------- Forwarded message ---------\n"
        "From: Supplier <noreply@supplier.example>\n"
        "Date: Mon, Feb 3, 2025 at 9:12 AM\n"
        "Subject: Delivery failed\n"
        "To: <bob@example.net>\n\n"
        "Your order 4711 could not be delivered.\n"
    )
    new_text = _new_text(body)
    assert new_text.startswith("Please look at the error below, it came from our supplier.")
    assert "Your order 4711 could not be delivered." in new_text


def test_forward__thunderbird_german_note_kept() -> None:
    body = (
        "Zur Info, siehe unten.\n\n"
        "-------- Weitergeleitete Nachricht --------\n"
        "Betreff: Lieferung\nDatum: Mon, 3 Feb 2025 09:12:00 +0100\n"
        "Von: Lieferant <noreply@supplier.example>\n\n"
        "Ihre Bestellung ist unterwegs.\n"
    )
    new_text = _new_text(body)
    assert new_text.startswith("Zur Info, siehe unten.")
    assert "Ihre Bestellung ist unterwegs." in new_text


@pytest.mark.parametrize(
    "separator",
    [
        "-------- Forwarded Message --------",
        "-------- Message transféré --------",
        "---------- Messaggio inoltrato ---------",
        "Begin forwarded message:",
    ],
)
def test_forward__other_clients_note_and_message_kept(separator: str) -> None:
    body = (
        "See the supplier's answer below.\n\n"
        f"{separator}\n"
        "From: Supplier <noreply@supplier.example>\n"
        "Subject: Delivery\n\n"
        "Delivery is planned for Friday.\n"
    )
    new_text = _new_text(body)
    assert new_text.startswith("See the supplier's answer below.")
    assert new_text.endswith("Delivery is planned for Friday.")


def test_forward__forwarded_quote_after_a_reply_is_history() -> None:
    body = (
        "Done, thank you.\n\n"
        "On Mon, Feb 3, 2025 at 9:12 AM Help Desk <support@help.example> wrote:\n"
        "> ---------- Forwarded message ---------\n"
        "> From: Supplier <noreply@supplier.example>\n"
        "> Your order shipped.\n"
    )
    assert _new_text(body) == "Done, thank you."


# --- signatures ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signature",
    [
        "-- \nBob Customer\nACME Ltd\n+1 555 0100",
        "Sent from my iPhone",
        "Sent from my Android phone",
        "Sent from Outlook for iOS",
        "Get Outlook for Android",
        "Envoyé de mon iPhone",
        "Von meinem iPhone gesendet",
        "Enviado desde mi iPhone",
        "Inviato da iPhone",
        "Verzonden vanaf mijn iPhone",
        "Отправлено с iPhone",
        "Get Outlook for iOS<https://aka.ms/o0ukef>",
        "Verstuurd vanaf mijn iPhone",
    ],
)
def test_signature__removed_from_the_reply(signature: str) -> None:
    body = f"The meeting room screen is dark again.\n\n{signature}\n"
    assert _new_text(body) == "The meeting room screen is dark again."


def test_signature__device_line_and_quote_together() -> None:
    body = (
        "Ok, tomorrow at 10 works.\n\n"
        "Get Outlook for Android\n\n"
        "________________________________\n"
        "From: Help Desk <support@help.example>\n"
        "Sent: Monday, February 3, 2025 9:12:00 AM\n"
        "To: Bob Customer <bob@example.net>\n"
        "Subject: Appointment\n\n"
        "Does tomorrow at 10 work for you?\n"
    )
    assert _new_text(body) == "Ok, tomorrow at 10 works."


# --- HTML ------------------------------------------------------------------------------------


def test_html__gmail_quote() -> None:
    html = (
        '<div dir="ltr">Still broken after the update.<br></div><br>'
        '<div class="gmail_quote gmail_quote_container"><div dir="ltr" class="gmail_attr">'
        "On Mon, Feb 3, 2025 at 9:12 AM Help Desk &lt;"
        '<a href="mailto:support@help.example">support@help.example</a>&gt; wrote:<br></div>'
        '<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex">'
        "Please install the update.</blockquote></div>"
    )
    assert _new_text(html, html=True) == "Still broken after the update."


def test_html__apple_mail_blockquote_cite() -> None:
    html = (
        '<html><body><div dir="auto">Still broken after the update.</div>'
        '<div dir="auto"><br><blockquote type="cite">'
        "<div>On 3 Feb 2025, at 09:12, Help Desk &lt;support@help.example&gt; wrote:</div>"
        '<br class="Apple-interchange-newline"><div><div>Please install the update.</div>'
        "</div></blockquote></div></body></html>"
    )
    assert _new_text(html, html=True) == "Still broken after the update."


def test_html__ios_mail_attribution_in_its_own_blockquote() -> None:
    html = (
        '<html><body><div dir="ltr">Noch immer kaputt.</div><div dir="ltr"><br>'
        '<blockquote type="cite">Am 03.02.2025 um 09:12 schrieb Help Desk '
        "&lt;support@help.example&gt;:<br><br></blockquote></div>"
        '<blockquote type="cite"><div dir="ltr">Bitte Update installieren.</div></blockquote>'
        '<div dir="ltr">Von meinem iPhone gesendet</div></body></html>'
    )
    assert _new_text(html, html=True) == "Noch immer kaputt."


def test_html__thunderbird_cite_prefix_outside_the_blockquote() -> None:
    html = (
        "<html><body><p>Ça ne marche toujours pas.</p>"
        '<div class="moz-cite-prefix">Le lundi, Alice Martin a écrit&nbsp;:<br></div>'
        '<blockquote type="cite" cite="mid:1@help.example">Avez-vous redémarré ?</blockquote>'
        "</body></html>"
    )
    assert _new_text(html, html=True) == "Ça ne marche toujours pas."


def test_html__outlook_web_reply_block() -> None:
    html = (
        '<div dir="ltr">Bitte schließen Sie das Ticket.</div><hr style="display:inline-block">'
        '<div id="divRplyFwdMsg" dir="ltr"><b>Von:</b> Help Desk &lt;support@help.example&gt;'
        "<br><b>Gesendet:</b> Montag, 3. Februar 2025 09:12<br><b>An:</b> Bob<br>"
        "<b>Betreff:</b> AW: Drucker</div><div>Der Drucker ist repariert.</div>"
    )
    assert _new_text(html, html=True) == "Bitte schließen Sie das Ticket."


def test_html__plain_part_preferred_when_both_present() -> None:
    raw = _alternative(
        "Still down.\n\nAlice wrote:\n> Is the VPN down?\n",
        '<div>Still down.</div><div class="gmail_quote">Alice wrote:'
        "<blockquote>Is the VPN down?</blockquote></div>",
    )
    assert parse_email(raw).new_text == "Still down."


# --- what must NOT be stripped -----------------------------------------------------------------


def test_keep__plain_message_without_quote() -> None:
    body = "Hello,\n\nthe projector in room B12 shows no picture.\nCould someone check it?\n"
    assert _new_text(body) == body.strip()


def test_keep__wrote_in_the_middle_of_a_sentence() -> None:
    body = (
        "Hello,\n\nmy colleague wrote: the server is down since 9:00, can you check?\n"
        "Alice wrote: nothing else.\n"
    )
    assert _new_text(body) == body.strip()


def test_keep__one_quoted_line_answered_below() -> None:
    body = "Hi,\n\n> Is the invoice already paid?\n\nYes, we paid it yesterday by bank transfer.\n"
    assert _new_text(body) == body.strip()


def test_keep__interleaved_answers_with_attribution() -> None:
    body = (
        "On Mon, Alice wrote:\n"
        "> Which floor are you on?\n\n"
        "Third floor.\n\n"
        "> Which room?\n\n"
        "B12, next to the kitchen.\n"
    )
    new_text = _new_text(body)
    assert "Third floor." in new_text
    assert "B12, next to the kitchen." in new_text


def test_keep__interleaved_answers_trailing_quote_goes() -> None:
    body = (
        "> Which floor are you on?\n"
        "Third floor.\n"
        "> Which room?\n"
        "B12.\n\n"
        "Alice wrote:\n"
        "> Thanks, we will send someone.\n"
        "> Alice\n"
    )
    assert _new_text(body) == "> Which floor are you on?\nThird floor.\n> Which room?\nB12."


def test_keep__bottom_posted_answer_below_the_quote() -> None:
    body = (
        "Alice wrote:\n"
        "> Has the technician come by?\n"
        "> He was scheduled for 10:00.\n\n"
        "Yes, he fixed the printer at 10:30.\n"
    )
    new_text = _new_text(body)
    assert "Yes, he fixed the printer at 10:30." in new_text


def test_keep__quote_with_text_below_it_is_not_trailing() -> None:
    body = (
        "See the error message:\n\n"
        "> Error 0x80070005: access denied\n\n"
        "It appears every time I open Outlook.\n"
    )
    assert _new_text(body) == body.strip()


def test_keep__only_a_quote_keeps_the_whole_text() -> None:
    # Nothing new was written: the text as sent is kept rather than an empty reply.
    body = "On Mon, Alice wrote:\n> It is burning.\n"
    assert _new_text(body) == body.strip()


def test_keep__colon_line_without_verb_above_quote_is_kept() -> None:
    body = "It still fails. This is the log:\n> error: disk full\n> error: disk full\n"
    assert _new_text(body).startswith("It still fails. This is the log:")


def test_keep__sent_from_sentence_is_not_a_signature() -> None:
    body = "Hello\n\nSent from my desk it works, from my phone it does not.\n"
    assert _new_text(body) == body.strip()
