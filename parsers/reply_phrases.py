"""What mail clients write above a quoted or forwarded message, per language.

The strings are the clients' own localised templates (reply header, "Original
message" / "Forwarded message" separators, "Sent from my <device>" lines), as
each client writes them in that language, written down from the clients'
output rather than from collected example mails. Each row names its client.
Placeholders: ``%date%`` (date and time, in whatever form), ``%name%`` (name,
address or both), ``%device%``; in reply headers the words in ``{...}`` are the
"wrote" part, the rest before the first placeholder is the lead ("On", "Am").
reply_headers.py and signatures.py compile these once into substring sets.

The list is data, not a promise: the structural rule in reply_headers.py
catches header forms no row covers.
"""

from __future__ import annotations

from typing import NamedTuple


class Phrase(NamedTuple):
    lang: str
    text: str
    source: str


GMAIL = "Gmail"
OUTLOOK = "Outlook"
APPLE = "Apple Mail (macOS/iOS)"
THUNDERBIRD = "Thunderbird"
ANDROID = "Android mail apps (Gmail/Samsung Email)"
OUTLOOK_MOBILE = "Outlook for iOS/Android"

REPLY_HEADERS: tuple[Phrase, ...] = (
    Phrase("en", "On %date%, %name% {wrote}:", GMAIL),
    Phrase("en", "On %date% %name% {wrote}:", THUNDERBIRD),
    Phrase("en", "%name% {wrote}:", THUNDERBIRD),
    Phrase("en", "---- On %date% %name% {wrote} ----", ANDROID),
    Phrase("de", "Am %date% {schrieb} %name%:", GMAIL),
    Phrase("de", "%name% {schrieb} am %date%:", THUNDERBIRD),
    Phrase("fr", "Le %date%, %name% {a écrit} :", GMAIL),
    Phrase("es", "El %date%, %name% {escribió}:", GMAIL),
    Phrase("es", "El %date%, %name% {escribio}:", "Outlook (unaccented)"),
    Phrase("it", "Il giorno %date% %name% {ha scritto}:", GMAIL),
    Phrase("it", "Il %date%, %name% {ha scritto}:", THUNDERBIRD),
    Phrase("pt", "Em %date%, %name% {escreveu}:", GMAIL + " (pt-BR)"),
    Phrase("pt", "%name% {escreveu} no dia %date%:", GMAIL + " (pt-PT)"),
    Phrase("nl", "Op %date% {schreef} %name%:", GMAIL),
    Phrase("nl", "Op %date% heeft %name% het volgende {geschreven}:", APPLE),
    Phrase("pl", "%date% %name% {napisał(a)}:", GMAIL),
    Phrase("pl", "W dniu %date% %name% {napisał(a)}:", APPLE),
    Phrase("pl", "W dniu %date%, %name% {pisze}:", THUNDERBIRD),
    Phrase("pl", "Dnia %date% %name% {napisał}:", "Polish webmail (Onet/WP)"),
    Phrase("ru", "%date%, %name%:", GMAIL),
    Phrase("ru", "%date%, %name% {пишет}:", THUNDERBIRD),
    Phrase("ru", "%date%, %name% {написал(а)}:", APPLE),
    Phrase("uk", "%date% %name% {пише}:", GMAIL),
    Phrase("uk", "%date% %name% {написав(ла)}:", APPLE),
    Phrase("sv", "Den %date% {skrev} %name%:", GMAIL),
    Phrase("sv", "%date% {skrev} %name%:", APPLE),
    Phrase("da", "Den %date% {skrev} %name%:", GMAIL),
    Phrase("no", "%date% {skrev} %name%:", GMAIL),
    Phrase("no", "Den %date%, {skrev} %name%:", THUNDERBIRD),
    Phrase("fi", "%date% %name% {kirjoitti}:", GMAIL),
    Phrase("fi", "%name% {kirjoitti} %date%:", THUNDERBIRD),
    Phrase("cs", "%date% odesílatel %name% {napsal}:", GMAIL),
    Phrase("cs", "Dne %date% %name% {napsal(a)}:", THUNDERBIRD),
    Phrase("sk", "%date% %name% {napísal(a)}:", GMAIL),
    Phrase("sk", "Dňa %date% %name% {napísal(a)}:", THUNDERBIRD),
    Phrase("hu", "%name% {ezt írta} (időpont: %date%):", GMAIL),
    Phrase("hu", "%date% keltezéssel, %name% {írta}:", THUNDERBIRD),
    Phrase("hu", "%date% időpontban %name% {írta}:", APPLE),
    Phrase("ro", "În %date%, %name% {a scris}:", GMAIL),
    Phrase("ro", "Pe %date%, %name% {a scris}:", THUNDERBIRD),
    Phrase("ca", "El %date%, %name% {va escriure}:", GMAIL),
    Phrase("ca", "El %date%, %name% {ha escrit}:", THUNDERBIRD),
    Phrase("tr", "%name%, %date% tarihinde şunu {yazdı}:", GMAIL),
    Phrase("tr", "%date% tarihinde %name% {yazdı}:", THUNDERBIRD),
    Phrase("el", "Στις %date%, ο/η %name% {έγραψε}:", GMAIL),
    Phrase("ja", "%date% %name%:", GMAIL),
    Phrase("ja", "%date%、%name% {のメール}:", APPLE),
    Phrase("ja", "%date% %name% {のメッセージ}:", OUTLOOK),
    Phrase("zh-Hans", "%name% 于%date%{写道}：", GMAIL),
    Phrase("zh-Hans", "在 %date%，%name% {写道}：", APPLE),
    Phrase("zh-Hant", "%name% 於 %date% {寫道}：", GMAIL),
    Phrase("zh-Hant", "在 %date%，%name% {寫道}：", APPLE),
    Phrase("ko", "%date%, %name%{님이 작성}:", GMAIL),
    Phrase("ko", "%date%, %name% {작성}:", APPLE),
    Phrase("ar", "في %date%، %name% {كتب}:", GMAIL),
    Phrase("ar", "في %date%، كتب %name%:", APPLE),
    Phrase("he", "בתאריך %date%, {מאת} %name%:", GMAIL),
    Phrase("he", "ב-%date%, %name% {כתב}:", APPLE),
    Phrase("vi", "Vào %date% %name% {đã viết}:", GMAIL),
    Phrase("id", "Pada %date% %name% {menulis}:", GMAIL),
    Phrase("th", "เมื่อ %date% %name% {เขียนว่า}:", GMAIL),
    Phrase("hr", "%date% %name% {napisao je}:", GMAIL),
    Phrase("hr", "%date% %name% {je napisao}:", THUNDERBIRD),
    Phrase("sr", "%date% %name% {је написао}:", GMAIL),
    Phrase("bg", "%date% %name% {написа}:", GMAIL),
    Phrase("lt", "%date% %name% {rašė}:", GMAIL),
    Phrase("lv", "%date% — lietotājs %name% {rakstīja}:", GMAIL),
    Phrase("et", "%date% %name% {kirjutas}:", GMAIL),
    Phrase("sl", "V %date% je oseba %name% {napisala}:", GMAIL),
    Phrase("sl", "Dne %date% je %name% {napisal}:", THUNDERBIRD),
    Phrase("hi", "%date% को %name% {ने लिखा}:", GMAIL),
    Phrase("fa", "در تاریخ %date% %name% {نوشت}:", GMAIL),
)

# "-----Original Message-----" and kin: the text between the dashes, underscores or stars.
ORIGINAL_SEPARATORS: tuple[Phrase, ...] = (
    Phrase("en", "Original Message", OUTLOOK),
    Phrase("en", "Original message", ANDROID),
    Phrase("en", "Reply Message", "Outlook Express"),
    Phrase("de", "Ursprüngliche Nachricht", OUTLOOK),
    Phrase("de", "Originalnachricht", APPLE),
    Phrase("de", "Original-Nachricht", THUNDERBIRD),
    Phrase("de", "Antwort Nachricht", "Outlook Express"),
    Phrase("fr", "Message d'origine", OUTLOOK),
    Phrase("fr", "Message d’origine", ANDROID),
    Phrase("fr", "Message original", THUNDERBIRD),
    Phrase("es", "Mensaje original", OUTLOOK),
    Phrase("it", "Messaggio originale", OUTLOOK),
    Phrase("pt", "Mensagem original", OUTLOOK),
    Phrase("nl", "Oorspronkelijk bericht", OUTLOOK),
    Phrase("nl", "Origineel bericht", ANDROID),
    Phrase("pl", "Wiadomość oryginalna", OUTLOOK),
    Phrase("pl", "Oryginalna wiadomość", ANDROID),
    Phrase("ru", "Исходное сообщение", OUTLOOK),
    Phrase("ru", "Оригинальное сообщение", ANDROID),
    Phrase("uk", "Початкове повідомлення", OUTLOOK),
    Phrase("uk", "Оригінальне повідомлення", ANDROID),
    Phrase("sv", "Ursprungligt meddelande", OUTLOOK),
    Phrase("sv", "Originalmeddelande", ANDROID),
    Phrase("da", "Oprindelig meddelelse", OUTLOOK),
    Phrase("da", "Original meddelelse", ANDROID),
    Phrase("no", "Opprinnelig melding", OUTLOOK),
    Phrase("no", "Originalmelding", ANDROID),
    Phrase("fi", "Alkuperäinen viesti", OUTLOOK),
    Phrase("cs", "Původní zpráva", OUTLOOK),
    Phrase("sk", "Pôvodná správa", OUTLOOK),
    Phrase("hu", "Eredeti üzenet", OUTLOOK),
    Phrase("ro", "Mesaj original", OUTLOOK),
    Phrase("ro", "Mesajul original", ANDROID),
    Phrase("ca", "Missatge original", OUTLOOK),
    Phrase("tr", "Özgün İleti", OUTLOOK),
    Phrase("tr", "Orijinal mesaj", ANDROID),
    Phrase("el", "Αρχικό μήνυμα", OUTLOOK),
    Phrase("ja", "元のメッセージ", OUTLOOK),
    Phrase("zh-Hans", "原始邮件", OUTLOOK),
    Phrase("zh-Hant", "原始郵件", OUTLOOK),
    Phrase("ko", "원본 메시지", OUTLOOK),
    Phrase("ar", "الرسالة الأصلية", OUTLOOK),
    Phrase("he", "הודעה מקורית", OUTLOOK),
    Phrase("vi", "Thư gốc", OUTLOOK),
    Phrase("id", "Pesan Asli", OUTLOOK),
    Phrase("th", "ข้อความต้นฉบับ", OUTLOOK),
    Phrase("hr", "Izvorna poruka", OUTLOOK),
    Phrase("sr", "Оригинална порука", OUTLOOK),
    Phrase("bg", "Оригинално съобщение", OUTLOOK),
    Phrase("lt", "Pradinis laiškas", OUTLOOK),
    Phrase("lv", "Sākotnējais ziņojums", OUTLOOK),
    Phrase("et", "Algsõnum", OUTLOOK),
    Phrase("sl", "Izvirno sporočilo", OUTLOOK),
)

# "---------- Forwarded message ---------" (Gmail), "-------- Forwarded Message --------"
# (Thunderbird) and Apple Mail's undashed "Begin forwarded message:".
FORWARD_SEPARATORS: tuple[Phrase, ...] = (
    Phrase("en", "Forwarded message", GMAIL),
    Phrase("en", "Forwarded Message", THUNDERBIRD),
    Phrase("en", "Begin forwarded message", APPLE),
    Phrase("de", "Weitergeleitete Nachricht", GMAIL),
    Phrase("de", "Anfang der weitergeleiteten Nachricht", APPLE),
    Phrase("fr", "Message transféré", GMAIL),
    Phrase("fr", "Début du message réexpédié", APPLE),
    Phrase("es", "Mensaje reenviado", GMAIL),
    Phrase("es", "Inicio del mensaje reenviado", APPLE),
    Phrase("it", "Messaggio inoltrato", GMAIL),
    Phrase("it", "Inizio messaggio inoltrato", APPLE),
    Phrase("pt", "Mensagem encaminhada", GMAIL),
    Phrase("pt", "Início da mensagem reencaminhada", APPLE),
    Phrase("nl", "Doorgestuurd bericht", GMAIL),
    Phrase("nl", "Begin doorgestuurd bericht", APPLE),
    Phrase("pl", "Wiadomość przekazana dalej", GMAIL),
    Phrase("pl", "Przekazana wiadomość", THUNDERBIRD),
    Phrase("ru", "Пересылаемое сообщение", GMAIL),
    Phrase("ru", "Пересланное сообщение", THUNDERBIRD),
    Phrase("ru", "Начало переадресованного сообщения", APPLE),
    Phrase("uk", "Переслане повідомлення", GMAIL),
    Phrase("sv", "Vidarebefordrat meddelande", GMAIL),
    Phrase("da", "Videresendt meddelelse", GMAIL),
    Phrase("da", "Videresendt besked", APPLE),
    Phrase("no", "Videresendt melding", GMAIL),
    Phrase("fi", "Välitetty viesti", GMAIL),
    Phrase("cs", "Přeposlaná zpráva", GMAIL),
    Phrase("sk", "Preposlaná správa", GMAIL),
    Phrase("hu", "Továbbított üzenet", GMAIL),
    Phrase("ro", "Mesaj redirecționat", GMAIL),
    Phrase("ca", "Missatge reenviat", GMAIL),
    Phrase("tr", "Yönlendirilmiş ileti", GMAIL),
    Phrase("el", "Προωθημένο μήνυμα", GMAIL),
    Phrase("ja", "転送されたメッセージ", GMAIL),
    Phrase("zh-Hans", "转发的邮件", GMAIL),
    Phrase("zh-Hant", "轉寄的郵件", GMAIL),
    Phrase("ko", "전달된 메일", GMAIL),
    Phrase("ar", "الرسالة المُعاد توجيهها", GMAIL),
    Phrase("ar", "رسالة معاد توجيهها", OUTLOOK),
    Phrase("he", "הודעה שהועברה", GMAIL),
    Phrase("vi", "Thư được chuyển tiếp", GMAIL),
    Phrase("id", "Pesan terusan", GMAIL),
    Phrase("th", "ข้อความที่ส่งต่อ", GMAIL),
    Phrase("hr", "Proslijeđena poruka", GMAIL),
    Phrase("sr", "Прослеђена порука", GMAIL),
    Phrase("bg", "Препратено писмо", GMAIL),
    Phrase("lt", "Persiųstas laiškas", GMAIL),
    Phrase("lv", "Pārsūtīts ziņojums", GMAIL),
    Phrase("et", "Edastatud sõnum", GMAIL),
    Phrase("sl", "Posredovano sporočilo", GMAIL),
)

# "Sent from my %device%": the device or app is any short name ("Wiko View", "Outlook").
DEVICE_LINES: tuple[Phrase, ...] = (
    Phrase("en", "Sent from my %device%", APPLE),
    Phrase("en", "Sent from %device%", OUTLOOK_MOBILE),
    Phrase("en", "Sent with %device%", "ProtonMail/Spark"),
    Phrase("en", "Sent using %device%", "Zoho/Yahoo Mail"),
    Phrase("en", "Sent via %device%", "BlackBerry/carrier mail"),
    Phrase("en", "Sent on the go from %device%", "Yahoo Mail"),
    Phrase("de", "Von meinem %device% gesendet", APPLE),
    Phrase("de", "Gesendet von meinem %device%", ANDROID),
    Phrase("de", "Gesendet von %device%", OUTLOOK_MOBILE),
    Phrase("de", "Gesendet mit %device%", "GMX/WEB.DE Mail"),
    Phrase("fr", "Envoyé de mon %device%", APPLE),
    Phrase("fr", "Envoyé depuis mon %device%", ANDROID),
    Phrase("fr", "Envoyé à partir de %device%", OUTLOOK_MOBILE),
    Phrase("fr", "Envoyé de %device%", OUTLOOK_MOBILE),
    Phrase("es", "Enviado desde mi %device%", APPLE),
    Phrase("es", "Enviado desde %device%", OUTLOOK_MOBILE),
    Phrase("it", "Inviato da %device%", APPLE),
    Phrase("it", "Inviato dal mio %device%", ANDROID),
    Phrase("pt", "Enviado do meu %device%", APPLE),
    Phrase("pt", "Enviado do %device%", OUTLOOK_MOBILE),
    Phrase("pt", "Enviado de meu %device%", ANDROID),
    Phrase("nl", "Verstuurd vanaf mijn %device%", APPLE),
    Phrase("nl", "Verzonden vanaf mijn %device%", ANDROID),
    Phrase("nl", "Verzonden vanaf %device%", OUTLOOK_MOBILE),
    Phrase("nl", "Verzonden met %device%", OUTLOOK_MOBILE),
    Phrase("pl", "Wysłane z mojego %device%", APPLE),
    Phrase("pl", "Wysłane z %device%", OUTLOOK_MOBILE),
    Phrase("pl", "Wysłano z mojego %device%", ANDROID),
    Phrase("pl", "Wysłano z %device%", ANDROID),
    Phrase("ru", "Отправлено с моего %device%", ANDROID),
    Phrase("ru", "Отправлено с %device%", APPLE),
    Phrase("ru", "Отправлено из %device%", "Mail.ru/Yandex mobile"),
    Phrase("uk", "Надіслано з мого %device%", ANDROID),
    Phrase("uk", "Надіслано з %device%", APPLE),
    Phrase("uk", "Відправлено з %device%", OUTLOOK_MOBILE),
    Phrase("sv", "Skickat från min %device%", APPLE),
    Phrase("sv", "Skickat från %device%", OUTLOOK_MOBILE),
    Phrase("da", "Sendt fra min %device%", APPLE),
    Phrase("da", "Sendt fra %device%", OUTLOOK_MOBILE),
    Phrase("no", "Sendt fra min %device%", APPLE),
    Phrase("no", "Sendt fra %device%", OUTLOOK_MOBILE),
    Phrase("fi", "Lähetetty %device%", APPLE),
    Phrase("cs", "Odesláno z mého %device%", ANDROID),
    Phrase("cs", "Odesláno z %device%", APPLE),
    Phrase("sk", "Odoslané z môjho %device%", ANDROID),
    Phrase("sk", "Odoslané z %device%", APPLE),
    Phrase("hu", "Küldve az %device%", APPLE),
    Phrase("hu", "Küldve a(z) %device%", ANDROID),
    Phrase("hu", "%device%ról küldve", APPLE),
    Phrase("hu", "%device%ről küldve", APPLE),
    Phrase("ro", "Trimis de pe %device%", APPLE),
    Phrase("ro", "Trimis din %device%", OUTLOOK_MOBILE),
    Phrase("ca", "Enviat des del meu %device%", APPLE),
    Phrase("ca", "Enviat des de %device%", OUTLOOK_MOBILE),
    Phrase("tr", "%device%dan gönderildi", APPLE),
    Phrase("tr", "%device%den gönderildi", APPLE),
    Phrase("tr", "%device%tan gönderildi", ANDROID),
    Phrase("tr", "%device%ten gönderildi", ANDROID),
    Phrase("el", "Στάλθηκε από το %device%", APPLE),
    Phrase("el", "Εστάλη από το %device%", ANDROID),
    Phrase("ja", "%device%から送信", APPLE),
    Phrase("zh-Hans", "发自我的%device%", APPLE),
    Phrase("zh-Hans", "从我的%device%发送", ANDROID),
    Phrase("zh-Hant", "從我的 %device% 傳送", APPLE),
    Phrase("zh-Hant", "寄自我的%device%", ANDROID),
    Phrase("ko", "%device%에서 보냄", APPLE),
    Phrase("ar", "أرسلت من %device%", APPLE),
    Phrase("ar", "أُرسلت من %device%", APPLE),
    Phrase("ar", "مرسل من %device%", ANDROID),
    Phrase("ar", "تم الإرسال من %device%", OUTLOOK_MOBILE),
    Phrase("he", "נשלח מ-%device%", APPLE),
    Phrase("he", "נשלח מה-%device%", APPLE),
    Phrase("vi", "Gửi từ %device%", APPLE),
    Phrase("id", "Dikirim dari %device%", APPLE),
    Phrase("th", "ส่งจาก %device%", APPLE),
    Phrase("hr", "Poslano s %device%", APPLE),
    Phrase("hr", "Poslano sa %device%", ANDROID),
    Phrase("sr", "Послато са %device%", APPLE),
    Phrase("bg", "Изпратено от %device%", APPLE),
    Phrase("lt", "Išsiųsta iš %device%", APPLE),
    Phrase("lv", "Nosūtīts no %device%", APPLE),
    Phrase("et", "Saadetud %device%", APPLE),
    Phrase("sl", "Poslano iz %device%", APPLE),
    Phrase("sl", "Poslano z %device%", ANDROID),
)

# "Get Outlook for iOS": an app's advert, a signature only when it names the app.
APP_LINES: tuple[Phrase, ...] = (
    Phrase("en", "Get %device%", OUTLOOK_MOBILE),
    Phrase("de", "%device% herunterladen", OUTLOOK_MOBILE),
    Phrase("fr", "Obtenir %device%", OUTLOOK_MOBILE),
    Phrase("es", "Obtener %device%", OUTLOOK_MOBILE),
    Phrase("it", "Scarica %device%", OUTLOOK_MOBILE),
    Phrase("nl", "Download %device%", OUTLOOK_MOBILE),
    Phrase("pt", "Baixe o %device%", OUTLOOK_MOBILE),
    Phrase("pl", "Pobierz %device%", OUTLOOK_MOBILE),
)


class HeaderFields(NamedTuple):
    """The field names of Outlook's "From: / Sent: / To: / Subject:" block in one language."""

    lang: str
    sender: tuple[str, ...]
    others: tuple[str, ...]
    source: str


# As Outlook (desktop, web and mobile) writes them; "Date" where the web and mobile apps use it.
HEADER_FIELDS: tuple[HeaderFields, ...] = (
    HeaderFields("en", ("From",), ("Sent", "Date", "To", "Cc", "Subject"), OUTLOOK),
    HeaderFields("de", ("Von",), ("Gesendet", "Datum", "An", "Cc", "Betreff"), OUTLOOK),
    HeaderFields("fr", ("De",), ("Envoyé", "Date", "À", "Cc", "Objet"), OUTLOOK),
    HeaderFields("es", ("De",), ("Enviado", "Fecha", "Para", "CC", "Asunto"), OUTLOOK),
    HeaderFields("it", ("Da",), ("Inviato", "Data", "A", "Cc", "Oggetto"), OUTLOOK),
    HeaderFields(
        "pt", ("De",), ("Enviado", "Enviada em", "Data", "Para", "Cc", "Assunto"), OUTLOOK
    ),
    HeaderFields("nl", ("Van",), ("Verzonden", "Datum", "Aan", "CC", "Onderwerp"), OUTLOOK),
    HeaderFields("pl", ("Od",), ("Wysłano", "Wysłane", "Data", "Do", "DW", "Temat"), OUTLOOK),
    HeaderFields("ru", ("От",), ("Отправлено", "Дата", "Кому", "Копия", "Тема"), OUTLOOK),
    HeaderFields("uk", ("Від",), ("Надіслано", "Дата", "Кому", "Копія", "Тема"), OUTLOOK),
    HeaderFields("sv", ("Från",), ("Skickat", "Datum", "Till", "Kopia", "Ämne"), OUTLOOK),
    HeaderFields("da", ("Fra",), ("Sendt", "Dato", "Til", "Cc", "Emne"), OUTLOOK),
    HeaderFields("no", ("Fra",), ("Sendt", "Dato", "Til", "Kopi", "Emne"), OUTLOOK),
    HeaderFields(
        "fi", ("Lähettäjä",), ("Lähetetty", "Päivämäärä", "Vastaanottaja", "Aihe"), OUTLOOK
    ),
    HeaderFields("cs", ("Od",), ("Odesláno", "Datum", "Komu", "Kopie", "Předmět"), OUTLOOK),
    HeaderFields("sk", ("Od",), ("Odoslané", "Dátum", "Komu", "Kópia", "Predmet"), OUTLOOK),
    HeaderFields(
        "hu", ("Feladó",), ("Elküldve", "Dátum", "Címzett", "Másolatot kap", "Tárgy"), OUTLOOK
    ),
    HeaderFields("ro", ("De la",), ("Trimis", "Dată", "Către", "Cc", "Subiect"), OUTLOOK),
    HeaderFields(
        "ca", ("De",), ("Enviat el", "Enviat", "Data", "Per a", "A/c", "Assumpte"), OUTLOOK
    ),
    HeaderFields("tr", ("Kimden",), ("Gönderildi", "Tarih", "Kime", "Bilgi", "Konu"), OUTLOOK),
    HeaderFields("el", ("Από",), ("Στάλθηκε", "Ημερομηνία", "Προς", "Κοιν", "Θέμα"), OUTLOOK),
    HeaderFields("ja", ("差出人", "送信者"), ("送信日時", "日付", "宛先", "CC", "件名"), OUTLOOK),
    HeaderFields("zh-Hans", ("发件人",), ("发送时间", "日期", "收件人", "抄送", "主题"), OUTLOOK),
    HeaderFields("zh-Hant", ("寄件者",), ("寄件日期", "日期", "收件者", "副本", "主旨"), OUTLOOK),
    HeaderFields("ko", ("보낸 사람",), ("보낸 날짜", "날짜", "받는 사람", "참조", "제목"), OUTLOOK),
    HeaderFields("ar", ("من",), ("تاريخ الإرسال", "التاريخ", "إلى", "نسخة", "الموضوع"), OUTLOOK),
    HeaderFields("he", ("מאת",), ("נשלח", "תאריך", "אל", "עותק", "נושא"), OUTLOOK),
    HeaderFields("vi", ("Từ",), ("Đã gửi", "Ngày", "Đến", "Cc", "Chủ đề"), OUTLOOK),
    HeaderFields(
        "id", ("Dari",), ("Dikirim", "Tanggal", "Kepada", "Cc", "Perihal", "Subjek"), OUTLOOK
    ),
    HeaderFields("th", ("จาก",), ("ส่ง", "วันที่", "ถึง", "สำเนาถึง", "เรื่อง"), OUTLOOK),
    HeaderFields("hr", ("Šalje",), ("Poslano", "Datum", "Prima", "Kopija", "Predmet"), OUTLOOK),
    HeaderFields("sr", ("Од",), ("Послато", "Датум", "За", "Копија", "Тема"), OUTLOOK),
    HeaderFields("bg", ("От",), ("Изпратено", "Дата", "До", "Копие", "Относно"), OUTLOOK),
    HeaderFields("lt", ("Nuo",), ("Išsiųsta", "Data", "Kam", "Kopija", "Tema"), OUTLOOK),
    HeaderFields("lv", ("No",), ("Nosūtīts", "Datums", "Kam", "Kopija", "Tēma"), OUTLOOK),
    HeaderFields(
        "et", ("Saatja",), ("Saadetud", "Kuupäev", "Adressaat", "Koopia", "Teema"), OUTLOOK
    ),
    HeaderFields("sl", ("Od",), ("Poslano", "Datum", "Za", "Kp", "Zadeva"), OUTLOOK),
)

# Closings people end a message with, alone on the last line or above their name.
SIGN_OFFS: tuple[Phrase, ...] = tuple(
    Phrase(lang, text, "common usage")
    for lang, texts in (
        ("en", ("kind regards", "best regards", "warm regards", "regards", "best wishes")),
        ("de", ("freundliche grüsse", "freundliche grüße", "mit freundlichen grüßen")),
        ("de", ("mit freundlichen grüssen", "viele grüße", "viele grüsse", "beste grüße")),
        ("de", ("beste grüsse", "liebe grüße", "liebe grüsse", "herzliche grüße", "lg", "mfg")),
        ("fr", ("cordialement", "bien cordialement", "bien à vous", "salutations")),
        ("es", ("saludos", "un saludo", "saludos cordiales", "atentamente")),
        ("it", ("cordiali saluti", "distinti saluti", "saluti", "un saluto")),
        ("pt", ("atenciosamente", "cumprimentos", "abraços", "melhores cumprimentos")),
        ("nl", ("met vriendelijke groet", "met vriendelijke groeten", "groeten", "mvg")),
        ("pl", ("pozdrawiam", "z poważaniem", "pozdrawiam serdecznie", "serdecznie pozdrawiam")),
        ("ru", ("с уважением", "всего доброго", "с наилучшими пожеланиями")),
        ("uk", ("з повагою", "з найкращими побажаннями")),
        ("sv", ("med vänlig hälsning", "med vänliga hälsningar", "vänliga hälsningar")),
        ("sv", ("hälsningar", "mvh")),
        ("da", ("med venlig hilsen", "venlig hilsen", "de bedste hilsner", "hilsen")),
        ("no", ("med vennlig hilsen", "vennlig hilsen", "beste hilsen")),
        ("fi", ("ystävällisin terveisin", "terveisin", "parhain terveisin")),
        ("cs", ("s pozdravem", "s přátelským pozdravem")),
        ("sk", ("s pozdravom", "s priateľským pozdravom")),
        ("hu", ("üdvözlettel", "tisztelettel", "üdv")),
        ("ro", ("cu stimă", "cu respect", "toate cele bune", "o zi bună")),
        ("ca", ("salutacions", "atentament", "cordialment")),
        ("tr", ("saygılarımla", "iyi çalışmalar")),
        ("el", ("με εκτίμηση", "φιλικά")),
        ("ar", ("مع التحية", "مع خالص التحية", "مع أطيب التحيات", "تحياتي")),
        ("he", ("בברכה", "בכבוד רב")),
        ("vi", ("trân trọng",)),
        ("id", ("salam", "hormat saya", "salam hangat")),
        ("hr", ("srdačan pozdrav", "lijep pozdrav", "s poštovanjem")),
        ("bg", ("поздрави", "с уважение")),
        ("lt", ("pagarbiai",)),
        ("lv", ("ar cieņu",)),
        ("et", ("lugupidamisega",)),
        ("sl", ("lep pozdrav", "s spoštovanjem")),
    )
    for text in texts
)
