"""Closing months, as pure rules: which months are due, and what late evidence changed.

The clock is an argument; the ledger comes in as plain entries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from core.model import Credit, ServiceMonth
from sla_calc.periods import JalaliMonth


def due_months(now_ms: int, grace_ms: int, oldest: JalaliMonth | None = None) -> list[JalaliMonth]:
    """Months that have ended (plus the grace period) by ``now_ms``, most recent first, at most two."""
    due = []
    candidate = JalaliMonth.containing(now_ms).previous()
    for _ in range(2):
        if candidate.end_ms() + grace_ms <= now_ms and (oldest is None or candidate >= oldest):
            due.append(candidate)
        candidate = candidate.previous()
    return due


@dataclass(frozen=True, slots=True)
class Adjustment:
    """A service whose recomputed closed month differs from what the ledger holds."""

    service: str
    credit_percent: float
    availability_percent: float
    amount: float  # the difference to what the ledger already granted
    adjusts: str  # the original credit's tracking code, or "close:MONTH"
    note: str


def adjustments_needed(
    month: str,
    recomputed: Sequence[ServiceMonth],
    ledger: Sequence[Credit],
    closed_availability: Mapping[str, float],
) -> list[Adjustment]:
    """Compare a recomputed closed month with the ledger (and the closed report for services without credit).

    The last entry of a service is what it currently stands at; a change in
    its credit percent or availability is an adjustment, never a rewrite.
    """
    adjustments = []
    for figures in recomputed:
        entries = [e for e in ledger if e.service == figures.service]
        current: tuple[float, float | None]
        if entries:
            current = (entries[-1].credit_percent, entries[-1].availability_percent)
        else:
            current = (0.0, closed_availability.get(figures.service))
        if (figures.credit_percent, figures.availability_percent) == current:
            continue
        original = next((e for e in entries if e.kind == "credit"), None)
        adjustments.append(Adjustment(
            figures.service, figures.credit_percent, figures.availability_percent,
            figures.credit_amount - sum(e.amount for e in entries),
            original.tracking_code if original else f"close:{month}",
            f"late evidence: availability {current[1]} → {figures.availability_percent}; "
            f"credit {current[0]}% → {figures.credit_percent}%",
        ))
    return adjustments
