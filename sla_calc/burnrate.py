"""Multi-window burn-rate alerts on a month's error budget (the SRE workbook's recipe).

The error budget is the downtime the target allows in the month: ``(1 −
target) × denominator``.  A window's burn rate is the share of the budget it
consumed, e.g. "2 % of the budget in 1 hour".  An alert fires when every
window of a rule burned at least its share, so a short spike alone does not
page and a slow burn is still caught by the long window.  Pure: the caller
measures the downtime in each window (with a clock it passes in).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BurnWindow:
    hours: float
    budget_percent: float  # share of the month's error budget consumed within the window


@dataclass(frozen=True, slots=True)
class BurnRule:
    windows: tuple[BurnWindow, ...]
    name: str = "sla_at_risk"


DEFAULT_RULES = (
    BurnRule((BurnWindow(1, 2), BurnWindow(5 / 60, 2 * 5 / 60)), "fast burn"),
    BurnRule((BurnWindow(6, 5), BurnWindow(0.5, 5 * 0.5 / 6)), "slow burn"),
)


def error_budget_ms(target_percent: float, denominator_ms: int) -> float:
    return (100 - target_percent) / 100 * denominator_ms


def burned_percent(downtime_ms: float, budget_ms: float) -> float:
    if budget_ms <= 0:
        return float("inf") if downtime_ms > 0 else 0.0
    return 100 * downtime_ms / budget_ms


def firing(rules: Sequence[BurnRule], downtime_in_window_ms: Mapping[float, float], budget_ms: float) -> list[str]:
    """Names of the rules whose every window consumed at least its share of the budget.

    ``downtime_in_window_ms`` maps a window length in hours to the downtime in
    the window that ends now.
    """
    fired = []
    for rule in rules:
        if all(burned_percent(downtime_in_window_ms[w.hours], budget_ms) >= w.budget_percent for w in rule.windows):
            fired.append(rule.name)
    return fired
