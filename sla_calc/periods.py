"""SLA periods: Jalali (Solar Hijri) calendar months in Asia/Tehran.

A month is ``[1st day 00:00, 1st day of next month 00:00)`` Tehran wall time.
Iran observed daylight saving until 1401 (2022), so a month of those years
can be an hour longer or shorter than its days suggest: the boundaries are
computed through the tz database, never by adding hours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import jdatetime

TEHRAN = ZoneInfo("Asia/Tehran")
NOMINAL_MONTH_MS = 30 * 24 * 60 * 60 * 1000  # the agreements' 30-day month: 43,200 minutes
_MONTH = re.compile(r"^(1[34]\d\d)-(0[1-9]|1[0-2])$")


class BadMonth(ValueError):
    pass


@dataclass(frozen=True, slots=True, order=True)
class JalaliMonth:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> JalaliMonth:
        match = _MONTH.match(text.strip())
        if not match:
            raise BadMonth(f"expected a Jalali month as YYYY-MM (for example 1403-07), got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def containing(cls, ms: int) -> JalaliMonth:
        local = datetime.fromtimestamp(ms / 1000, TEHRAN)
        date = jdatetime.date.fromgregorian(date=local.date())
        return cls(date.year, date.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def next(self) -> JalaliMonth:
        return JalaliMonth(self.year + 1, 1) if self.month == 12 else JalaliMonth(self.year, self.month + 1)

    def previous(self) -> JalaliMonth:
        return JalaliMonth(self.year - 1, 12) if self.month == 1 else JalaliMonth(self.year, self.month - 1)

    def start_ms(self) -> int:
        """Tehran midnight of the 1st, in epoch milliseconds (UTC)."""
        gregorian = jdatetime.date(self.year, self.month, 1).togregorian()
        local = datetime(gregorian.year, gregorian.month, gregorian.day, tzinfo=TEHRAN)
        return int(local.timestamp()) * 1000

    def end_ms(self) -> int:
        return self.next().start_ms()

    def bounds(self) -> tuple[int, int]:
        return self.start_ms(), self.end_ms()

    def denominator_ms(self, basis: str) -> int:
        """The month's denominator: 30 × 24 h (``nominal_30d``) or its real length (``actual``)."""
        if basis == "nominal_30d":
            return NOMINAL_MONTH_MS
        if basis == "actual":
            start, end = self.bounds()
            return end - start
        raise ValueError(f"unknown month basis {basis!r}")
