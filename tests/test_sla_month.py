"""Settling a month (DESIGN.md §3), one row per rule, each checkable by hand.

The month is 1403-07 (Mehr 1403: 30 days, no daylight saving), the interval
60 s, the threshold 2, the target 99.5 % with tiers below 99.5 → 10 % and
below 99.0 → 25 %, a monthly base of 1,000,000 rials.  43,200 minutes make
the nominal month, so one minute of downtime is 1/432 of a percent: up to 216
minutes is met, 217 to 432 minutes earn 10 %, more earn 25 %.
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from core.model import CreditTier, Exclusion, MaintenanceWindow, ServiceTerms, Status
from sla_calc.derive import derive_segments
from sla_calc.month import credit_for, settle_service, truncate_percent
from sla_calc.periods import BadMonth, JalaliMonth

MONTH = JalaliMonth(1403, 7)
START, END = MONTH.bounds()
MIN = 60_000
HOUR = 60 * MIN
NOMINAL = 43_200 * MIN
TERMS = ServiceTerms("portal", "پورتال", MIN, 2, 99.5, 1_000_000,
                     (CreditTier(99.5, 10), CreditTier(99.0, 25)))


def timeline(downs: list[tuple[float, float]] = (), unknowns: list[tuple[float, float]] = (),  # type: ignore[assignment]
             gaps: list[tuple[float, float]] = (), first: float = -60, last: float = 43_260,  # type: ignore[assignment]
             interval: int = MIN) -> list[tuple[int, Status]]:
    """Results every minute from ``first`` to ``last`` (minutes from the month's start):
    down inside ``downs``, unknown inside ``unknowns``, none inside ``gaps``, up elsewhere."""
    def inside(spans: list[tuple[float, float]], minute: float) -> bool:
        return any(a <= minute < b for a, b in spans)

    out = []
    minute = first
    while minute < last:
        if not inside(gaps, minute):
            status = (Status.DOWN if inside(downs, minute)
                      else Status.UNKNOWN if inside(unknowns, minute) else Status.UP)
            out.append((START + int(minute * MIN), status))
        minute += interval / MIN
    return out


def settle(*locations: list[tuple[int, Status]], terms: ServiceTerms = TERMS, denominator: int = NOMINAL,
           maintenance: list[MaintenanceWindow] = (), exclusions: list[Exclusion] = (),  # type: ignore[assignment]
           month: tuple[int, int] = (START, END)) -> object:
    per_location = [derive_segments(results, terms.interval_ms, terms.failure_threshold) for results in locations]
    return settle_service(terms, per_location, month, denominator, maintenance, exclusions)


def window(ident: str, start_min: float, end_min: float, announced_hours_before: float,
           cancelled: bool = False, services: tuple[str, ...] = ("portal",)) -> MaintenanceWindow:
    start = START + int(start_min * MIN)
    return MaintenanceWindow(ident, services, start, START + int(end_min * MIN),
                             start - int(announced_hours_before * HOUR), cancelled)


ROWS = [
    # (why, settle() arguments, expected downtime min, excluded min, credit %)
    ("no failures: 100 %", dict(locations=[timeline()]), 0, 0, 0),
    ("a blip below the threshold counts nothing", dict(locations=[timeline(downs=[(100, 101)])]), 0, 0, 0),
    ("two failed checks: 2 minutes", dict(locations=[timeline(downs=[(100, 102)])]), 2, 0, 0),
    ("an outage across the month start counts only its minutes inside the month",
     dict(locations=[timeline(downs=[(-30, 10)])]), 10, 0, 0),
    ("an outage across the month end likewise", dict(locations=[timeline(downs=[(43_190, 43_230)])]), 10, 0, 0),
    ("unknown results inside an outage end it and are not downtime",
     dict(locations=[timeline(downs=[(100, 110), (115, 125)], unknowns=[(110, 115)])]), 20, 0, 0),
    ("a data gap inside an outage: each down covers at most two intervals",
     dict(locations=[timeline(downs=[(100, 160)], gaps=[(110, 150)])]), 9 + 2 + 10, 0, 0),
    ("216 minutes is exactly 99.5 %: met, no credit", dict(locations=[timeline(downs=[(0, 216)])]), 216, 0, 0),
    ("maintenance announced 73 h ahead excludes its minutes",
     dict(locations=[timeline(downs=[(600, 900)])], maintenance=[window("mw-73", 600, 900, 73)]), 0, 300, 0),
    ("maintenance announced exactly 72 h ahead excludes its minutes",
     dict(locations=[timeline(downs=[(600, 900)])], maintenance=[window("mw-72", 600, 900, 72)]), 0, 300, 0),
    ("maintenance announced 71 h ahead excludes nothing",
     dict(locations=[timeline(downs=[(600, 900)])], maintenance=[window("mw-71", 600, 900, 71)]), 300, 0, 10),
    ("a cancelled window excludes nothing",
     dict(locations=[timeline(downs=[(600, 900)])], maintenance=[window("mw-x", 600, 900, 100, cancelled=True)]),
     300, 0, 10),
    ("overlapping windows merge; the overrun past their end is downtime",
     dict(locations=[timeline(downs=[(600, 1000)])],
          maintenance=[window("mw-a", 600, 800, 80), window("mw-b", 700, 900, 90)]), 100, 300, 0),
    ("a window for another service excludes nothing here",
     dict(locations=[timeline(downs=[(600, 900)])],
          maintenance=[window("mw-o", 600, 900, 80, services=("payments",))]), 300, 0, 10),
    ("a window for every service ('*') applies",
     dict(locations=[timeline(downs=[(600, 900)])], maintenance=[window("mw-all", 600, 900, 80, services=("*",))]),
     0, 300, 0),
    ("an infrastructure exclusion (telecom clause) excludes its overlap",
     dict(locations=[timeline(downs=[(600, 900)])],
          exclusions=[Exclusion("ex-1", ("*",), START + 700 * MIN, START + 800 * MIN, "national link down")]),
     200, 100, 0),
    ("two locations disagreeing: one of two is not a majority",
     dict(locations=[timeline(downs=[(100, 200)]), timeline()]), 0, 0, 0),
    ("two of three locations down is a majority",
     dict(locations=[timeline(downs=[(100, 200)]), timeline(downs=[(150, 200)]), timeline()]), 50, 0, 0),
    ("a threshold of 3 ignores two failed checks",
     dict(locations=[timeline(downs=[(100, 102)])],
          terms=ServiceTerms("portal", "p", MIN, 3, 99.5, 0, ())), 0, 0, 0),
]


@pytest.mark.parametrize(("why", "arguments", "downtime", "excluded", "credit"), ROWS, ids=[r[0] for r in ROWS])
def test_month_rules(why: str, arguments: dict[str, object], downtime: float, excluded: float, credit: float) -> None:
    locations = arguments.pop("locations")
    figures = settle(*locations, **arguments)  # type: ignore[arg-type]
    assert (figures.downtime_ms / MIN, figures.excluded_ms / MIN, figures.credit_percent) == (  # type: ignore[attr-defined]
        downtime, excluded, credit), why


def test_exactly_on_a_tier_boundary_and_one_second_past_it() -> None:
    on_boundary = settle(timeline(downs=[(0, 216)]))
    assert on_boundary.availability_percent == 99.5 and on_boundary.met  # type: ignore[attr-defined]
    assert on_boundary.credit_percent == 0  # type: ignore[attr-defined]
    # Downs every minute from 0 to 215, then the first up at 216 min + 1 s: 12,961 s of downtime.
    results = [r for r in timeline(downs=[(0, 216)]) if not START + 216 * MIN <= r[0] < START + 217 * MIN]
    results.append((START + 216 * MIN + 1000, Status.UP))
    results.sort()
    past = settle(results)
    assert past.downtime_ms == 216 * MIN + 1000  # type: ignore[attr-defined]
    assert past.availability_percent < 99.5 and not past.met  # type: ignore[attr-defined]
    assert past.credit_percent == 10  # type: ignore[attr-defined]
    assert past.credit_amount == 100_000  # type: ignore[attr-defined]


def test_credit_tier_is_the_smallest_below_that_availability_is_under() -> None:
    tiers = (CreditTier(99.5, 10), CreditTier(99.0, 25), CreditTier(95.0, 50))
    assert credit_for(Fraction(9960, 100), tiers) == 0
    assert credit_for(Fraction(9940, 100), tiers) == 10
    assert credit_for(Fraction(99), tiers) == 10  # 99.0 is not under 99.0
    assert credit_for(Fraction(9899, 100), tiers) == 25
    assert credit_for(Fraction(90), tiers) == 50


def test_availability_is_displayed_truncated_never_rounded_up() -> None:
    nearly = settle(timeline(downs=[(0, 2)]))  # 2 minutes: 99.99537...
    assert nearly.availability_percent == pytest.approx(99.99537037037037)  # type: ignore[attr-defined]
    assert truncate_percent(nearly.availability_percent) == "99.99"  # type: ignore[attr-defined]
    assert truncate_percent(99.99999) == "99.99"
    assert truncate_percent(99.5) == "99.50"
    assert truncate_percent(100.0) == "100.00"
    assert truncate_percent(0.0) == "0.00"


def test_half_a_month_without_data_is_50_percent_coverage_and_no_downtime() -> None:
    figures = settle(timeline(first=0, last=21_600))  # 15 of 30 days
    # The last result covers two intervals: 15 days and 1 minute of the 30-day month are covered.
    assert figures.covered_ms == 21_601 * MIN  # type: ignore[attr-defined]
    assert figures.coverage_percent == pytest.approx(100 * 21_601 / 43_200)  # type: ignore[attr-defined]
    assert figures.downtime_ms == 0 and figures.availability_percent == 100  # type: ignore[attr-defined]


def test_late_maintenance_is_listed_with_how_late_it_was() -> None:
    figures = settle(timeline(downs=[(600, 900)]), maintenance=[window("mw-late", 600, 900, 70)])
    assert [(late.id, late.hours_short) for late in figures.late_maintenance] == [("mw-late", 2.0)]  # type: ignore[attr-defined]


# -- months: boundaries, lengths, bases ----------------------------------------------

MONTH_ROWS = [
    # (month, start in UTC, length in hours, why)
    ("1403-07", "2024-09-21T20:30:00+00:00", 30 * 24, "Mehr 1403 starts at Tehran midnight of 22 September 2024"),
    ("1403-01", "2024-03-19T20:30:00+00:00", 31 * 24, "a 31-day month (no DST since 1402)"),
    ("1403-12", "2025-02-18T20:30:00+00:00", 30 * 24, "Esfand of leap year 1403 has 30 days"),
    ("1400-01", "2021-03-20T20:30:00+00:00", 31 * 24 - 1, "DST era: clocks went forward on 2 Farvardin"),
    ("1400-06", "2021-08-22T19:30:00+00:00", 31 * 24 + 1, "DST era: clocks went back at the end of Shahrivar"),
    ("1400-07", "2021-09-22T20:30:00+00:00", 30 * 24, "after DST, Mehr starts at +03:30 again"),
]


@pytest.mark.parametrize(("text", "start_utc", "hours", "why"), MONTH_ROWS, ids=[r[0] for r in MONTH_ROWS])
def test_jalali_month_boundaries_in_tehran(text: str, start_utc: str, hours: int, why: str) -> None:
    from datetime import datetime

    month = JalaliMonth.parse(text)
    start, end = month.bounds()
    assert start == int(datetime.fromisoformat(start_utc).timestamp()) * 1000, why
    assert (end - start) == hours * HOUR, why
    assert month.denominator_ms("nominal_30d") == NOMINAL
    assert month.denominator_ms("actual") == hours * HOUR


def test_a_31_day_month_on_both_bases() -> None:
    month = JalaliMonth(1403, 1)
    start, end = month.bounds()
    results = [(start + m * MIN, Status.DOWN if m < 446 else Status.UP) for m in range(-1, 44_641)]
    results[0] = (start - MIN, Status.UP)
    nominal = settle(results, denominator=month.denominator_ms("nominal_30d"), month=(start, end))
    actual = settle(results, denominator=month.denominator_ms("actual"), month=(start, end))
    assert nominal.downtime_ms == actual.downtime_ms == 446 * MIN  # type: ignore[attr-defined]
    assert nominal.availability_percent == pytest.approx(100 * (1 - 446 / 43_200))  # type: ignore[attr-defined]
    assert actual.availability_percent == pytest.approx(100 * (1 - 446 / 44_640))  # type: ignore[attr-defined]
    assert nominal.credit_percent == 25 and actual.credit_percent == 10  # type: ignore[attr-defined]


def test_a_dst_era_month_uses_its_real_length_on_the_actual_basis() -> None:
    month = JalaliMonth(1400, 1)
    assert month.denominator_ms("actual") == (31 * 24 - 1) * HOUR


@pytest.mark.parametrize("text", ["1403-13", "1403-7", "03-07", "", "1403/07"])
def test_bad_month_text_is_refused_with_the_expected_form(text: str) -> None:
    with pytest.raises(BadMonth, match="YYYY-MM"):
        JalaliMonth.parse(text)


def test_month_containing_an_instant() -> None:
    assert JalaliMonth.containing(START) == MONTH
    assert JalaliMonth.containing(END - 1) == MONTH
    assert JalaliMonth.containing(END) == MONTH.next()
