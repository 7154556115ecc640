"""SMS length rules: GSM-7 or UCS-2, single or concatenated segments.

A Persian text is sent as UCS-2: 70 characters fit in one segment, and a
longer message is split into 67-character parts (each part carries a header).
Notices are kept within a configured number of segments, cut at a word.
"""

from __future__ import annotations

import math

_GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = set("^{}\\[~]|€")


def is_gsm7(text: str) -> bool:
    return all(c in _GSM7 or c in _GSM7_EXTENDED for c in text)


def length_units(text: str) -> int:
    if is_gsm7(text):
        return sum(2 if c in _GSM7_EXTENDED else 1 for c in text)
    return sum(2 if ord(c) > 0xFFFF else 1 for c in text)  # UTF-16 code units


def segments(text: str) -> int:
    units = length_units(text)
    single, part = (160, 153) if is_gsm7(text) else (70, 67)
    if units <= single:
        return 1
    return math.ceil(units / part)


def fit(text: str, max_segments: int, tail: str = "") -> str:
    """``text`` + ``tail``, shortened at a word (with …) so the whole fits in ``max_segments``."""
    if segments(text + tail) <= max_segments:
        return text + tail
    words = text.split(" ")
    while words:
        words.pop()
        candidate = " ".join(words).rstrip("،,.;:") + "…" + tail
        if segments(candidate) <= max_segments:
            return candidate
    return tail[: 67 * max_segments]
