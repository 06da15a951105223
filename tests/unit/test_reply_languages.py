"""Reply headers, separators, device lines and sign-offs beyond the seven first languages.

Written for this project from the clients' templates in parsers/reply_phrases.py
(as Gmail, Outlook, Apple Mail, Thunderbird and the mobile apps write them), with
made-up names, dates and texts; plus what must stay: the customer's own "wrote:",
bottom posting and inline answers.
"""

from __future__ import annotations

import pytest

from parsers.reply_phrases import (
    APP_LINES,
    DEVICE_LINES,
    FORWARD_SEPARATORS,
    HEADER_FIELDS,
    ORIGINAL_SEPARATORS,
    HeaderFields,
)
from parsers.reply_quotes import strip_quotes
from parsers.reply_text import reply_text
from parsers.signatures import split_signature

REPLY = "The scanner on floor 2 works again."
QUOTE = "> Is the scanner still offline?\n> Please check the cable.\n"


def _quoted(header: str, reply: str = REPLY) -> str:
    return f"{reply}\n\n{header}\n{QUOTE}"


def _unquoted(header: str, reply: str = REPLY) -> str:
    """A header above the earlier message with no ">" marks (Outlook, Gmail mobile)."""
    return f"{reply}\n\n{header}\n\nIs the scanner still offline?\nPlease check the cable.\n"


POLISH = [
    # Gmail: date first, "napisał(a):"
    "pon., 3 lut 2025 o 09:12 Jan Kowalski <jan.kowalski@example.pl> napisał(a):",
    "wt., 11 mar 2025 o 17:40 Anna Nowak <anna@example.pl> napisał(a):",
    "śr., 5 cze 2024 o 08:03 Biuro <biuro@example.pl> napisał(a):",
    "czw., 2 sty 2025 o 12:00 serwis@example.pl <serwis@example.pl> napisał(a):",
    "pt., 28 lut 2025 o 23:59 Piotr Wiśniewski <piotr@example.pl> napisał(a):",
    # Apple Mail / Thunderbird: "W dniu ..."
    "W dniu 03.02.2025 o 09:12, Jan Kowalski pisze:",
    "W dniu 3 lut 2025, o godz. 09:12, Anna Nowak <anna@example.pl> napisał(a):",
    "W dniu 2025-02-03 09:12, Biuro Obsługi pisze:",
    "W dniu 11.03.2025 17:40, Piotr <piotr@example.pl> pisze:",
    "Dnia 3 lutego 2025 09:12 Jan Kowalski <jan@example.pl> napisał:",
    "W dniu pon., 3 lut 2025 o 09:12 Jan Kowalski <jan@example.pl>\nnapisał(a):",
]
DUTCH = [
    "Op ma 3 feb 2025 om 09:12 schreef Jan de Vries <jan@example.nl>:",
    "Op di 11 mrt. 2025 om 17:40 schreef Anna Jansen <anna@example.nl>:",
    "Op 3 feb. 2025, om 09:12 heeft Jan de Vries <jan@example.nl> het volgende geschreven:",
    "Op 03-02-2025 09:12, Jan de Vries schreef:",
    "Op wo 5 jun. 2024 om 08:03 schreef Helpdesk <helpdesk@example.nl>:",
    "Op 2025-02-03 om 09:12 schreef Pieter Bakker:",
    "Op vr 28 feb. 2025 om 23:59 schreef Sanne Visser <sanne@example.nl>:",
    "Op 11 mrt. 2025 om 17:40 heeft Anna Jansen het volgende geschreven:",
    "Op 3 februari 2025 om 09:12 schreef Jan de Vries <\njan@example.nl>:",
    "Op za 1 mrt. 2025 om 10:00 schreef Kees <kees@example.nl>:",
]
ITALIAN = [
    "Il giorno lun 3 feb 2025 alle ore 09:12 Mario Rossi <mario@example.it> ha scritto:",
    "Il giorno mar 11 mar 2025 alle ore 17:40 Giulia Bianchi <giulia@example.it> ha scritto:",
    "Il 03/02/2025 09:12, Mario Rossi ha scritto:",
    "Il giorno 3 feb 2025, alle ore 09:12, Mario Rossi <mario@example.it> ha scritto:",
    "Il 3 febbraio 2025 alle 09:12, Ufficio Tecnico <ufficio@example.it> ha scritto:",
    "Il giorno mer 5 giu 2024 alle ore 08:03 Luca <luca@example.it> ha scritto:",
    "Il 2025-02-03 09:12, Anna Verdi ha scritto:",
    "Il giorno ven 28 feb 2025 alle ore 23:59 Sara Neri <sara@example.it> ha\nscritto:",
    "Il 11/03/2025 17:40, Giulia Bianchi <giulia@example.it> ha scritto:",
    "Il giorno sab 1 mar 2025 alle ore 10:00 Paolo <paolo@example.it> ha scritto:",
]
UKRAINIAN_RUSSIAN = [
    "пн, 3 лют. 2025 р. о 09:12 Олена Коваль <olena@example.ua> пише:",
    "вт, 11 бер. 2025 р. о 17:40 Іван Петренко <ivan@example.ua> пише:",
    "03.02.2025 09:12, Олена Коваль пише:",
    "3 лют. 2025 р. о 09:12 Олена Коваль <olena@example.ua> написав(ла):",
    "пн, 3 февр. 2025 г. в 09:12, Иван Иванов <ivan@example.ru>:",
    "вт, 11 мар. 2025 г. в 17:40, Мария Смирнова <maria@example.ru>:",
    "03.02.2025 09:12, Иван Иванов пишет:",
    "3 февр. 2025 г., в 9:12, Иван Иванов <ivan@example.ru> написал(а):",
    '03.02.2025, 09:12, "Иван Иванов" <ivan@example.ru>:',
    "Понедельник, 3 февраля 2025, 9:12 +03:00 от Иван Иванов <ivan@example.ru>:",
]
NORDIC = [
    "Den mån 3 feb. 2025 kl 09:12 skrev Erik Svensson <erik@example.se>:",
    "3 feb. 2025 kl. 09:12 skrev Anna Lind <anna@example.se>:",
    "Den 2025-02-03 kl. 09:12, skrev Erik Svensson:",
    "Den man. 3. feb. 2025 kl. 09.12 skrev Mette Hansen <mette@example.dk>:",
    "Den 3. feb. 2025 kl. 09.12 skrev Lars Jensen <lars@example.dk>:",
    "man. 3. feb. 2025 kl. 09:12 skrev Ola Nordmann <ola@example.no>:",
    "Den 03.02.2025 09:12, skrev Kari Nordmann:",
    "tir. 11. mar. 2025 kl. 17:40 skrev Ola Nordmann <ola@example.no>:",
    "Den tis 11 mars 2025 kl 17:40 skrev Support <support@example.se>:",
    "On 3 Feb 2025, at 09:12, Mette Hansen <mette@example.dk> skrev:",
]
CATALAN = [
    "El dl., 3 de febr. 2025 a les 9:12, Jordi Puig (<jordi@example.cat>) va escriure:",
    "El dt., 11 de març 2025 a les 17:40, Marta Vila (<marta@example.cat>) va escriure:",
    "El 03/02/2025 a les 9:12, Jordi Puig ha escrit:",
    "El 3 de febr. 2025, a les 9:12, Jordi Puig <jordi@example.cat> va escriure:",
    "El dc., 5 de juny 2024 a les 8:03, Oficina (<oficina@example.cat>) va escriure:",
    "El 2025-02-03 9:12, Marta Vila ha escrit:",
    "El dv., 28 de febr. 2025 a les 23:59, Pere Soler (<pere@example.cat>) va escriure:",
    "El 11/03/2025 a les 17:40, Marta Vila <marta@example.cat> ha escrit:",
    "El dl., 3 de febr. 2025 a les 9:12, Jordi Puig (<jordi@example.cat>)\nva escriure:",
    "El ds., 1 de març 2025 a les 10:00, Anna (<anna@example.cat>) va escriure:",
]
KOREAN = [
    "2025년 2월 3일 (월) 오전 9:12, 김민수 <minsu@example.kr>님이 작성:",
    "2025년 3월 11일 (화) 오후 5:40, 이지은 <jieun@example.kr>님이 작성:",
    "2025. 2. 3. 오전 9:12, 김민수 <minsu@example.kr> 작성:",
    "2024년 6월 5일 (수) 오전 8:03, 지원팀 <support@example.kr>님이 작성:",
    "2025. 3. 11. 오후 5:40, 이지은 <jieun@example.kr> 작성:",
    "2025년 2월 28일 (금) 오후 11:59, 박서준 <seojun@example.kr>님이 작성:",
    "2025년 2월 3일 (월) 오전 9:12, Minsu Kim <minsu@example.kr>님이 작성:",
    "2025. 3. 1. 오전 10:00, 최유나 <yuna@example.kr> 작성:",
    "2025년 2월 3일 (월) 오전 9:12, 김민수 <\nminsu@example.kr>님이 작성:",
    "2025년 1월 2일 (목) 오후 12:00, 정하늘 <haneul@example.kr>님이 작성:",
]
ARABIC = [
    "في الاثنين، 3 فبراير 2025 في 9:12 ص، أحمد علي <ahmed@example.eg> كتب:",
    "في الثلاثاء، 11 مارس 2025 في 5:40 م، سارة محمد <sara@example.eg> كتب:",
    "\u202bفي الاثنين، 3 فبراير 2025 في 9:12 ص، \u202aأحمد علي\u202c\u200f"
    " <\u202aahmed@example.eg\u202c\u200f> كتب:\u202c",
    "في 03/02/2025 09:12، كتب أحمد علي:",
    "في الأربعاء، 5 يونيو 2024 في 8:03 ص، الدعم الفني <support@example.eg> كتب:",
    "\u200fفي 11/03/2025 17:40، سارة محمد <sara@example.eg> كتب:",
    "في الجمعة، 28 فبراير 2025 في 11:59 م، خالد <khaled@example.eg> كتب:",
    "في 2025-02-03 09:12، كتب خالد حسن:",
    "في السبت، 1 مارس 2025 في 10:00 ص، ليلى <layla@example.eg> كتب:",
    "في الاثنين، 3 فبراير 2025 في 9:12 ص، أحمد علي <ahmed@example.eg>\nكتب:",
]
HUNGARIAN = [
    "Kovács Péter <peter@example.hu> ezt írta (időpont: 2025. febr. 3., H, 9:12):",
    "Nagy Anna <anna@example.hu> ezt írta (időpont: 2025. márc. 11., K, 17:40):",
    "2025. 02. 03. 9:12 keltezéssel, Kovács Péter írta:",
    "2025. febr. 3. dátummal, 9:12 időpontban Kovács Péter <peter@example.hu> írta:",
    "2024. 06. 05. 8:03 keltezéssel, Ügyfélszolgálat írta:",
    "Szabó Eszter <eszter@example.hu> ezt írta (időpont: 2025. febr. 28., P, 23:59):",
    "2025. 03. 11. 17:40 keltezéssel, Nagy Anna <anna@example.hu> írta:",
    "2025. márc. 1. dátummal, 10:00 időpontban Tóth Gábor <gabor@example.hu> írta:",
    "Kovács Péter <peter@example.hu> ezt írta (időpont: 2025. febr. 3.,\nH, 9:12):",
    "2025. 01. 02. 12:00 keltezéssel, Horváth Zsófia írta:",
]
ROMANIAN = [
    "În lun., 3 feb. 2025 la 09:12, Andrei Popescu <andrei@example.ro> a scris:",
    "În mar., 11 mar. 2025 la 17:40, Ioana Ionescu <ioana@example.ro> a scris:",
    "Pe 03.02.2025 09:12, Andrei Popescu a scris:",
    "Pe 3 feb. 2025, la 09:12, Andrei Popescu <andrei@example.ro> a scris:",
    "În mie., 5 iun. 2024 la 08:03, Suport <suport@example.ro> a scris:",
    "Pe 2025-02-03 09:12, Ioana Ionescu a scris:",
    "În vin., 28 feb. 2025 la 23:59, Mihai Stan <mihai@example.ro> a scris:",
    "Pe 11.03.2025 17:40, Ioana Ionescu <ioana@example.ro> a scris:",
    "În lun., 3 feb. 2025 la 09:12, Andrei Popescu <andrei@example.ro> a\nscris:",
    "În sâm., 1 mar. 2025 la 10:00, Elena <elena@example.ro> a scris:",
]
DATE_FIRST = [
    "2025-02-03 9:12 GMT+01:00 Jane Roe <jane@example.org>:",
    "03.02.2025 09:12, Jane Roe <jane@example.org>:",
    "2025/02/03 9:12 Jane Roe <jane@example.org>:",
    "2025年2月3日(月) 9:12 山田太郎 <taro@example.jp>:",
    "2025/02/03 9:12、山田太郎 <taro@example.jp>のメール:",
    "Mon, 3 Feb 2025 09:12:00 +0100 Jane Roe <jane@example.org>:",
    "3 Feb 2025, at 09:12, Jane Roe <jane@example.org> wrote:",
    "2025-02-03 09:12 GMT+02:00 Jaan Tamm <jaan@example.ee> kirjutas:",
    "2025-02-03, pr, 09:12 Jonas Jonaitis <jonas@example.lt> rašė:",
    "po 3. 2. 2025 v 9:12 odesílatel Jan Novák <jan@example.cz> napsal:",
    "Jane Roe <jane@example.org>, 3 Şub 2025 Pzt, 09:12 tarihinde şunu yazdı:",
    "Jane Roe <jane@example.org> 于2025年2月3日周一 09:12写道：",
]
WRAPPED = [
    "On Mon, 3 Feb 2025 at 09:12, Jane Roe <\njane@example.org> wrote:",
    "On Mon, 3 Feb 2025 at 09:12, Jane Roe\n<jane@example.org> wrote:",
    "On Mon, 3 Feb 2025 at 09:12, Jane Roe <jane@example.org>\nwrote:",
    "On Monday, 3 February 2025 at 09:12, Jane Roe from the\nService Desk wrote:",
    "Am Mo., 3. Feb. 2025 um 09:12 Uhr schrieb Jane Roe <\njane@example.org>:",
    "Le lun. 3 févr. 2025 à 09:12, Jane Roe\n<jane@example.org> a écrit :",
    "2025-02-03 9:12 GMT+01:00 Jane Roe\n<jane@example.org>:",
    "pon., 3 lut 2025 o 09:12 Jan Kowalski\n<jan@example.pl> napisał(a):",
    "El lun, 3 feb 2025 a las 09:12, Jane Roe (<\njane@example.org>) escribió:",
    "On Mon, Feb 3, 2025 at 9:12 AM\nJane Roe via Service Desk <desk@example.org>\nwrote:",
]


# The other languages of the table, one Gmail-style header each (plus a few clients' forms).
MORE_LANGUAGES = [
    "Jane Roe <jane@example.org> schrieb am 03.02.2025 um 09:12:",
    "Jane Roe <jane@example.org> schrieb am\n03.02.2025 um 09:12:",
    "Jane Roe/ORG@ORG wrote on 03.02.2025 09:12:",
    "Em seg., 3 de fev. de 2025 às 09:12, Jane Roe <jane@example.org> escreveu:",
    "Jane Roe <jane@example.org> escreveu no dia segunda, 3/02/2025 à(s) 09:12:",
    "ma 3. helmik. 2025 klo 9.12 Jane Roe (jane@example.org) kirjoitti:",
    "Στις Δευ 3 Φεβ 2025 στις 9:12 π.μ., ο/η Jane Roe <jane@example.org> έγραψε:",
    "Vào Th 2, 3 thg 2, 2025 vào lúc 09:12 Jane Roe <jane@example.org> đã viết:",
    "Pada tanggal Sen, 3 Feb 2025 pukul 09.12 Jane Roe <jane@example.org> menulis:",
    "เมื่อ จ. 3 ก.พ. 2025 เวลา 09:12 Jane Roe <jane@example.org> เขียนว่า:",
    "pon, 3. velj 2025. u 09:12 Jane Roe <jane@example.org> napisao je:",
    "пн, 3.02.2025 г. в 9:12 ч. Jane Roe <jane@example.org> написа:",
    "pirmd., 2025. g. 3. febr., plkst. 09:12 — lietotājs Jane Roe (<jane@example.org>) rakstīja:",
    "V pon., 3. feb. 2025 ob 09:12 je oseba Jane Roe <jane@example.org> napisala:",
    "3 Şub 2025 Pzt 09:12 tarihinde Jane Roe <jane@example.org> şunu yazdı:",
    "sø. 2. feb. 2025 kl. 09.12 skrev Ola Nordmann <ola@example.no>:",
    "po 3. 2. 2025 o 9:12 Ján Novák <jan@example.sk> napísal(a):",
    "Dne 03. 02. 25 v 9:12 Jan Novák napsal(a):",
]

ALL_HEADERS = (
    POLISH
    + DUTCH
    + ITALIAN
    + UKRAINIAN_RUSSIAN
    + NORDIC
    + CATALAN
    + KOREAN
    + ARABIC
    + HUNGARIAN
    + ROMANIAN
    + DATE_FIRST
    + WRAPPED
    + MORE_LANGUAGES
)


@pytest.mark.parametrize("header", ALL_HEADERS)
def test_languages__reply_header_above_a_quote(header: str) -> None:
    assert strip_quotes(_quoted(header)) == REPLY


@pytest.mark.parametrize("header", ALL_HEADERS)
def test_languages__reply_header_above_unquoted_history(header: str) -> None:
    """Gmail mobile and others put no ">" marks: a header with an address still cuts."""
    assert strip_quotes(_unquoted(header)) == REPLY


@pytest.mark.parametrize("header", ALL_HEADERS)
def test_languages__whole_reply_with_signature_and_device_line(header: str) -> None:
    signature = "Kind regards\nAlex\n\nSent from my Wiko View"
    text = f"{REPLY}\n\n{signature}\n\n{header}\n{QUOTE}> --\n> Desk\n"
    assert reply_text(text) == REPLY


@pytest.mark.parametrize("phrase", [p.text for p in ORIGINAL_SEPARATORS])
@pytest.mark.parametrize("edge", ["-----", "-------- ", "***** ", "_____ "])
def test_separators__original_message(phrase: str, edge: str) -> None:
    closing = edge[::-1]
    text = f"{REPLY}\n\n{edge}{phrase}{closing}\nFrom: Desk\nIs the scanner still offline?\n"
    assert strip_quotes(text) == REPLY


@pytest.mark.parametrize("phrase", [p.text for p in FORWARD_SEPARATORS])
def test_separators__forward_is_kept_whole(phrase: str) -> None:
    """A forward with a note above it: the forwarded message is the content."""
    text = (
        f"See below.\n\n---------- {phrase} ---------\nFrom: a@example.com\n\nThe printer is down."
    )
    assert strip_quotes(text) == text


@pytest.mark.parametrize(
    "phrase",
    [
        "Begin forwarded message",
        "Anfang der weitergeleiteten Nachricht",
        "Début du message réexpédié",
        "Inizio messaggio inoltrato",
    ],
)
def test_separators__apple_forward_without_dashes(phrase: str) -> None:
    text = f"See below.\n\n{phrase}:\n\nFrom: a@example.com\nThe printer is down."
    assert strip_quotes(text) == text


@pytest.mark.parametrize("fields", HEADER_FIELDS, ids=lambda fields: fields.lang)
@pytest.mark.parametrize("rule", ["", "________________________________\n"])
def test_separators__outlook_field_block(fields: HeaderFields, rule: str) -> None:
    sent, subject = fields.others[0], fields.others[-1]
    block = (
        f"{fields.sender[0]}: Desk <desk@example.org>\n{sent}: 3.2.2025 9:12\n{subject}: printer"
    )
    text = f"{REPLY}\n\n{rule}{block}\n\nIs the scanner still offline?\n"
    assert strip_quotes(text) == REPLY


@pytest.mark.parametrize("template", [p.text for p in APP_LINES])
def test_device_lines__app_advert_only_with_an_app_name(template: str) -> None:
    advert = template.replace("%device%", "Outlook for Android")
    assert reply_text(f"{REPLY}\n\n{advert}") == REPLY
    other = template.replace("%device%", "Ready For Launch")
    assert reply_text(f"{REPLY}\n\n{other}") == f"{REPLY}\n\n{other}"


DEVICE_NAMES = ["iPhone", "Wiko View 3", "Samsung Galaxy S23", "Huawei P30", "BlackBerry 10"]


@pytest.mark.parametrize("template", sorted({p.text for p in DEVICE_LINES} - {"Get %device%"}))
def test_device_lines__every_template_with_any_device(template: str) -> None:
    for device in DEVICE_NAMES:
        line = template.replace("%device%", device)
        assert reply_text(f"{REPLY}\n\n{line}\n") == REPLY, line


@pytest.mark.parametrize(
    "line",
    [
        "Sent from Outlook for Android",
        "Sent from my Wiko Lenny5",
        "Sent from Yahoo Mail on Android",
        "Sent from Mail for Windows",
        "Sent from my Xiaomi Redmi Note 12.",
        "Get Outlook for iOS<https://aka.ms/o0ukef>",
        "Von meinem Huawei-Smartphone gesendet",
        "Enviado desde mi smartphone Samsung Galaxy.",
        "Wysłane z mojego iPhone'a",
        "Отправлено из мобильной Почты Mail.ru",
        "\u200fأرسلت من iPhone الخاص بي",
        "发自我的华为手机",
        "iPhone'umdan gönderildi",
        "Samsung cihazımdan gönderildi",
        "iPhone-omról küldve",
    ],
)
def test_device_lines__apps_and_phones(line: str) -> None:
    assert reply_text(f"{REPLY}\n\n{line}") == REPLY


SIGN_OFF_ENDINGS = [
    "Kind regards",
    "Freundliche Grüsse",
    "Mit freundlichen Grüßen,",
    "Met vriendelijke groet",
    "Pozdrawiam",
    "Cordiali saluti",
    "С уважением,",
    "З повагою",
    "Med vänliga hälsningar",
    "Med venlig hilsen",
    "Üdvözlettel",
    "Cu stimă,",
    "Salutacions",
    "مع التحية",
]


@pytest.mark.parametrize("closing", SIGN_OFF_ENDINGS)
def test_sign_offs__ending_the_message_without_a_name(closing: str) -> None:
    assert reply_text(f"{REPLY}\n\n{closing}") == REPLY
    assert reply_text(f"{REPLY}\n{closing}") == REPLY


@pytest.mark.parametrize("closing", SIGN_OFF_ENDINGS[:10])
def test_sign_offs__with_a_name_below(closing: str) -> None:
    assert reply_text(f"{REPLY}\n\n{closing}\nAlex Example\nService Desk") == REPLY


RTL = [
    ("\u200fשלום, המדפסת עובדת שוב.", "\u200fבברכה"),
    ("\u202bالطابعة تعمل الآن.\u202c", "\u202bمع التحية\u202c"),
    ("\u200fالطابعة تعمل الآن.", "\u200fمع خالص التحية،"),
    ("الطابعة تعمل الآن.", "\u200eSent from my iPhone\u200e"),
    ("\u202bהמדפסת עובדת שוב.\u202c", "\u202bנשלח מה-iPhone שלי\u202c"),
    ("الطابعة تعمل الآن.", "\u200fتحياتي"),
    ("המדפסת עובדת שוב.", "\u2067בברכה\u2069"),
    ("الطابعة تعمل الآن.", "\u202bأُرسلت من Samsung Galaxy\u202c"),
    ("المشكلة ما زالت قائمة.", "\u200fمع أطيب التحيات"),
    ("המסך עדיין כבוי.", "\u200fבכבוד רב"),
]


@pytest.mark.parametrize(("body", "signature"), RTL)
def test_rtl__marks_ignored_for_matching_kept_in_output(body: str, signature: str) -> None:
    assert reply_text(f"{body}\n\n{signature}\n") == body  # the marks of the body stay


@pytest.mark.parametrize(
    "header",
    ARABIC[:3]
    + [
        "\u202bבתאריך יום ב׳, 3 בפבר׳ 2025 ב-9:12 מאת \u202aדנה כהן\u202c\u200f"
        " <\u202adana@example.il\u202c\u200f>:\u202c",
    ],
)
def test_rtl__header_with_marks_cut_and_reply_kept_whole(header: str) -> None:
    reply = "\u200fالطابعة تعمل الآن."
    assert strip_quotes(_quoted(header, reply)) == reply


# --- what must not be stripped -------------------------------------------------------------

KEEP = [
    "I wrote: the printer on floor 3 is broken.\nPlease send someone.",
    "Yesterday at 10:30 I wrote:\n\nthe printer prints blank pages.\nCan you help?",
    "On 3 Feb 2025 at 09:12 I wrote to support@example.org the following:\n\nmy badge fails.",
    "Hello,\nOn Monday at 9:00 we had this error:\n\nE42 paper jam\n",
    "Die Nachricht vom 03.02.2025 09:12 lautete:\n\nDrucker defekt.",
    "> Which floor?\nThird.\n> Which room?\nB12.\n",
    "W dniu 3 lutego 2025 napisałem do was w sprawie drukarki.\nNadal nie działa.",
    "Sent from my desk it works, from my phone it does not.\n",
    "Thanks!\nKind regards",
    "Log at 2025-02-03 09:12 says:\nerror 42\nand then it stops.",
    "Jan 3 2025 09:12 server01 kernel: panic\nJan 3 2025 09:13 server01 kernel: reboot",
    "The report of 03.02.2025 lists these rooms:\n- B12\n- C3\n",
    "Get well soon!\nSee you Monday.",
    "My colleague wrote (3 Feb 2025, 09:12):\nthe VPN is down for everyone.",
    "Hi,\n\n03.02.2025 09:12 I wrote:\n\nthe printer is broken",
    "Hi,\n\n2025-02-03 09:12 the server said:\n\nerror 42\n\nPlease check.",
    "Hello,\n\nplease mail jane@example.org or\ncall 555-1234 at 10:30:\n\nthanks",
    "Cześć,\n\nW dniu 3 lutego o 9:12 napisałem:\n\ndrukarka nie działa",
    "Bonjour,\n\nLe 3 février à 09:12, j'ai écrit :\n\nl'imprimante ne marche pas",
    "Dear team,\n\nMy order 2025-0012 from 03/02/2025 contains:\n\n- 2 toner\n- 1 drum",
    "Hi,\n\nMeeting 03.02.2025 10:00, agenda:\n\n1. printers\n2. scanners",
]


@pytest.mark.parametrize("text", KEEP)
def test_keep__customer_text_is_not_cut(text: str) -> None:
    assert strip_quotes(text) == text


KEEP_WHOLE = [
    "Merhaba,\nsiparişiniz hazır.\nFatura gönderildi",
    "Hello\n\nSent from my desk it works, from my phone it does not.\n",
    "Hello,\nthe event starts at nine.\nGet well soon",
    "Regards to everyone.\nThe printer works now.",
    "Please reset it.\n\nThanks,",
    "Szia,\naz új nyomtató a harmadik emeletről küldve",
    "Hi,\nthe new badge works.\nSent from the reception because mine is broken today",
    "Bonjour,\nle scanner marche.\nEnvoyé de mon bureau, pas de chez moi, comme prévu hier",
]


@pytest.mark.parametrize("text", KEEP_WHOLE)
def test_keep__no_signature_taken_from_plain_text(text: str) -> None:
    assert reply_text(text) == text.strip()


def test_keep__bottom_posted_answer_under_a_date_first_header() -> None:
    text = (
        "Hi,\n\n2025-02-03 9:12 GMT+01:00 Jane Roe <jane@example.org>:\n> Which floor?\n\n"
        "Third floor, room B12.\n"
    )
    assert strip_quotes(text) == "Hi,\n\nThird floor, room B12."  # as for "On ... wrote:"


def test_keep__sign_off_inside_the_text_is_not_a_signature() -> None:
    text = "Kind regards to the whole team from the third floor.\nThe printer works."
    assert split_signature(text) == (text, None)


def test_keep__thanks_alone_at_the_end_stays() -> None:
    text = "Please reset my password.\n\nThanks"
    assert reply_text(text) == text
