"""Languages (gateway/i18n): the choice of a language, Accept-Language read
within bounds, dates per locale in a time zone, catalogues (shipped and a
desk's own folder), translated templates and their per-language overrides,
and problem messages as a customer reads them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from jinja2 import DictLoader, Environment, select_autoescape

from gateway import i18n
from gateway.config import InvalidConfigError, build_config, load_config
from gateway.config.templates import read_templates
from gateway.i18n.problems import FORM_PROBLEMS, message_of

ACK = {"name": "Ann", "subject": "Printer", "reference": "7PY9-9T9S", "tag": "[#7PY9-9T9S]",
       "status_url": "https://desk.example/v1/status/t", "signature": "",
       "received_at": "then"}


@pytest.fixture(autouse=True)
def shipped_only() -> Iterator[None]:
    """Each test starts and ends with the shipped catalogues alone in force."""
    assert i18n.use_folder(None) == []
    yield
    assert i18n.use_folder(None) == []


def po(folder: Path, language: str, entries: dict[str, str], *, header: str = "") -> Path:
    """A desk catalogue `folder/<language>/LC_MESSAGES/intake.po`."""
    path = folder / language / "LC_MESSAGES" / "intake.po"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = ['msgid ""', 'msgstr ""', '"Content-Type: text/plain; charset=UTF-8\\n"',
            header, ""]
    for msgid, msgstr in entries.items():
        body += [f'msgid "{msgid}"', f'msgstr "{msgstr}"', ""]
    path.write_text("\n".join(body), encoding="utf-8")
    return path


# --- choosing a language ---------------------------------------------------------------


def test_choose__detected_then_accept_language_then_queue_then_desk() -> None:
    assert i18n.choose(detected="de", accept_language="fr", queue="nl", desk="it") == "de"
    assert i18n.choose(detected=None, accept_language="fr", queue="nl", desk="it") == "fr"
    assert i18n.choose(accept_language=None, queue="nl", desk="it") == "nl"
    assert i18n.choose(desk="it") == "it"
    assert i18n.choose() == "en"


def test_choose__each_only_when_there_is_a_catalogue_for_it() -> None:
    # Swedish is not shipped: the next preference decides, each in turn.
    assert i18n.choose(detected="sv", accept_language="fi, da", queue="xx", desk="pl") == "pl"
    assert i18n.choose(detected="und", desk="bogus!") == "en"


def test_accept_language__weights_order_the_ranges() -> None:
    header = "fr;q=0.4, de;q=0.9, sv, es;q=0.9"
    assert i18n.parse_accept_language(header) == [
        ("sv", 1.0), ("de", 0.9), ("es", 0.9), ("fr", 0.4)]
    # Swedish has no catalogue; of the two at 0.9 the first written wins.
    assert i18n.choose(accept_language=header) == "de"


def test_accept_language__a_region_falls_back_to_its_language() -> None:
    assert i18n.choose(accept_language="pt-BR,pt;q=0.9,en;q=0.8") == "pt"
    assert i18n.choose(accept_language="de-CH") == "de"
    assert i18n.choose(accept_language="NL-be") == "nl"
    assert i18n.match("pt_BR", ["en", "pt"]) == "pt"
    # A bare language takes one of its regional catalogues when that is all there is.
    assert i18n.match("pt", ["en", "pt-BR"]) == "pt-BR"


def test_accept_language__a_star_takes_ours_and_q0_refuses() -> None:
    assert i18n.choose(accept_language="sv, *;q=0.5", queue="nl", desk="de") == "nl"
    assert i18n.choose(accept_language="*", desk="it") == "it"
    # "not German": the desk's German is refused, so the next of ours.
    assert i18n.choose(accept_language="*, de;q=0", desk="de") == "en"
    assert i18n.choose(accept_language="fr;q=0, es", desk="fr") == "es"


@pytest.mark.parametrize("header", [
    "",
    ";;;,,,;q=",
    "de;q=2, fr;q=abc, es;q=-1, it;q=0.5",    # only the last weight is a qvalue
    "de-" + "x" * 200,
    "\x00de, fr\r\n, es",
    "日本語, de;q=0.1",
    "de;q=0.1;q=0.9",
    "q=1, =de, de=",
    ",".join(["sv"] * 10_000) + ",de",       # past the bound: Swedish only, then ours
    "de" * 100_000,
])
def test_accept_language__hostile_headers_are_read_within_bounds(header: str) -> None:
    started = time.perf_counter()
    chosen = i18n.choose(accept_language=header, desk="pl")
    assert time.perf_counter() - started < 0.5
    ranges = i18n.parse_accept_language(header)
    assert len(ranges) <= 32
    assert all(0 <= q <= 1 for _, q in ranges)
    assert chosen in ("it", "de", "es", "fr", "pl")


def test_accept_language__garbage_around_a_good_range_keeps_it() -> None:
    assert i18n.choose(accept_language="de;q=2, fr;q=abc, it;q=0.5", desk="pl") == "it"
    assert i18n.choose(accept_language="\x00de, es", desk="pl") == "es"


def test_detected__an_unsure_or_undetermined_guess_decides_nothing() -> None:
    assert i18n.detected("de", 0.99, "py3langid") == "de"
    assert i18n.detected("de", 0.2, "py3langid") is None
    assert i18n.detected("und", 0.0, "default") is None
    assert i18n.detected(None) is None and i18n.detected(["de"]) is None


def test_from_timeline__reads_the_classification_and_the_form_header() -> None:
    timeline = [
        {"kind": "received", "data": {"channel": "form", "accept_language": "fr-CH"}},
        {"kind": "classified", "data": {"classification": {
            "language": {"value": "de", "score": 0.97, "source": "py3langid"}}}},
        {"kind": "classified", "data": "not a mapping"},
    ]
    assert i18n.from_timeline(timeline) == ("de", "fr-CH")
    assert i18n.from_timeline([{"kind": "classified", "data": {"classification": 3}}]) == (
        None, None)


# --- dates ---------------------------------------------------------------------------


def test_format_datetime__german_and_french_in_the_desk_time_zone() -> None:
    winter = datetime(2026, 1, 5, 8, 30, tzinfo=UTC)
    assert i18n.format_datetime(winter, "de", "Europe/Berlin") == "5. Januar 2026, 09:30 MEZ"
    assert i18n.format_datetime(winter, "fr", "Europe/Paris") == "5 janvier 2026, 09:30 +0100"
    summer = datetime(2026, 7, 1, 22, 15, tzinfo=UTC)
    # Past midnight in Berlin: the day turns too.
    assert i18n.format_datetime(summer, "de", "Europe/Berlin") == "2. Juli 2026, 00:15 MESZ"
    assert i18n.format_date(summer, "fr", "Europe/Paris") == "2 juillet 2026"


def test_format_datetime__utc_by_default_and_naive_times_are_utc() -> None:
    naive = datetime(2026, 3, 2, 14, 0)
    # CLDR puts a narrow no-break space before PM.
    assert i18n.format_datetime(naive, "en") == "March 2, 2026, 2:00\u202fPM UTC"
    assert i18n.format_datetime(naive, "nl", "UTC") == "2 maart 2026, 14:00 UTC"
    # A language Babel does not know is written as English.
    assert i18n.format_datetime(naive, "xx") == i18n.format_datetime(naive, "en")


def test_timezone__checked_as_an_iana_name() -> None:
    assert i18n.check_timezone("America/Sao_Paulo") == "America/Sao_Paulo"
    for bad in ("Mars/Olympus", "../../etc/passwd", "", "localtime"):
        with pytest.raises(ValueError, match="not an IANA time zone"):
            i18n.check_timezone(bad)


# --- catalogues ------------------------------------------------------------------------


def test_translations__shipped_languages_and_fallbacks() -> None:
    assert i18n.translations("de").gettext("There is a problem") == "Es gibt ein Problem"
    assert i18n.translations("pt-BR").gettext("Send") == i18n.translations("pt").gettext("Send")
    # No catalogue: the message id, which is English.
    assert i18n.translations("sv").gettext("Send") == "Send"
    assert i18n.translations(None).gettext("Send") == "Send"
    assert i18n.available() == frozenset(i18n.SHIPPED)


def test_desk_folder__adds_a_language_and_rewords_a_shipped_one(tmp_path: Path) -> None:
    folder = tmp_path / "locales"
    po(folder, "sv", {"Send": "Skicka"})
    po(folder, "de", {"Send": "Abschicken"})
    config = build_config({"desk": {"locales": str(folder), "language": "sv"},
                           "queue": [{"name": "general", "language": "sv"}]}, "<t>", {})
    assert config.desk.language == "sv" and config.queue[0].language == "sv"
    assert "sv" in i18n.available()
    assert i18n.translations("sv").gettext("Send") == "Skicka"
    assert i18n.translations("de").gettext("Send") == "Abschicken"
    # What the desk leaves out comes from the shipped catalogue.
    assert i18n.translations("de").gettext("There is a problem") == "Es gibt ein Problem"
    assert i18n.choose(accept_language="sv-FI") == "sv"


def test_desk_folder__a_broken_one_is_a_config_error_and_changes_nothing(
        tmp_path: Path) -> None:
    good = tmp_path / "good"
    po(good, "de", {"Send": "Abschicken"})
    assert i18n.use_folder(str(good)) == []
    bad = tmp_path / "bad"
    po(bad, "fr", {"Your reference is %(reference)s": "Votre référence est %(ref)s"})
    po(bad, "nl", {}).write_text('msgid "unterminated\n', encoding="utf-8")
    (bad / "not a code").mkdir()
    (bad / "it").mkdir()
    file = tmp_path / "intake.toml"
    file.write_text(f'[desk]\nlocales = "{bad}"\n')
    with pytest.raises(InvalidConfigError) as caught:
        load_config(file, env={})
    [problem] = caught.value.problems
    assert problem.startswith(f"{file}: key desk.locales: ")
    assert ("fr/LC_MESSAGES/intake.po: 'Your reference is %(reference)s': placeholders "
            "%(ref)s where the message id has %(reference)s") in problem
    assert "nl/LC_MESSAGES/intake.po: not a valid .po file" in problem
    assert "not a code: not a language code" in problem
    assert "it/LC_MESSAGES/intake.po: missing" in problem
    # The folder in force is still the good one.
    assert i18n.translations("de").gettext("Send") == "Abschicken"


def test_desk_folder__a_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigError, match="key desk.locales: .*does not exist"):
        build_config({"desk": {"locales": str(tmp_path / "nowhere")}}, "<t>", {})


# --- templates --------------------------------------------------------------------------


def test_templates__the_built_in_acknowledgement_in_each_language() -> None:
    templates, problems = read_templates(None)
    assert problems == []
    english = templates.render(None, queue="general", **ACK)
    assert english.startswith("Hello Ann,\n\nwe received your request \"Printer\" on then")
    german = templates.render(None, queue="general", language="de", **ACK)
    assert german.startswith("Hallo Ann,\n\n")
    assert "7PY9-9T9S" in german and ACK["status_url"] in german
    texts = {lang: templates.render(None, queue="general", language=lang, **ACK)
             for lang in i18n.SHIPPED}
    assert len(set(texts.values())) == len(i18n.SHIPPED)  # each its own words
    assert all(ACK["reference"] in t and ACK["tag"] in t for t in texts.values())


def test_templates__overrides_per_language(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "acknowledgement.txt").write_text(
        "{% trans %}Hello,{% endtrans %} {{ reference }} (desk)\n")
    (folder / "acknowledgement.de.txt").write_text("Moin {{ reference }}\n")
    (folder / "billing.pt_BR.txt").write_text("Olá {{ reference }} (billing)\n")
    (folder / "vip.fr.txt").write_text("Cher client {{ reference }}\n")
    (folder / "vip.txt").write_text("Dear customer {{ reference }}\n")
    templates, problems = read_templates(str(folder))
    assert problems == []
    assert {"acknowledgement", "billing", "vip"} <= templates.names

    def render(template: str | None, queue: str, language: str) -> str:
        return templates.render(template, queue=queue, language=language, **ACK)

    # The language's own file, then the override (its {% trans %} translated).
    assert render(None, "general", "de") == "Moin 7PY9-9T9S\n"
    assert render(None, "general", "fr") == "Bonjour, 7PY9-9T9S (desk)\n"
    assert render(None, "general", "en") == "Hello, 7PY9-9T9S (desk)\n"
    # A queue's template for Brazilian Portuguese serves pt-BR, not pt.
    assert render(None, "billing", "pt-BR") == "Olá 7PY9-9T9S (billing)\n"
    assert render(None, "billing", "pt") == "Olá, 7PY9-9T9S (desk)\n"
    # A rule's template, per language too.
    assert render("vip", "billing", "fr-CA") == "Cher client 7PY9-9T9S\n"
    assert render("vip", "billing", "nl") == "Dear customer 7PY9-9T9S\n"


def test_templates__a_language_file_is_checked_like_the_others(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "acknowledgement.de.txt").write_text("Hallo {{ nmae }}\n")
    _, problems = read_templates(str(folder))
    assert len(problems) == 1 and problems[0].startswith(
        "acknowledgement.de.txt: unknown name(s) nmae; a template is given ")


def test_templating__values_escaped_in_html_translations_kept() -> None:
    env = i18n.prepare(Environment(loader=DictLoader({"p.html": (
        '<p>{{ _("Your reference is %(reference)s", reference=ref) }}</p>'
        '{% trans %}Hello {{ name }},{% endtrans %}')}),
        autoescape=select_autoescape(default=True)))
    page = env.get_template("p.html").render(ref="<b>", name="A&B",
                                             **i18n.template_functions("de"))
    assert "&lt;b&gt;" in page and "A&amp;B" in page and "<b>" not in page
    assert page.startswith("<p>Ihre Referenz")


# --- problems as customers read them -------------------------------------------------------


def test_problems__every_form_problem_is_found_and_english_is_unchanged() -> None:
    samples = {
        "this field must be at most %(limit)s characters": {"limit": "200"},
        "%(file)s: files of type %(type)s are not accepted (accepted: %(accepted)s)": {
            "file": "a.exe", "type": "application/x-msdownload",
            "accepted": "image/*, application/pdf"},
    }
    for message in FORM_PROBLEMS:
        values = samples.get(message, {})
        names = [part.split(")s")[0] for part in message.split("%(")[1:]]
        values = values or {name: f"<{name}>" for name in names}
        text = message % values
        assert message_of(text) == (message, values), message
        assert i18n.customer_text(text, "en") == text
        translated = i18n.customer_text(text, "de")
        assert translated != text, message
        assert all(v in translated for v in values.values()), (message, translated)


def test_problems__an_unknown_text_is_shown_as_written() -> None:
    assert i18n.customer_text("something new went wrong", "de") == "something new went wrong"
    assert i18n.customer_title(404, "fr") == i18n.translations("fr").gettext("Not found")
    assert i18n.customer_title(599, "en") == "Something went wrong"


def test_format_datetime__one_instant_in_two_zones_is_told_apart() -> None:
    """Formattings are kept per minute: the same instant asked for in another
    zone (equal as aware datetimes) is still written in that zone."""
    moment = datetime(2026, 1, 5, 8, 30, 17, tzinfo=UTC)
    assert i18n.format_datetime(moment, "de", "Europe/Berlin") == "5. Januar 2026, 09:30 MEZ"
    assert i18n.format_datetime(moment, "de", "UTC") == "5. Januar 2026, 08:30 UTC"
    assert i18n.format_datetime(moment.replace(second=59), "de", "Europe/Berlin") == \
        "5. Januar 2026, 09:30 MEZ"
