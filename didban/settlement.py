"""The SLA use cases: the month so far, the closed month, its evidence, closing, the notice rule.

This is the one home of every figure Didban shows: the CLI, the API, the
status page, burn-rate notices, the InfluxDB feed and the exports all call
these functions, never a copy of them.  It loads evidence from the store and
hands it to the pure maths in ``sla_calc``.

- ``settle`` — a month's figures (so far, for a month still running) from the
  store's materialized segments.
- ``snapshot`` — the month's evidence pack and the figures computed *from
  that pack*: for a closed month the pack archived at close (so its exports
  carry one digest for years, after raw results are gone), otherwise one
  fresh snapshot that every format of an export is made from.
- ``close_month`` — closes a month from a snapshot, archives its pack, and
  refuses a month without sufficient evidence unless told to accept it.
  Closing again recomputes; changes become ledger adjustments, never rewrites.
- ``notice`` and ``window_downtime`` — the notice period of the agreement in
  force, and downtime with qualifying exclusions, for announcements and
  burn-rate notices.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from core.config import AgreementConfig, DidbanConfig, ServiceConfig
from core.model import (
    AgreementTerms,
    Credit,
    CreditTier,
    MaintenanceWindow,
    MonthReport,
    ProbeResult,
    ServiceMonth,
    ServiceTerms,
    iso_utc,
)
from core.timefmt import jalali
from core.tracking import new_code
from didban.evidence import (
    PackContents,
    archive_bytes,
    compute_month,
    evidence_files,
    report_json,
    seal,
    tail_end,
    unarchive,
)
from didban.pack_reader import compute_files
from sla_calc.closing import adjustments_needed
from sla_calc.derive import Segment
from sla_calc.month import NoticeVerdict, downtime_in, exclusions_for, notice_verdict
from sla_calc.periods import JalaliMonth
from store.contract import Store

YEAR_MS = 365 * 86_400_000


def in_force(agreement: AgreementConfig, month: JalaliMonth) -> bool:
    """An agreement applies to a month when its validity includes the month's first day."""
    first_day = f"{month}-01"
    return agreement.valid_from <= first_day <= agreement.valid_until


@dataclass
class MonthTerms:
    terms: AgreementTerms
    not_in_force: list[str] = field(default_factory=list)  # services with no agreement in force
    agreements: dict[str, AgreementConfig] = field(default_factory=dict)  # service → its agreement


def month_terms(config: DidbanConfig, month: JalaliMonth, services: Iterable[str] | None = None) -> MonthTerms:
    """The terms each service (or each of ``services``) is held to in ``month``; pack-wide values from the first."""
    wanted = set(services) if services is not None else None
    terms: list[ServiceTerms] = []
    outside: list[str] = []
    by_service: dict[str, AgreementConfig] = {}
    first: AgreementConfig | None = None
    for _, service in config.services():
        if wanted is not None and service.id not in wanted:
            continue
        agreement = config.agreement(service.agreement)
        if not in_force(agreement, month):
            outside.append(service.id)
            continue
        first = first or agreement
        by_service[service.id] = agreement
        terms.append(ServiceTerms(
            id=service.id,
            name=service.name.fa,
            interval_ms=round(service.interval_seconds * 1000),
            failure_threshold=service.failure_threshold,
            target_percent=agreement.target_percent,
            monthly_base=agreement.monthly_base,
            credit_tiers=tuple(CreditTier(t.below, t.credit_percent) for t in agreement.credit_tiers),
            month_basis=agreement.month_basis if agreement.month_basis != first.month_basis else None,
            notice_hours=agreement.notice_hours if agreement.notice_hours != first.notice_hours else None,
            min_coverage_percent=agreement.min_coverage_percent,
        ))
    pack_terms = AgreementTerms(
        services=tuple(terms),
        month_basis=first.month_basis if first else "nominal_30d",
        notice_hours=first.notice_hours if first else 72.0,
        id=first.id if first else "",
        title=first.title if first else "",
        valid_from=first.valid_from if first else "",
        valid_until=first.valid_until if first else "",
    )
    return MonthTerms(pack_terms, outside, by_service)


@dataclass
class SettledMonth:
    month: JalaliMonth
    report: MonthReport
    terms: MonthTerms
    as_of_ms: int | None = None  # a month still running: judged up to here

    def json(self) -> dict[str, Any]:
        """The §5 figures, plus the services that had no agreement in force."""
        data = report_json(self.report)
        data["no_agreement_in_force"] = self.terms.not_in_force
        return data

    def figures(self, service: str) -> ServiceMonth | None:
        return next((s for s in self.report.services if s.service == service), None)


def _running(month: JalaliMonth, now_ms: int | None) -> int | None:
    return now_ms if now_ms is not None and now_ms < month.end_ms() else None


def settle(config: DidbanConfig, store: Store, month: JalaliMonth, now_ms: int | None = None,
           services: Iterable[str] | None = None) -> SettledMonth:
    """The month's figures from the store (``now_ms`` limits a month still running)."""
    terms = month_terms(config, month, services)
    start, end = month.bounds()

    # Every (service, location) of the month read together, then handed out per service.
    pairs = [(service.id, location, service.interval_ms, service.failure_threshold)
             for service in terms.terms.services for location in store.locations_of(service.id)]
    read = dict(zip([(service, location) for service, location, _, _ in pairs],
                    store.period_segments_many(pairs, start, end), strict=True))

    def segments(service: ServiceTerms) -> list[list[Segment]]:
        return [read[(service.id, location)] for location in store.locations_of(service.id)]

    high = tail_end(month, terms.terms)
    running = _running(month, now_ms)
    report = compute_month(month, terms.terms, segments, store.maintenance(start, high), store.exclusions(start, high),
                           now_ms=running)
    return SettledMonth(month, report, terms, running)


# Services settled at a time where only each service's figures are wanted (the month-to-date gauges, the check
# that a month has enough evidence to close): 50,000 services read at once took 60 MB for a few seconds, and a
# process keeps the memory it once held.
SETTLE_PART = 5_000  # 1,000 at a time cost a quarter more time than all at once; 5,000 costs nothing more


def settle_in_parts(config: DidbanConfig, store: Store, month: JalaliMonth, now_ms: int | None = None,
                    part: int = SETTLE_PART) -> Iterator[ServiceMonth]:
    """Each service's figures, as ``settle`` gives them, ``part`` services at a time."""
    ids = [service.id for _, service in config.services()]
    for first in range(0, len(ids), part):
        yield from settle(config, store, month, now_ms, ids[first:first + part]).report.services


def pack_results(store: Store, month: JalaliMonth, terms: AgreementTerms) -> Iterator[ProbeResult]:
    """The results an evidence pack needs: per service, from the last non-down result at or before
    the month's start (derivation restarts exactly there) to the month's tail."""
    start = month.start_ms()
    high = tail_end(month, terms)
    for service in terms.services:
        leads = [store.lead_start(service.id, location, start) for location in store.locations_of(service.id)]
        low = min((lead for lead in leads if lead is not None), default=None)
        yield from store.results(service.id, low if low is not None else -(2**62), high)


# -- evidence snapshots and archived packs --------------------------------------------------------


@dataclass
class Snapshot:
    """One month's evidence pack (sealed: report and manifest included) and the figures computed from it."""

    settled: SettledMonth
    files: dict[str, bytes]
    digest: str
    archived: bool  # True: the pack archived when the month was closed

    @property
    def folder_name(self) -> str:
        return f"didban-evidence-{self.settled.month}"


def fresh_snapshot(config: DidbanConfig, store: Store, month: JalaliMonth, now_ms: int) -> Snapshot:
    """Read the month's evidence from the store once, and compute its figures from exactly that evidence."""
    terms = month_terms(config, month)
    start, high = month.start_ms(), tail_end(month, terms.terms)
    results = (
        {"service": r.service, "location": r.location, "ts": iso_utc(r.ts_ms), "status": r.status.value,
         "latency_ms": r.latency_ms, "error": r.error}
        for r in pack_results(store, month, terms.terms)
    )
    files = evidence_files(PackContents(terms.terms, results, store.maintenance(start, high),
                                        store.exclusions(start, high)))
    running = _running(month, now_ms)
    report = compute_files(files, month, now_ms=running)
    sealed, digest = seal(files, report_json(report))
    return Snapshot(SettledMonth(month, report, terms, running), sealed, digest, archived=False)


def snapshot(config: DidbanConfig, store: Store, month: JalaliMonth, now_ms: int) -> Snapshot:
    """A closed month's archived pack when there is one; otherwise a fresh snapshot."""
    digest = store.month_pack(str(month))
    data = store.archived_pack(digest) if digest else None
    if data is None:
        return fresh_snapshot(config, store, month, now_ms)
    files = unarchive(data)
    report = compute_files(files, month)
    return Snapshot(SettledMonth(month, report, month_terms(config, month)), files, digest or "", archived=True)


def archive(store: Store, snap: Snapshot, now_ms: int) -> None:
    store.archive_pack(snap.digest, str(snap.settled.month), now_ms, archive_bytes(snap.folder_name, snap.files))


def purge_old_packs(config: DidbanConfig, store: Store, now_ms: int) -> int:
    """Evidence retention (``sla.evidence_retention_years``), independent of raw-result retention."""
    return store.purge_packs(now_ms - int(config.sla.evidence_retention_years * YEAR_MS))


# -- closing ------------------------------------------------------------------------------------------


class NotYetEnded(ValueError):
    pass


class InsufficientEvidence(ValueError):
    pass


@dataclass(frozen=True)
class CloseOutcome:
    month: str
    closed_now: bool  # False: it was already closed (a no-op unless evidence changed)
    credits: list[Credit]
    adjustments: list[Credit]
    pack_sha256: str = ""
    accepted_insufficient: tuple[str, ...] = ()


def close_month(config: DidbanConfig, store: Store, month: JalaliMonth, now_ms: int,
                accept_insufficient_evidence: bool = False) -> CloseOutcome:
    """Close a month: report, at most one credit per service and the archived pack; later, adjustments only."""
    end = month.end_ms()
    if now_ms < end:
        raise NotYetEnded(f"{month} has not ended yet in Tehran; it can be closed from {jalali(end)} Tehran time")
    if store.month_close(str(month)) is not None:
        return _adjust(config, store, month, now_ms)
    if not accept_insufficient_evidence:
        # The figures from the store first (two thirds of the pack's cost): a month short of evidence, the
        # case a running service meets most, is refused without building the pack. Same maths, same figure.
        _refuse_if_short(month, settle_in_parts(config, store, month, now_ms))
    snap = fresh_snapshot(config, store, month, now_ms)
    report = snap.settled.report
    short = [s for s in report.services if not s.evidence_sufficient]
    if not accept_insufficient_evidence:
        _refuse_if_short(month, report.services)
    data = snap.settled.json()
    data["pack_sha256"] = snap.digest
    data["accepted_insufficient_evidence"] = [
        {"service": s.service, "coverage_percent": s.coverage_percent} for s in short]
    credits = [
        Credit(new_code("CR"), str(month), figures.service, figures.credit_percent, figures.credit_amount,
               figures.availability_percent, now_ms, pack_sha256=snap.digest)
        for figures in report.services
        if figures.credit_percent > 0 and figures.evidence_sufficient
    ]
    archive(store, snap, now_ms)
    if store.record_close(str(month), now_ms, data, credits, snap.digest):
        return CloseOutcome(str(month), True, credits, [], snap.digest, tuple(s.service for s in short))
    return _adjust(config, store, month, now_ms)  # closed meanwhile by another process


SHORT_LISTED = 20  # services a refusal names; the rest are counted (a log line, not a megabyte)


def _refuse_if_short(month: JalaliMonth, services: Iterable[ServiceMonth]) -> None:
    named: list[str] = []
    more = 0
    for figures in services:
        if not figures.evidence_sufficient:
            if len(named) < SHORT_LISTED:
                named.append(f"{figures.service} ({figures.coverage_percent:.2f} % covered)")
            else:
                more += 1
    if named:
        listed = ", ".join(named) + (f" and {more:,} more services" if more else "")
        raise InsufficientEvidence(
            f"{month} has insufficient evidence for {listed}: below the agreement's minimum coverage. "
            "Closing it anyway is permanent; pass --accept-insufficient-evidence to record that you accept it")


def _adjust(config: DidbanConfig, store: Store, month: JalaliMonth, now_ms: int) -> CloseOutcome:
    """Recompute a closed month from the store's evidence now; record what changed as adjustments."""
    closed = store.month_close(str(month))
    assert closed is not None
    recorded = {s["service"]: s["availability_percent"] for s in closed[1]["services"]}
    snap = fresh_snapshot(config, store, month, now_ms)
    changes = adjustments_needed(str(month), snap.settled.report.services, store.ledger(str(month)), recorded)
    if changes:
        archive(store, snap, now_ms)
    entries = [Credit(new_code("CR"), str(month), c.service, c.credit_percent, c.amount, c.availability_percent,
                      now_ms, kind="adjustment", adjusts=c.adjusts, note=c.note, pack_sha256=snap.digest)
               for c in changes]
    for entry in entries:
        store.add_ledger_entry(entry)
    return CloseOutcome(str(month), False, [], entries, store.month_pack(str(month)) or "")


# -- the notice rule and windows of downtime ------------------------------------------------------


def required_notice_hours(config: DidbanConfig, services: Iterable[str]) -> float:
    """The notice period a window must meet: the longest among the agreements of its services."""
    wanted = set(services)
    hours = [config.agreement(s.agreement).notice_hours for _, s in config.services()
             if "*" in wanted or s.id in wanted]
    return max(hours, default=72.0)


def notice(config: DidbanConfig, services: Iterable[str], start_ms: int, announced_at_ms: int) -> NoticeVerdict:
    """How a maintenance window stands against the notice period (the one use of the rule for people)."""
    return notice_verdict(start_ms, announced_at_ms, required_notice_hours(config, services))


def window_downtime(config: DidbanConfig, store: Store, service_id: str, start_ms: int, end_ms: int) -> int:
    """A service's downtime (ms) in [start, end), locations combined by quorum, qualifying exclusions removed."""
    service = config.service(service_id)
    interval_ms = round(service.interval_seconds * 1000)
    per_location = [store.period_segments(service.id, location, start_ms, end_ms, interval_ms,
                                          service.failure_threshold)
                    for location in store.locations_of(service.id)]
    excluded = exclusions_for(service.id, store.maintenance(start_ms, end_ms), store.exclusions(start_ms, end_ms),
                              config.agreement(service.agreement).notice_hours, (start_ms, end_ms))
    _, down, excluded_ms = downtime_in(per_location, (start_ms, end_ms), excluded.intervals)
    return sum(e - s for s, e in down) - excluded_ms


def observers(store: Store, service: ServiceConfig, start_ms: int, end_ms: int) -> list[str]:
    """The locations whose own results were down in [start, end): where an outage was seen from."""
    interval_ms = round(service.interval_seconds * 1000)
    return [location for location in store.locations_of(service.id)
            if any(down and s < end_ms and e > start_ms for s, e, down in store.period_segments(
                service.id, location, start_ms, end_ms, interval_ms, service.failure_threshold))]


# -- announcing maintenance ----------------------------------------------------------------------


class BadWindow(ValueError):
    pass


@dataclass(frozen=True)
class Announced:
    window: MaintenanceWindow
    notice: NoticeVerdict


def announce_maintenance(config: DidbanConfig, store: Store, services: tuple[str, ...], start_ms: int,
                         end_ms: int, title: str, now_ms: int, notifier: Any = None) -> Announced:
    """Announce a window now (the server's clock: never backdated) and say how it meets the notice period."""
    if end_ms <= start_ms:
        raise BadWindow("end must be after start")
    if end_ms <= now_ms:
        raise BadWindow(f"the window already ended ({jalali(end_ms)} Tehran time); announce future work only")
    window = MaintenanceWindow(new_code("MW"), services, start_ms, end_ms, now_ms)
    store.add_maintenance(window, title)
    verdict = notice(config, services, start_ms, now_ms)
    if notifier is not None:
        notifier.maintenance_announced(window, verdict.required_hours, now_ms)
    return Announced(window, verdict)


def describe_notice(verdict: NoticeVerdict) -> str:
    if verdict.meets:
        return f"meets the {verdict.required_hours:g}-hour notice"
    return (f"LATE: {verdict.given_hours:.1f} h of notice, {verdict.hours_short:.1f} h short of the "
            f"{verdict.required_hours:g}-hour notice; its minutes will count as downtime")
