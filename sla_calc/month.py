"""Settling a month: DESIGN.md §3 "Exclusions", "Month", "Availability", "Credits".

Pure: intervals and terms in, figures out; the clock (``now_ms``, for a month
still running) is an argument.  Exact arithmetic (integer milliseconds and
``Fraction``) until the figures leave as floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from core.model import (
    CreditTier,
    Exclusion,
    LateMaintenance,
    MaintenanceWindow,
    OutageInMonth,
    ServiceMonth,
    ServiceTerms,
)
from sla_calc.derive import Segment, quorum_segments
from sla_calc.intervals import Interval, clip, intersection, measure, union

HOUR_MS = 3_600_000


def applies(services: Sequence[str], service: str) -> bool:
    return "*" in services or service in services


def qualifying_maintenance(window: MaintenanceWindow, notice_ms: int) -> bool:
    """A window excludes its minutes only if announced at least the notice period before it starts."""
    return not window.cancelled and window.start_ms - window.announced_at_ms >= notice_ms


@dataclass(frozen=True, slots=True)
class NoticeVerdict:
    """How a maintenance window stands against the notice period of the agreement in force."""

    given_hours: float  # how long before its start it was announced
    required_hours: float

    @property
    def meets(self) -> bool:
        return self.given_hours >= self.required_hours

    @property
    def hours_short(self) -> float:
        return max(0.0, self.required_hours - self.given_hours)


def notice_verdict(start_ms: int, announced_at_ms: int, required_hours: float) -> NoticeVerdict:
    """The notice rule (DESIGN.md §3 "Exclusions"), in the one place it is written."""
    return NoticeVerdict((start_ms - announced_at_ms) / HOUR_MS, required_hours)


@dataclass(frozen=True, slots=True)
class Exclusions:
    """What excludes downtime for one service: merged intervals, their reasons, and late windows."""

    intervals: list[Interval]
    reasons: tuple[str, ...]
    late: tuple[LateMaintenance, ...]


def exclusions_for(
    service: str,
    maintenance: Sequence[MaintenanceWindow],
    exclusions: Sequence[Exclusion],
    notice_hours: float,
    period: tuple[int, int],
) -> Exclusions:
    """Qualifying maintenance (announced in time, not cancelled) and infrastructure exclusions.

    Reasons and late windows are those that overlap ``period``; the intervals
    are all of them (an outage may start before the period).
    """
    start, end = period
    notice_ms = round(notice_hours * HOUR_MS)
    excluding: list[Interval] = []
    reasons: list[str] = []
    late: list[LateMaintenance] = []
    for window in maintenance:
        if not applies(window.services, service) or window.cancelled:
            continue
        overlaps = window.start_ms < end and window.end_ms > start
        if qualifying_maintenance(window, notice_ms):
            excluding.append((window.start_ms, window.end_ms))
            if overlaps:
                reasons.append(f"maintenance {window.id}")
        elif overlaps:
            verdict = notice_verdict(window.start_ms, window.announced_at_ms, notice_hours)
            late.append(LateMaintenance(window.id, round(verdict.hours_short, 3)))
    for exclusion in exclusions:
        if applies(exclusion.services, service):
            excluding.append((exclusion.start_ms, exclusion.end_ms))
            if exclusion.start_ms < end and exclusion.end_ms > start:
                reasons.append(f"{exclusion.id}: {exclusion.reason}")
    return Exclusions(union(excluding), tuple(dict.fromkeys(reasons)), tuple(late))


def credit_for(availability: Fraction, tiers: Sequence[CreditTier]) -> float:
    """The tier with the smallest ``below`` that availability (percent, unrounded) is under."""
    for tier in sorted(tiers, key=lambda t: t.below):
        if availability < Fraction(str(tier.below)):
            return tier.credit_percent
    return 0.0


def downtime_in(
    per_location: Sequence[Sequence[Segment]], period: tuple[int, int], excluded: list[Interval],
    quorum: float = 0.5,
) -> tuple[list[Interval], list[Interval], int]:
    """(covered, down, excluded ms) of the locations combined by quorum, inside ``period``."""
    start, end = period
    combined = quorum_segments([list(s) for s in per_location if s], quorum) if any(per_location) else []
    covered = union(clip(((s, e) for s, e, _ in combined), start, end))
    down = union(clip(((s, e) for s, e, d in combined if d), start, end))
    return covered, down, measure(intersection(down, excluded))


def settle_service(
    terms: ServiceTerms,
    per_location: Sequence[Sequence[Segment]],
    month: tuple[int, int],
    denominator_ms: int,
    maintenance: Sequence[MaintenanceWindow] = (),
    exclusions: Sequence[Exclusion] = (),
    notice_hours: float = 72.0,
    now_ms: int | None = None,
    quorum: float = 0.5,
) -> ServiceMonth:
    start, end = month
    # A month still running is judged on what has happened so far, coverage included.
    horizon = min(end, now_ms) if now_ms is not None else end
    excluding = exclusions_for(terms.id, maintenance, exclusions, notice_hours, month)
    covered, down, excluded_ms = downtime_in(per_location, (start, horizon), excluding.intervals, quorum)
    downtime_ms = measure(down) - excluded_ms
    availability = max(Fraction(0), 1 - Fraction(downtime_ms, denominator_ms)) * 100
    target = Fraction(str(terms.target_percent))
    credit_percent = credit_for(availability, terms.credit_tiers)
    outages = tuple(
        OutageInMonth(s, e, measure(intersection([(s, e)], excluding.intervals))) for s, e in down
    )
    elapsed = max(0, horizon - start)
    covered_ms = measure(covered)
    return ServiceMonth(
        service=terms.id,
        availability_percent=float(availability),
        downtime_ms=downtime_ms,
        excluded_ms=excluded_ms,
        covered_ms=covered_ms,
        month_length_ms=elapsed,
        target_percent=terms.target_percent,
        met=availability >= target,
        credit_percent=credit_percent,
        credit_amount=float(Fraction(str(credit_percent)) / 100 * Fraction(str(terms.monthly_base))),
        late_maintenance=excluding.late,
        outages=outages,
        exclusion_reasons=excluding.reasons,
        evidence_sufficient=evidence_sufficient(covered_ms, elapsed, terms.min_coverage_percent),
    )


def evidence_sufficient(covered_ms: int, length_ms: int, min_coverage_percent: float) -> bool:
    """Coverage (exact) against the agreement's minimum; an empty period has no evidence."""
    if length_ms <= 0:
        return False
    return Fraction(covered_ms * 100, length_ms) >= Fraction(str(min_coverage_percent))


def truncate_percent(value: float, decimals: int = 2) -> str:
    """Display a percentage truncated, never rounded up: 99.9999 shows as 99.99, not 100.00."""
    scaled = int(Fraction(value) * 10**decimals)  # int() truncates; availability is never negative
    if not decimals:
        return str(scaled)
    digits = str(scaled).rjust(decimals + 1, "0")
    return f"{digits[:-decimals]}.{digits[-decimals:]}"
