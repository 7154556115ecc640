"""Checking and normalising recipients' addresses at subscribe time, with a reason when refused."""

from __future__ import annotations

import re

_PERSIAN_DIGITS = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "01234567890123456789")
_MOBILE = re.compile(r"^(?:\+98|0098|98|0)?(9\d{9})$")
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")


class BadAddress(ValueError):
    pass


def normalise_mobile(text: str) -> str:
    """An Iranian mobile number as ``09xxxxxxxxx`` (accepts +98, 0098, 98, Persian digits, spaces, dashes)."""
    digits = re.sub(r"[\s\-().]", "", text.translate(_PERSIAN_DIGITS))
    match = _MOBILE.match(digits)
    if not match:
        raise BadAddress(f"not an Iranian mobile number: {text!r} (expected 09xxxxxxxxx or +989xxxxxxxxx)")
    return "0" + match.group(1)


def international_mobile(mobile: str) -> str:
    return "+98" + normalise_mobile(mobile)[1:]


def normalise_email(text: str) -> str:
    address = text.strip()
    if len(address) > 254 or not _EMAIL.match(address):
        raise BadAddress(f"not an email address: {text!r}")
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}"


def normalise(kind: str, text: str) -> str:
    if kind == "sms":
        return normalise_mobile(text)
    if kind == "email":
        return normalise_email(text)
    raise BadAddress(f"unknown kind of address {kind!r}: expected email or sms")
