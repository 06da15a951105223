"""Recognise the header a mail client writes above the message it quotes.

"On <date>, <someone> wrote:" and the date-first forms, "-----Original
Message-----", Outlook's "From: / Sent: / To: / Subject:" block, "<someone>
<address> wrote:", in the languages of the clients' own templates
(reply_phrases.py), and a structural rule for the forms no template covers: a
paragraph-opening line (or two or three wrapped ones) with a date or time and a
name or address, ending in a colon, above quoted text or an earlier message.
Directional marks of right-to-left text are ignored for matching. Cheap
substring tests run before the patterns: these checks run on every line of
every reply.
"""

from __future__ import annotations

import re

from parsers.reply_phrases import (
    FORWARD_SEPARATORS,
    HEADER_FIELDS,
    ORIGINAL_SEPARATORS,
    REPLY_HEADERS,
)

# Directional marks (RLM/LRM, embeddings, overrides, isolates) that right-to-left clients
# put around names and dates: removed for matching only, never from the output.
DIRECTIONAL_MARKS = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u061c"
_NO_MARKS = str.maketrans("", "", DIRECTIONAL_MARKS)
_HAS_MARK = re.compile(f"[{DIRECTIONAL_MARKS}]")


def has_marks(text: str) -> bool:
    # The marks are not ASCII, and most text is: isascii() is a fast scan, the regex is not.
    return not text.isascii() and _HAS_MARK.search(text) is not None


def without_marks(text: str) -> str:
    """``text`` without directional marks (for matching; a no-op on text that has none)."""
    return text.translate(_NO_MARKS) if has_marks(text) else text


def _table_leads() -> list[str]:
    leads = [phrase.text.split("%", 1)[0].strip(" -") for phrase in REPLY_HEADERS]
    return [lead for lead in leads if len(lead) > 1 or lead.isupper()]


def _table_verbs() -> list[str]:
    return [
        verb.lower() for phrase in REPLY_HEADERS for verb in re.findall(r"{([^}]+)}", phrase.text)
    ]


# "On <date>, <someone> wrote:" leads and verbs: the languages the clients' table covers
# (reply_phrases.py) plus forms seen in the wild that no client template shows.
_LEAD_WORDS = sorted(
    {
        *"On|Le|El|Il|Em|Op|Am|Den|På|Pe|Dne|Dňa|W dniu|Vào|Στις|В|Dana|Kl.|Klo|Ngày|在".split("|"),
        *_table_leads(),
    },
    key=len,
    reverse=True,
)
_LEADS = "|".join(re.escape(lead) for lead in _LEAD_WORDS)
_CASED_LEADS = "|".join(re.escape(lead) for lead in _LEAD_WORDS if lead[0].isupper())
_VERB_WORDS: tuple[str, ...] = tuple(
    sorted(
        {
            *(
                "wrote|sent|a écrit|escribió|escribio|ha scritto|schreef|verzond|geschreven|"
                "schrieb|escreveu|skrev|skrev følgende|napisał|napisal|napsal|napísal|kirjoitti|"
                "đã viết|написал(а)|написала|написал|писал|έγραψε|írta|yazdı|a scris|je napisao|"
                "rašė|rakstīja|kirjutas|пишет|写道|寫道|のメッセージ|님이 작성"
            ).split("|"),
            *_table_verbs(),
        },
        key=len,
        reverse=True,
    )
)
_VERBS = "|".join(re.escape(verb) for verb in _VERB_WORDS)
_VERB_ENDINGS = tuple(_VERB_WORDS)
# "---- Jane Roe wrote ----" (Android).
_DASHED_WROTE = re.compile(rf"^\s*-{{2,}}.{{1,200}}\s(?:{_VERBS})\s*-{{2,}}\s*$", re.IGNORECASE)
_LEAD_START = re.compile(rf"^[\s>*-]*(?:{_LEADS})\s", re.IGNORECASE)
LEAD_FIRST_WORDS = frozenset(lead.split()[0].lower() for lead in _LEAD_WORDS)


def _starts_with_lead(line: str) -> bool:
    words = line.lstrip(" \t>*-").split(None, 1)
    return bool(words) and words[0].lower() in LEAD_FIRST_WORDS and bool(_LEAD_START.match(line))


# "Thu, 26 Jun 2014 14:00:51 +0400 от Alexander <a@example.com>:" (any language).
_TIME = re.compile(r"\d{1,2}[:.]\d\d")
_ENDS_ADDRESS_COLON = re.compile(r"@[^\s>]+>?\)?\s*[:：]\s*$")
# "2011/4/7 Jane <jane@example.org>" and "02.04.2012 14:20 Jane <jane@example.org> wrote:".
_DATE_FIRST = re.compile(r"^\s*(?:\d{1,4}[./-]\d{1,2}[./-]\d{1,4}|\d{4}-\d\d-\d\d)[^@]*@.*[:>]\s*$")
# Separator lines: the phrase between dashes, underscores, equals signs or stars.
_SEPARATOR_EDGE = "-_=*~"
_ORIGINAL_PHRASES = frozenset(phrase.text.lower() for phrase in ORIGINAL_SEPARATORS)
_FORWARD_PHRASES = frozenset(phrase.text.lower() for phrase in FORWARD_SEPARATORS)
_MAX_SEPARATOR = 120
_SEPARATOR_START = frozenset(_SEPARATOR_EDGE + " \t" + DIRECTIONAL_MARKS)


def _separator_phrase(line: str) -> str | None:
    """The phrase of a "-----Original Message-----"-style line, lower-cased; None otherwise."""
    if not line or line[0] not in _SEPARATOR_START:
        return None  # the common case, decided without copying the line
    text = line.strip()
    if not 4 <= len(text) <= _MAX_SEPARATOR:
        return None
    edge = _SEPARATOR_EDGE
    if text[0] in edge and text[1] in edge and text[-1] in edge and text[-2] in edge:
        return without_marks(text.strip(edge + " \t")).strip().lower()
    return None


def _is_original(line: str) -> bool:
    phrase = _separator_phrase(line)
    return phrase is not None and (phrase in _ORIGINAL_PHRASES or phrase.startswith("forwarded by"))


# Outlook-style header blocks: "From:", "Sent:", ... in the table's languages and a few more.
FROM_WORDS = {
    *"From|Van|De|Von|Fra|Från|Od|Da|Lähettäjä|От|Feladó|Kimden|Afsender|Avsändare".split("|"),
    *"差出人|送信者|发件人|寄件者|보낸 사람".split("|"),
    *(name for fields in HEADER_FIELDS for name in fields.sender),
}
_OTHER_WORDS = {
    *(
        "Date|Sent|Datum|Envoyé|Envoyé le|Skickat|Sendt|Gesendet|Verzonden|Enviado|Enviada|Inviato|"
        "Odesláno|Wysłano|Отправлено|Дата|Lähetetty|Enviada em|Enviado em|Data|"
        "送信日時|日付|发送时间|日期|寄件日期|보낸 날짜|"
        "件名|主题|主旨|제목|宛先|收件人|收件者|받는 사람|"
        "Subject|Betreff|Objet|Emne|Ämne|Onderwerp|Asunto|Oggetto|Assunto|Temat|Předmět|Тема|Aihe|"
        "To|An|Til|À|Till|Aan|Para|A|Do|Komu|Кому|Vastaanottaja|Cc|Kopie|Kopi|CC"
    ).split("|"),
    *(name for fields in HEADER_FIELDS for name in fields.others),
}


def _alternation(words: set[str]) -> str:
    return "|".join(re.escape(word) for word in sorted(words, key=len, reverse=True))


_FROM_FIELDS = _alternation(FROM_WORDS)
_OTHER_FIELDS = _alternation(_OTHER_WORDS)
_FIELD_LINE = re.compile(
    rf"^\s*[*_]?\s*(?:{_FROM_FIELDS}|{_OTHER_FIELDS})\s?[*_]?\s?[:：]", re.IGNORECASE
)
_FROM_LINE = re.compile(rf"^\s*[*_]?\s*(?:{_FROM_FIELDS}|Date|Datum)\s?[*_]?\s?[:：]", re.I)
_INLINE_FIELDS = re.compile(rf"\s[*_]?(?:{_OTHER_FIELDS})\s?[*_]?\s?[:：]\s", re.IGNORECASE)
QUOTE_MARK = re.compile(r"^\s*>")
# A reply header written on the same line as the reply ("Thanks! On Mon, ... wrote:").
_SHARED_LINE = re.compile(rf"(?<=\S)(?:\s+|-{{2,}}\s*)(?=(?:{_CASED_LEADS})\s)")

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
    """ "---------- Forwarded message ---------" or Apple's "Begin forwarded message:"."""
    phrase = _separator_phrase(line)
    if phrase is not None:
        return phrase.rstrip(":： ") in _FORWARD_PHRASES
    if ":" not in line[-4:] and "：" not in line[-4:]:
        return False
    text = line.strip()
    if not text.endswith((":", "：")) or len(text) > _MAX_SEPARATOR:
        return False
    return without_marks(text[:-1]).strip().lower() in _FORWARD_PHRASES


def splitter_span(lines: list[str], index: int) -> int:
    """How many lines the reply header starting at ``index`` covers; 0 when there is none."""
    line = lines[index]
    if len(line) > _MAX_MATCH_LINE:
        return 0
    if _is_original(line):
        return 1
    # Substring tests before the long alternations: most lines are plain text.
    if (":" in line or "：" in line) and _FROM_LINE.match(line):
        span = _field_block_span(lines, index)
        if span:
            return span
    lead = _starts_with_lead(line)
    addressed = _ADDRESS_START.search(line) is not None
    if not (lead or addressed):
        # A one-line header can start here ("---- Jane wrote ----"), or a date-first one.
        dashed = line.lstrip().startswith("--") and _has_verb(line)
        if dashed and _DASHED_WROTE.match(line):
            return 1
        return _structural_span(lines, index)
    joined = ""
    for extra in range(_MAX_SPLITTER_LINES):
        if index + extra >= len(lines):
            break
        joined = f"{joined} {lines[index + extra].strip()}".strip()
        if len(joined) > _MAX_MATCH_LINE:
            break
        if _is_reply_header(joined, wrapped=extra > 0 and not addressed):
            return extra + 1
    return _structural_span(lines, index)


# The structural rule, for header forms no table row covers: a line, or two or three
# wrapped ones, that starts a paragraph, holds a date or time and a name or address,
# ends with a colon, and is followed by quoted text or by an earlier message.
_MAX_STRUCTURAL_LINES = 3
_MAX_STRUCTURAL = 300
_DATE_OR_TIME = re.compile(
    r"\d{1,2}[:.]\d\d|\d{1,4}\s?[./-]\s?\d{1,2}\s?[./-]\s?\d{1,4}|\b(?:19|20)\d\d\b|\d\s*[年년]"
)
_NAME = re.compile(r"[^\W\d_]{2,}")
_FULL_DATE = re.compile(r"\d{1,4}\s?[./-]\s?\d{1,2}\s?[./-]\s?\d{1,4}")


def _structural_span(lines: list[str], index: int) -> int:
    if index > 0 and lines[index - 1].strip() and not _is_rule(lines[index - 1]):
        return 0  # inside a paragraph: the customer's own text
    first = lines[index]
    if not (_DATE_OR_TIME.search(first) or "@" in first) or first.rstrip().endswith(
        (".", "!", "?")
    ):
        return 0  # the date (or the sender) opens the header; a sentence is not one
    for extra in range(_MAX_STRUCTURAL_LINES):
        position = index + extra
        if position >= len(lines):
            return 0
        current = lines[position].rstrip(" \t*")
        if not current.strip() or QUOTE_MARK.match(current) or len(current) > _MAX_MATCH_LINE:
            return 0
        if current.endswith((":", "：")):
            break
    else:
        return 0
    joined = without_marks(" ".join(line.strip() for line in lines[index : position + 1]))
    if len(joined) > _MAX_STRUCTURAL or len(joined.split()) > 30:
        return 0
    if not (_DATE_OR_TIME.search(joined) and ("@" in joined or _NAME.search(joined))):
        return 0
    return extra + 1 if _earlier_message_follows(lines, position + 1, joined) else 0


def _earlier_message_follows(lines: list[str], start: int, joined: str) -> bool:
    """Quoted lines or a "From:" block below the header; else an address-and-time header."""
    for line in lines[start : start + 3]:
        if line.strip():
            if QUOTE_MARK.match(line) or _FROM_LINE.match(line):
                return True
            break
    if not _TIME.search(joined):
        return False
    at = joined.rfind("@")
    if at < 0:
        # Thunderbird's "03.02.2025 09:12, Иван Иванов пишет:": a full date first, a verb last.
        return (
            joined[0].isdigit()
            and _FULL_DATE.match(joined) is not None
            and len(joined.split()) <= 12
            and _ends_with_verb(joined.lower(), colon=True)
            and _names_someone(joined)
        )
    # "... Jane <jane@example.org> napisał(a):", "Jane <jane@example.org> schrieb am <date>:";
    # not "I wrote to a@b.c at 10:30 the following:"
    after = joined[at:].split(None, 1)
    if len(after) == 1 or len(after[1].split()) <= 1 or after[1].lower().startswith(_VERB_ENDINGS):
        return True
    lowered = joined.lower()
    return _ends_with_verb(lowered, colon=True) or lowered.rstrip(" :：").endswith(")")


def _names_someone(header: str) -> bool:
    """A capitalised name before the verb ("Олена Коваль пише:"), not "09:12 I wrote:"."""
    words = header.split()[-5:-1]
    return any(len(word) > 1 and not word[0].islower() and not word[0].isdigit() for word in words)


def _is_rule(line: str) -> bool:
    text = line.strip()
    return len(text) >= 3 and not text.strip(_SEPARATOR_EDGE)


# A header wrapped over lines keeps its sender on the first one.
_ADDRESS_START = re.compile(r"[<@\"]")


def _is_reply_header(joined: str, wrapped: bool) -> bool:
    # Cheap substring tests first: these run on every line that could start a header.
    if _LEAD_START.match(joined) and _on_wrote(joined):
        return True
    if wrapped or "@" not in joined:
        return False  # the patterns below all need the sender's address
    tail = joined[-60:]
    if _ends_with_verb(tail.lower(), colon=True):
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
    if _ends_with_verb(lowered[-60:], colon=False):
        return True
    if not lowered.rstrip(" \t*-").endswith((":", "：")):
        return False
    for verb in _VERB_WORDS:
        at = lowered.find(f" {verb} ")
        if at >= 0:
            # "Am <date> schrieb Jane Roe <jane@example.org>:": a name, maybe an address,
            # after the verb; not "On <date> I wrote to a@b.c the following:".
            rest = lowered[at + len(verb) + 2 :]
            if len(rest.split()) <= 6 and ("@" not in rest or _ENDS_ADDRESS_COLON.search(rest)):
                return True
    return False


def _ends_with_verb(lowered: str, colon: bool) -> bool:
    """Whether ``lowered`` ends with a "wrote" verb, then a colon (required when ``colon``)."""
    text = lowered.rstrip(" \t*-")
    if text.endswith((":", "：")):
        text = text[:-1].rstrip()
    elif colon:
        return False
    return text.endswith(_VERB_ENDINGS)


def _has_verb(text: str) -> bool:
    lowered = text.lower()
    return any(verb in lowered for verb in _VERB_WORDS)


# Verbs that, with a colon after them, say "the text below is quoted" even without a date.
# "sent" is left out: "Here is what I sent:" is a sentence, not an attribution.
_ATTRIBUTION_VERBS = tuple(v for v in _VERB_WORDS if v not in ("sent", "verzond"))
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
