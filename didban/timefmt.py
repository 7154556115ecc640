"""Showing instants to people: Asia/Tehran wall time, Jalali dates, Persian digits."""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo

import jdatetime

from didban.model import ms_to_datetime

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
