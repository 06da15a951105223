from __future__ import annotations

from parsers.charsets import codec_for, decode_bytes, decode_header_bytes
from parsers.header_values import decode_words


def test_charsets__gb2312_label_reads_gb18030_characters() -> None:
    data = "䶮镕 测试".encode("gb18030")  # 䶮 and 镕 are outside GB2312
    assert decode_bytes(data, "gb2312") == ("䶮镕 测试", None)


def test_charsets__latin1_label_reads_cp1252_quotes_and_euro() -> None:
    data = "“Preis” 5 €".encode("cp1252")
    assert decode_bytes(data, "iso-8859-1")[0] == "“Preis” 5 €"
    assert decode_bytes(data, "us-ascii")[0] == "“Preis” 5 €"


def test_charsets__latin1_label_on_utf8_text_reads_utf8() -> None:
    assert decode_bytes("Grüße".encode(), "iso-8859-1") == ("Grüße", None)


def test_charsets__iso2022jp_with_nec_extensions() -> None:
    # ESC $ B, row 13 of NEC (circled one, Roman numeral one), ESC ( B
    data = b"\x1b$B-!-5\x1b(B ok"
    assert decode_bytes(data, "iso-2022-jp") == ("①Ⅰ ok", None)


def test_charsets__iso2022jp_plain_kana() -> None:
    data = "ツール".encode("iso2022_jp")
    assert decode_bytes(data, "ISO-2022-JP")[0] == "ツール"


def test_charsets__wrong_label_falls_back_to_utf8_with_defect() -> None:
    text, defect = decode_bytes("日本語".encode(), "shift_jis")
    assert text == "日本語"
    assert defect is not None


def test_charsets__unknown_label_is_recorded() -> None:
    text, defect = decode_bytes(b"caf\xe9", "x-nonsense")
    assert text == "café"
    assert defect is not None and "x-nonsense" in defect


def test_charsets__eight_bit_header_utf8_then_cp1252() -> None:
    assert decode_header_bytes("Müller".encode()) == "Müller"
    assert decode_header_bytes("Müller".encode("cp1252")) == "Müller"


def test_charsets__codec_for_unknown_and_quoted_labels() -> None:
    assert codec_for('"UTF-8"') == "utf-8"
    assert codec_for("unknown-8bit") is None
    assert codec_for(None) is None


def test_charsets__encoded_word_split_inside_a_character() -> None:
    # "ü" is C3 BC; the two bytes sit in two adjacent encoded words.
    assert decode_words("=?utf-8?Q?M=C3?= =?utf-8?Q?=BCller?=") == "Müller"


def test_charsets__encoded_word_with_bad_padding() -> None:
    assert decode_words("=?utf-8?B?R8O8bnRoZXI?=") == "Günther"
    assert decode_words("=?ISO-2022-JP?B?GyRCO3ZMMzZJGyhC==?=") == "事務局"
