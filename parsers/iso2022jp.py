"""ISO-2022-JP as Windows writes it (CP50221), NEC and IBM extensions included."""

from __future__ import annotations


def decode_iso2022jp_ms(data: bytes, strict: bool = True) -> str | None:
    """ISO-2022-JP read the way Windows (CP50221) writes it.

    The JIS X 0208 rows are mapped to Shift_JIS and decoded as CP932, which
    holds the NEC and IBM extension characters (circled digits, Roman numerals)
    that Python's iso2022_jp codecs reject.
    """
    out: list[str] = []
    mode = "ascii"
    i = 0
    n = len(data)
    errors = "strict" if strict else "replace"
    while i < n:
        byte = data[i]
        if byte == 0x1B:
            seq = data[i + 1 : i + 4]
            if seq[:2] in (b"$@", b"$B"):
                mode, i = "jis0208", i + 3
            elif seq[:3] == b"$(D":
                mode, i = "jis0212", i + 4
            elif seq[:2] in (b"(B", b"(J"):
                mode, i = "ascii", i + 3
            elif seq[:2] == b"(I":
                mode, i = "kana", i + 3
            elif strict:
                return None
            else:
                i += 1
            continue
        if byte in (0x0A, 0x0D):
            # A line break ends any two-byte run in well-formed input.
            out.append(chr(byte))
            i += 1
            continue
        if mode == "ascii" or byte < 0x21 or byte > 0x7E:
            if byte > 0x7F:
                if strict:
                    return None
                out.append("\ufffd")
            else:
                out.append(chr(byte))
            i += 1
            continue
        if mode == "kana":
            out.append(bytes([byte + 0x80]).decode("cp932"))
            i += 1
            continue
        if i + 1 >= n:
            if strict:
                return None
            out.append("\ufffd")
            break
        j1, j2 = byte, data[i + 1]
        i += 2
        try:
            if mode == "jis0212":
                out.append(bytes([0x8F, j1 | 0x80, j2 | 0x80]).decode("euc_jp", errors))
            else:
                out.append(_jis_to_sjis(j1, j2).decode("cp932", errors))
        except UnicodeDecodeError:
            return None
    return "".join(out)


def _jis_to_sjis(j1: int, j2: int) -> bytes:
    s1 = ((j1 - 0x21) >> 1) + 0x81
    if s1 > 0x9F:
        s1 += 0x40
    if j1 & 1:
        s2 = j2 + 0x1F + (1 if j2 >= 0x60 else 0)
    else:
        s2 = j2 + 0x7E
    return bytes([s1, s2])
