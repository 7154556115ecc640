"""Settling months against the store: month figures, closing, credits, adjustments.

This is the glue between the configuration, the SQLite system of record and
the pure maths in ``sla_calc``.  The figures of a month are always computed by
``didban.evidence.compute_month`` from the same window of results an
evidence pack holds, so a report and the replay of its pack agree.

A closed month is immutable (the store enforces it with triggers).  Closing
again recomputes the month; when late evidence changed a service's credit,
an *adjustment* entry referencing the original is added to the ledger, never
a rewrite.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from collector.sqlite_store import SqliteStore
from didban.config import AgreementConfig, DidbanConfig
from didban.evidence import compute_month, report_json, tail_end
from didban.model import AgreementTerms, Credit, CreditTier, MonthReport, ProbeResult, ServiceMonth, ServiceTerms
from didban.tracking import new_code
from sla_calc.derive import Segment
from sla_calc.periods import JalaliMonth


def in_force(agreement: AgreementConfig, month: JalaliMonth) -> bool:
    """An agreement applies to a month when its validity includes the month's first day."""
    first_day = f"{month}-01"
    return agreement.valid_from <= first_day <= agreement.valid_until


@dataclass
class MonthTerms:
    terms: AgreementTerms
    not_in_force: list[str] = field(default_factory=list)  # services with no agreement in force
    agreements: dict[str, AgreementConfig] = field(default_factory=dict)  # service → its agreement


def month_terms(config: DidbanConfig, month: JalaliMonth) -> MonthTerms:
    """The terms each service is held to in ``month``; pack-wide values from the first agreement."""
    services: list[ServiceTerms] = []
    outside: list[str] = []
    by_service: dict[str, AgreementConfig] = {}
    first: AgreementConfig | None = None
    for _, service in config.services():
        agreement = config.agreement(service.agreement)
        if not in_force(agreement, month):
            outside.append(service.id)
            continue
        first = first or agreement
        by_service[service.id] = agreement
        services.append(ServiceTerms(
            id=service.id,
            name=service.name.fa,
            interval_ms=round(service.interval_seconds * 1000),
            failure_threshold=service.failure_threshold,
            target_percent=agreement.target_percent,
            monthly_base=agreement.monthly_base,
            credit_tiers=tuple(CreditTier(t.below, t.credit_percent) for t in agreement.credit_tiers),
            month_basis=agreement.month_basis if agreement.month_basis != first.month_basis else None,
            notice_hours=agreement.notice_hours if agreement.notice_hours != first.notice_hours else None,
        ))
    terms = AgreementTerms(
        services=tuple(services),
        month_basis=first.month_basis if first else "nominal_30d",
        notice_hours=first.notice_hours if first else 72.0,
        id=first.id if first else "",
        title=first.title if first else "",
        valid_from=first.valid_from if first else "",
        valid_until=first.valid_until if first else "",
    )
    return MonthTerms(terms, outside, by_service)


@dataclass
class SettledMonth:
    month: JalaliMonth
    report: MonthReport
    terms: MonthTerms

    def json(self) -> dict[str, Any]:
        """The §5 figures, plus the services that had no agreement in force."""
        data = report_json(self.report)
        data["no_agreement_in_force"] = self.terms.not_in_force
        return data

    def figures(self, service: str) -> ServiceMonth | None:
        return next((s for s in self.report.services if s.service == service), None)


def settle(config: DidbanConfig, store: SqliteStore, month: JalaliMonth, now_ms: int | None = None) -> SettledMonth:
    """The month's figures from the store (``now_ms`` limits a month still running)."""
    terms = month_terms(config, month)
    start, end = month.bounds()

    def segments(service: ServiceTerms) -> list[list[Segment]]:
        return [store.period_segments(service.id, location, start, end, service.interval_ms,
                                      service.failure_threshold)
                for location in store.locations_of(service.id)]

    high = tail_end(month, terms.terms)
    report = compute_month(month, terms.terms, segments, store.maintenance(start, high), store.exclusions(start, high),
                           now_ms=now_ms if now_ms is not None and now_ms < end else None)
    return SettledMonth(month, report, terms)


def pack_results(store: SqliteStore, month: JalaliMonth, terms: AgreementTerms) -> Iterator[ProbeResult]:
    """The results an evidence pack needs: per service, from the last non-down result at or before
    the month's start (derivation restarts exactly there) to the month's tail."""
    start = month.start_ms()
    high = tail_end(month, terms)
    for service in terms.services:
        leads = [store.lead_start(service.id, location, start) for location in store.locations_of(service.id)]
        low = min((lead for lead in leads if lead is not None), default=None)
        yield from store.results(service.id, low if low is not None else -(2**62), high)


@dataclass(frozen=True)
class CloseOutcome:
    month: str
    closed_now: bool  # False: it was already closed (a no-op unless evidence changed)
    credits: list[Credit]
    adjustments: list[Credit]


def close_month(config: DidbanConfig, store: SqliteStore, month: JalaliMonth, now_ms: int) -> CloseOutcome:
    """Close a month: report and at most one credit per service; later, adjustments only."""
    end = month.end_ms()
    if now_ms < end:
        raise ValueError(f"{month} has not ended yet in Tehran; it can be closed from {end} (epoch ms)")
    settled = settle(config, store, month)
    report = settled.json()
    credits = [
        Credit(new_code("CR"), str(month), figures.service, figures.credit_percent, figures.credit_amount,
               figures.availability_percent, now_ms)
        for figures in settled.report.services
        if figures.credit_percent > 0
    ]
    if store.record_close(str(month), now_ms, report, credits):
        return CloseOutcome(str(month), True, credits, [])
    return CloseOutcome(str(month), False, [], _adjust(store, settled, now_ms))


def _adjust(store: SqliteStore, settled: SettledMonth, now_ms: int) -> list[Credit]:
    """Compare a recomputed closed month with what the ledger holds; record what changed.

    An adjustment carries the service's new availability and credit percent,
    and as amount the difference to what the ledger already granted.
    """
    month = str(settled.month)
    closed = store.month_close(month)
    assert closed is not None
    recorded = {s["service"]: s["availability_percent"] for s in closed[1]["services"]}
    ledger = store.ledger(month)
    adjustments = []
    for figures in settled.report.services:
        entries = [e for e in ledger if e.service == figures.service]
        current: tuple[float, float | None]
        if entries:
            current = (entries[-1].credit_percent, entries[-1].availability_percent)
        else:
            current = (0.0, recorded.get(figures.service))
        if (figures.credit_percent, figures.availability_percent) == current:
            continue
        original = next((e for e in entries if e.kind == "credit"), None)
        entry = Credit(
            new_code("CR"), month, figures.service, figures.credit_percent,
            figures.credit_amount - sum(e.amount for e in entries), figures.availability_percent, now_ms,
            kind="adjustment",
            adjusts=original.tracking_code if original else f"close:{month}",
            note=(f"late evidence: availability {current[1]} → {figures.availability_percent}; "
                  f"credit {current[0]}% → {figures.credit_percent}%"),
        )
        store.add_ledger_entry(entry)
        adjustments.append(entry)
    return adjustments


def due_months(now_ms: int, grace_ms: int, oldest: JalaliMonth | None = None) -> list[JalaliMonth]:
    """Months that have ended (plus the grace period) by ``now_ms``, most recent first, at most two."""
    current = JalaliMonth.containing(now_ms)
    due = []
    candidate = current.previous()
    for _ in range(2):
        if candidate.end_ms() + grace_ms <= now_ms and (oldest is None or candidate >= oldest):
            due.append(candidate)
        candidate = candidate.previous()
    return due


def downtime_between(store: SqliteStore, service: Any, start_ms: int, end_ms: int) -> int:
    """A service's downtime (ms) in [start, end), all locations combined by quorum, nothing excluded."""
    from sla_calc.derive import quorum_segments
    from sla_calc.intervals import clip, measure, union

    interval_ms = round(service.interval_seconds * 1000)
    per_location = [store.period_segments(service.id, location, start_ms, end_ms, interval_ms,
                                          service.failure_threshold)
                    for location in store.locations_of(service.id)]
    combined = quorum_segments([s for s in per_location if s]) if any(per_location) else []
    return measure(union(clip(((s, e) for s, e, d in combined if d), start_ms, end_ms)))
