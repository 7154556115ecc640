"""Settling a month: DESIGN.md §3 "Exclusions", "Month", "Availability", "Credits".

Pure: intervals and terms in, figures out; the clock (``now_ms``, for a month
still running) is an argument.  Exact arithmetic (integer milliseconds and
``Fraction``) until the figures leave as floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from didban.model import (
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


def credit_for(availability: Fraction, tiers: Sequence[CreditTier]) -> float:
    """The tier with the smallest ``below`` that availability (percent, unrounded) is under."""
    for tier in sorted(tiers, key=lambda t: t.below):
        if availability < Fraction(str(tier.below)):
            return tier.credit_percent
    return 0.0


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
    # A month still running is judged on what has happened so far.
    horizon = min(end, now_ms) if now_ms is not None else end
    combined = quorum_segments([list(s) for s in per_location if s], quorum) if any(per_location) else []
    in_month = clip(((s, e) for s, e, _ in combined), start, horizon)
    down = union(clip(((s, e) for s, e, d in combined if d), start, horizon))

    notice_ms = round(notice_hours * HOUR_MS)
    excluding: list[Interval] = []
    reasons: list[str] = []
    late: list[LateMaintenance] = []
    for window in maintenance:
        if not applies(window.services, terms.id) or window.cancelled:
            continue
        overlaps_month = window.start_ms < end and window.end_ms > start
        if qualifying_maintenance(window, notice_ms):
            excluding.append((window.start_ms, window.end_ms))
            if overlaps_month:
                reasons.append(f"maintenance {window.id}")
        elif overlaps_month:
            short = (notice_ms - (window.start_ms - window.announced_at_ms)) / HOUR_MS
            late.append(LateMaintenance(window.id, round(short, 3)))
    for exclusion in exclusions:
        if applies(exclusion.services, terms.id):
            excluding.append((exclusion.start_ms, exclusion.end_ms))
            if exclusion.start_ms < end and exclusion.end_ms > start:
                reasons.append(f"{exclusion.id}: {exclusion.reason}")
    excluded_union = union(excluding)

    excluded_ms = measure(intersection(down, excluded_union))
    downtime_ms = measure(down) - excluded_ms
    availability = max(Fraction(0), 1 - Fraction(downtime_ms, denominator_ms)) * 100
    target = Fraction(str(terms.target_percent))
    credit_percent = credit_for(availability, terms.credit_tiers)
    outages = tuple(
        OutageInMonth(s, e, measure(intersection([(s, e)], excluded_union))) for s, e in down
    )
    return ServiceMonth(
        service=terms.id,
        availability_percent=float(availability),
        downtime_ms=downtime_ms,
        excluded_ms=excluded_ms,
        covered_ms=measure(in_month),
        month_length_ms=end - start,
        target_percent=terms.target_percent,
        met=availability >= target,
        credit_percent=credit_percent,
        credit_amount=float(Fraction(str(credit_percent)) / 100 * Fraction(str(terms.monthly_base))),
        late_maintenance=tuple(late),
        outages=outages,
        exclusion_reasons=tuple(dict.fromkeys(reasons)),
    )


def truncate_percent(value: float, decimals: int = 2) -> str:
    """Display a percentage truncated, never rounded up: 99.9999 shows as 99.99, not 100.00."""
    scaled = int(Fraction(value) * 10**decimals)  # int() truncates; availability is never negative
    if not decimals:
        return str(scaled)
    digits = str(scaled).rjust(decimals + 1, "0")
    return f"{digits[:-decimals]}.{digits[-decimals:]}"
