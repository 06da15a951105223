"""Recognise the header a mail client writes above the message it quotes.

"On <date>, <someone> wrote:" in many languages, "-----Original Message-----",
Outlook's "From: / Sent: / To: / Subject:" block, "<someone> <address> wrote:"
and date-first variants. Cheap substring tests run before the patterns: these
checks run on every line of every reply.
"""

from __future__ import annotations

import re

# "On <date>, <someone> wrote:" leads and verbs, in the languages seen most.
_LEADS = "On|Le|El|Il|Em|Op|Am|Den|På|Pe|Dne|Dňa|W dniu|Vào|Στις|В|Dana|Kl\\.|Klo|Ngày|在"
_VERBS = (
    "wrote|sent|a écrit|escribió|escribio|ha scritto|schreef|verzond|geschreven|schrieb|"
    "escreveu|skrev|skrev følgende|napisał|napisal|napsal|napísal|kirjoitti|đã viết|"
    "написал\\(а\\)|написала|написал|писал|έγραψε|írta|yazdı|a scris|je napisao|rašė|"
    "rakstīja|kirjutas|пишет|写道|寫道|のメッセージ|님이 작성"
)
_ENDS_WITH_VERB = re.compile(rf"(?:{_VERBS})\s*[:：]?[\s*-]*$", re.IGNORECASE)
# Plain substrings for a cheap test before the full patterns (re alternations are slow).
_VERB_WORDS = tuple(v.replace("\\(а\\)", "").lower() for v in _VERBS.split("|"))
_LEAD_START = re.compile(rf"^[\s>*-]*(?:{_LEADS})\s", re.IGNORECASE)
# "Jane Roe <jane@example.org> wrote:", tried on the end of a line that has an address.
_ENDS_WROTE = re.compile(rf"(?:{_VERBS})\s*[:：]\s*$", re.IGNORECASE)
# "---- Jane Roe wrote ----" (Android).
_DASHED_WROTE = re.compile(rf"^\s*-{{2,}}.{{1,200}}\s(?:{_VERBS})\s*-{{2,}}\s*$", re.IGNORECASE)
# "Thu, 26 Jun 2014 14:00:51 +0400 от Alexander <a@example.com>:" (any language).
_TIME = re.compile(r"\d{1,2}:\d\d")
_ENDS_ADDRESS_COLON = re.compile(r"@[^\s>]+>?\)?\s*[:：]\s*$")
# "2011/4/7 Jane <jane@example.org>" and "02.04.2012 14:20 Jane <jane@example.org> wrote:".
_DATE_FIRST = re.compile(r"^\s*(?:\d{1,4}[./-]\d{1,2}[./-]\d{1,4}|\d{4}-\d\d-\d\d)[^@]*@.*[:>]\s*$")
_ORIGINAL = re.compile(
    r"^\s*[-_=]{2,}\s*(?:Original Message|Reply Message|Forwarded by.*|"
    r"Ursprüngliche Nachricht|Originalnachricht|Antwort Nachricht|Oprindelig meddelelse|"
    r"Message d'origine|Mensaje original|Messaggio originale|Oorspronkelijk bericht|"
    r"Původní zpráva|Originalmeddelande|Opprinnelig melding|Alkuperäinen viesti|"
    r"Original-Nachricht|Mensagem Original|Mensaje Original|原始邮件|原始郵件|元のメッセージ|"
    r"Исходное сообщение|Mensagem original|Wiadomość oryginalna|Eredeti üzenet)"
    r"\s*[-_=]{2,}\s*$",
    re.IGNORECASE,
)
_FORWARDED = re.compile(
    r"^\s*[-_=]{2,}\s*(?:Forwarded message|Weitergeleitete Nachricht|Message transféré|"
    r"Mensaje reenviado|Messaggio inoltrato|Doorgestuurd bericht|Videresendt meddelelse|"
    r"Пересылаемое сообщение|Begin forwarded message)\s*[-_=]{2,}\s*$|"
    r"^\s*Begin forwarded message:\s*$",
    re.IGNORECASE,
)
# Outlook-style header blocks: "From:", "Sent:", ... in several languages.
_FROM_FIELDS = (
    "From|Van|De|Von|Fra|Från|Od|Da|Lähettäjä|От|Feladó|Kimden|Afsender|Avsändare|"
    "差出人|送信者|发件人|寄件者|보낸 사람"
)
_OTHER_FIELDS = (
    "Date|Sent|Datum|Envoyé|Envoyé le|Skickat|Sendt|Gesendet|Verzonden|Enviado|Enviada|Inviato|"
    "Odesláno|Wysłano|Отправлено|Дата|Lähetetty|Enviada em|Enviado em|Data|"
    "送信日時|日付|发送时间|日期|寄件日期|보낸 날짜|"
    "件名|主题|主旨|제목|宛先|收件人|收件者|받는 사람|"
    "Subject|Betreff|Objet|Emne|Ämne|Onderwerp|Asunto|Oggetto|Assunto|Temat|Předmět|Тема|Aihe|"
    "To|An|Til|À|Till|Aan|Para|A|Do|Komu|Кому|Vastaanottaja|Cc|Kopie|Kopi|CC"
)
_FIELD_LINE = re.compile(
    rf"^\s*[*_]?\s*(?:{_FROM_FIELDS}|{_OTHER_FIELDS})\s?[*_]?\s?[:：]", re.IGNORECASE
)
_FROM_LINE = re.compile(rf"^\s*[*_]?\s*(?:{_FROM_FIELDS}|Date|Datum)\s?[*_]?\s?[:：]", re.I)
_INLINE_FIELDS = re.compile(rf"\s[*_]?(?:{_OTHER_FIELDS})\s?[*_]?\s?[:：]\s", re.IGNORECASE)
QUOTE_MARK = re.compile(r"^\s*>")
# A reply header written on the same line as the reply ("Thanks! On Mon, ... wrote:").
_SHARED_LINE = re.compile(rf"(?<=\S)(?:\s+|-{{2,}}\s*)(?=(?:{_LEADS})\s)")

_MAX_SPLITTER_LINES = 5
_MAX_MATCH_LINE = 400  # real reply headers are shorter; longer lines are text


def shared_header_start(line: str) -> re.Match[str] | None:
    """Where a reply header begins inside a line of reply text, if one does."""
    # Cheap tests first: only a line ending in ":" with a verb can hold one.
    if len(line) >= _MAX_MATCH_LINE or not line.rstrip().endswith((":", "：")):
        return None
    if QUOTE_MARK.match(line) or not _has_verb(line):
        return None
    for candidate in _SHARED_LINE.finditer(line):
        if _on_wrote(line[candidate.end() :]):
            return candidate
    return None


def is_forwarded_header(line: str) -> bool:
    return _FORWARDED.match(line) is not None


def splitter_span(lines: list[str], index: int) -> int:
    """How many lines the reply header starting at ``index`` covers; 0 when there is none."""
    line = lines[index]
    if len(line) > _MAX_MATCH_LINE:
        return 0
    if _ORIGINAL.match(line):
        return 1
    if _FROM_LINE.match(line):
        span = _field_block_span(lines, index)
        if span:
            return span
    lead = _LEAD_START.match(line) is not None
    addressed = _ADDRESS_START.search(line) is not None
    if not (lead or addressed):
        # Only a one-line header can start here ("---- Jane wrote ----").
        dashed = line.lstrip().startswith("--") and _has_verb(line)
        return 1 if dashed and _DASHED_WROTE.match(line) else 0
    joined = ""
    for extra in range(_MAX_SPLITTER_LINES):
        if index + extra >= len(lines):
            break
        joined = f"{joined} {lines[index + extra].strip()}".strip()
        if len(joined) > _MAX_MATCH_LINE:
            break
        if _is_reply_header(joined, wrapped=extra > 0 and not addressed):
            return extra + 1
    return 0


# A header wrapped over lines keeps its sender on the first one.
_ADDRESS_START = re.compile(r"[<@\"]")


def _is_reply_header(joined: str, wrapped: bool) -> bool:
    # Cheap substring tests first: these run on every line that could start a header.
    if _LEAD_START.match(joined) and _on_wrote(joined):
        return True
    if wrapped or "@" not in joined:
        return False  # the patterns below all need the sender's address
    tail = joined[-60:]
    if _has_verb(tail) and _ENDS_WROTE.search(tail):
        return True
    if _ENDS_ADDRESS_COLON.search(joined[-200:]) and _TIME.search(joined):
        return True
    return bool(_DATE_FIRST.match(joined))


def _on_wrote(text: str) -> bool:
    """ "On <date>, <someone> wrote:" or "Op <date> schreef <someone>:" (text starts with a lead).

    A date or time is always there: "On Monday we sent you this:" is not a header.
    Substring tests rather than one regex: an alternation of verbs tried at every
    position is slow on long lines.
    """
    lowered = text.lower()
    if not any(verb in lowered for verb in _VERB_WORDS):
        return False
    if not any(ch.isdigit() for ch in text):
        return False
    if _ENDS_WITH_VERB.search(lowered[-40:]):
        return True
    if not lowered.rstrip(" \t*-").endswith((":", "：")):
        return False
    return any(f" {verb} " in lowered for verb in _VERB_WORDS)


def _has_verb(text: str) -> bool:
    lowered = text.lower()
    return any(verb in lowered for verb in _VERB_WORDS)


# Verbs that, with a colon after them, say "the text below is quoted" even without a date.
# "sent" is left out: "Here is what I sent:" is a sentence, not an attribution.
_ATTRIBUTION_VERBS = tuple(
    v.replace("\\(а\\)", "(а)").lower() for v in _VERBS.split("|") if v not in ("sent", "verzond")
)
_MAX_ATTRIBUTION = 300


def attribution_span(lines: list[str], index: int) -> int:
    """How many lines, ending at ``index``, attribute the quote that follows; 0 when none.

    Only asked about the line(s) directly above a trailing ">" block, so a looser
    test than a header found anywhere: "Alice wrote:", "Le lundi, Alice a écrit :",
    "Иван написал(а):", also wrapped over two lines ("On ... <a@b.c>" / "wrote:").
    """
    last = lines[index].strip()
    if not last.endswith((":", "：")) or len(last) > _MAX_ATTRIBUTION or QUOTE_MARK.match(last):
        return 0
    above = lines[index - 1].strip() if index > 0 else ""
    usable_above = (
        bool(above)
        and not QUOTE_MARK.match(lines[index - 1])
        and len(above) + len(last) < _MAX_ATTRIBUTION
        and not above.endswith((".", "!", "?", ":", "："))
    )
    if is_attribution(last):
        if usable_above and _continues(above, last) and is_attribution(f"{above} {last}"):
            return 2
        return 1
    if usable_above and is_attribution(f"{above} {last}"):
        return 2
    return 0


def is_attribution(text: str) -> bool:
    """ "Alice wrote:", "Am Montag schrieb Alice:", "Jan schreef op 3 feb 2025 09:12:"."""
    lowered = text.strip().lower()
    if not lowered.endswith((":", "：")) or len(lowered) > _MAX_ATTRIBUTION:
        return False
    body = lowered[:-1].rstrip().rstrip("*").rstrip()  # "a écrit\u00a0:" has a no-break space
    for verb in _ATTRIBUTION_VERBS:
        at = body.rfind(verb)
        if at < 0 or (at > 0 and body[at - 1].isalpha()):
            continue
        end = at + len(verb)
        if end == len(body):
            return True  # the verb ends the line: "Alice wrote:"
        if not body[end].isalpha() and (
            _LEAD_START.match(text) or "@" in body or _TIME.search(body)
        ):
            return True  # "Am Montag schrieb Alice:", "Jan schreef op 3 feb 09:12:"
    return False


def _continues(above: str, last: str) -> bool:
    """Whether ``last`` finishes a header begun on ``above`` ("On ... <a@b.c>" / "wrote:")."""
    if last[0] in "<([" or last[0].islower():
        return True  # "wrote:", "<alice@example.org> wrote:": the sender is on the line above
    starts_header = above.endswith(("<", ">")) or (
        _LEAD_START.match(above) is not None and any(ch.isdigit() for ch in above)
    )
    return starts_header and len(last.split()) <= 3


def _field_block_span(lines: list[str], index: int) -> int:
    """A "From:" line followed by other header fields (one continuation line allowed)."""
    if _INLINE_FIELDS.search(lines[index]):
        return 1  # "From: x Sent: y To: z" flattened on one line
    fields = 1
    position = index + 1
    gap = 0
    while position < len(lines) and position - index < 12:
        line = lines[position]
        if _FIELD_LINE.match(line):
            fields += 1
            gap = 0
        elif line.strip() and gap == 0 and fields == 1:
            gap = 1  # a wrapped From: address
        else:
            break
        position += 1
    return position - index if fields >= 2 else 0
