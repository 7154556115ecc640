"""Unique, human-friendly tracking codes (کد پیگیری).

The alphabet leaves out characters people confuse when reading a code aloud
or typing it from an SMS (0/O, 1/I/L, U/V), and a check character catches a
mistyped one.  A code looks like ``OT-7K3M-Q9TX``; the prefix says what it
tracks (OT outage, CR credit, RC citizen fault receipt, NT notice, MW maintenance).
"""

from __future__ import annotations

import secrets

ALPHABET = "23456789ABCDEFGHJKMNPQRSTWXYZ"


def _check_char(body: str) -> str:
    total = sum((index + 1) * ALPHABET.index(char) for index, char in enumerate(body))
    return ALPHABET[total % len(ALPHABET)]


def new_code(prefix: str) -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(7))
    body += _check_char(body)
    return f"{prefix}-{body[:4]}-{body[4:]}"


def is_valid(code: str) -> bool:
    prefix, _, rest = code.upper().partition("-")
    body = rest.replace("-", "")
    if not prefix.isalpha() or len(body) != 8 or any(c not in ALPHABET for c in body):
        return False
    return _check_char(body[:7]) == body[7]
