"""Instants and people: shown in Asia/Tehran wall time with Jalali dates and Persian digits, read the same way."""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import jdatetime

from core.model import ms_to_datetime

TEHRAN = ZoneInfo("Asia/Tehran")
_PERSIAN_DIGITS = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")


def persian_digits(text: str) -> str:
    return text.translate(_PERSIAN_DIGITS)


def jalali(ms: int, with_time: bool = True) -> str:
    """``1403/07/01 14:05`` in Tehran."""
    return _jalali_minute(ms - ms % 60_000, with_time)


@lru_cache(maxsize=65_536)
def _jalali_minute(minute_ms: int, with_time: bool) -> str:
    # Cached: a status page labels the same 90 days for every service, and
    # jdatetime's conversion and strftime are slow.
    local = ms_to_datetime(minute_ms).astimezone(TEHRAN)
    try:
        date = jdatetime.datetime.fromgregorian(datetime=local)
    except (ValueError, OverflowError):  # before the Jalali calendar's year 1: shown as it is, in Gregorian
        return local.strftime("%Y-%m-%d %H:%M" if with_time else "%Y-%m-%d")
    return str(date.strftime("%Y/%m/%d %H:%M" if with_time else "%Y/%m/%d"))


def duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


_DIGITS = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "01234567890123456789")
_JALALI_INPUT = re.compile(r"^(1[34]\d\d)[/-](\d{1,2})[/-](\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$")


class BadInstant(ValueError):
    pass


def parse_instant(text: str) -> int:
    """A time as people write it → epoch ms.

    Jalali dates (``1405/09/20``, ``1405-09-20 10:00``, Persian digits too) and Gregorian ISO
    (``2026-12-11T10:00``); a time without an offset is Tehran wall time, a bare date its midnight.
    """
    cleaned = text.strip().translate(_DIGITS)
    match = _JALALI_INPUT.match(cleaned)
    if match:
        year, month, day, hour, minute, second = (int(g) if g else 0 for g in match.groups())
        try:
            gregorian = jdatetime.date(year, month, day).togregorian()
            local = datetime(gregorian.year, gregorian.month, gregorian.day, hour, minute, second, tzinfo=TEHRAN)
        except ValueError as exc:
            raise BadInstant(f"{text!r} is not a Jalali date and time ({exc})") from None
        return int(local.timestamp() * 1000)
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        raise BadInstant(f"expected a time like 1405/09/20 10:00 (Jalali, Tehran) or 2026-12-11T10:00+03:30, "
                         f"got {text[:80]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=TEHRAN)  # people mean Tehran wall time
    return int(moment.timestamp() * 1000)
