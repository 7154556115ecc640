"""What the public status page shows, computed from the store and cached.

Per service: its state now, month-to-date availability against the target
(truncated, never rounded up), 90 daily bars (Tehran days) with each day's
downtime, incidents with their timeline, upcoming maintenance (and whether
it was announced in time), and past closed months.  Building it reads
materialized segments, so it is cheap, but the page is requested far more
often than the data changes: results are cached for ``ttl`` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from markupsafe import Markup, escape

from core.config import DidbanConfig, ServiceConfig
from core.model import Outage, ServiceMonth
from core.timefmt import TEHRAN, jalali
from didban.settlement import settle
from didban.web.i18n import label, numbers
from sla_calc.derive import quorum_segments
from sla_calc.intervals import clip, intersection, measure, union
from sla_calc.month import applies, notice_verdict, truncate_percent
from sla_calc.periods import JalaliMonth
from store.contract import Store

DAY_MS = 86_400_000
HISTORY_DAYS = 90


@dataclass(frozen=True, slots=True)
class DayBar:
    day: str  # Jalali date
    downtime_minutes: float
    covered: bool  # False: no data that day
    level: str  # "ok" | "minor" | "major" | "none"


@dataclass
class ServiceStatus:
    id: str
    name_fa: str
    name_en: str
    state: str  # up | down | unknown | no data
    since: str | None
    month_availability: str
    month_availability_exact: float
    target: float
    met: bool
    verdict: str  # met | missed | insufficient_evidence | no_agreement (none in force this month)
    coverage: float  # percent of the month so far covered by results
    days: list[DayBar] = field(default_factory=list)
    bars_html: dict[str, Markup] = field(default_factory=dict)  # the 90-day strip, rendered per language
    incidents: list[dict[str, Any]] = field(default_factory=list)
    maintenance: list[dict[str, Any]] = field(default_factory=list)
    months: list[dict[str, Any]] = field(default_factory=list)


def tehran_midnights(now_ms: int, days: int) -> list[int]:
    """Epoch ms of the last ``days`` Tehran midnights, oldest first (today's included)."""
    today = datetime.fromtimestamp(now_ms / 1000, TEHRAN).date()
    return [int(datetime.combine(today - timedelta(days=k), datetime.min.time(), TEHRAN).timestamp() * 1000)
            for k in range(days - 1, -1, -1)]


def _level(downtime_minutes: float, covered: bool) -> str:
    if not covered:
        return "none"
    if downtime_minutes == 0:
        return "ok"
    return "minor" if downtime_minutes < 30 else "major"


def bars_html(days: list[DayBar], lang: str) -> Markup:
    """The 90 day bars, built here rather than in a template loop: 50 services × 90 bars
    through Jinja took 200 ms a page.  Each bar is focusable and shows its day on focus or hover."""
    downtime, no_data, minutes = (label(k, lang) for k in ("downtime", "no_data", "minutes"))
    parts = []
    for day in days:
        text = f"{day.day} — {downtime} {day.downtime_minutes:g} {minutes}" if day.covered else f"{day.day} — {no_data}"
        text = numbers(text, lang)
        parts.append(f'<span class="bar bar-{day.level}" role="listitem" tabindex="0">'
                     f'<span class="tip">{escape(text)}</span></span>')
    return Markup("".join(parts))


class StatusBoard:
    """Agency boards, rebuilt in a worker thread and never on the request path once built.

    A request gets the last board at once; when it is older than ``ttl`` a
    single background rebuild starts (stale-while-revalidate).  Each build
    has a version number, so rendered pages can be cached per version.
    """

    def __init__(self, config: DidbanConfig, open_store: Callable[[], Store], ttl: float = 15.0,
                 prerender: Callable[[str, int, list[ServiceStatus]], None] | None = None) -> None:
        self.config = config
        self.open_store = open_store
        self.ttl = ttl
        # Called in the builder thread with each new board, so large pages are rendered there too.
        self.prerender = prerender
        self._cache: dict[str, tuple[float, int, list[ServiceStatus]]] = {}
        self._building: dict[str, asyncio.Future[list[ServiceStatus]]] = {}
        self._version = 0
        # One builder thread: builds queue up instead of several fighting the event loop for the GIL.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="didban-board")

    def invalidate(self) -> None:
        self._cache.clear()

    def agency(self, agency_id: str, now_ms: int | None = None) -> list[ServiceStatus]:
        """Synchronous and uncached: for exports and tests."""
        return self._build_agency(agency_id, now_ms)

    async def board(self, agency_id: str) -> tuple[int, list[ServiceStatus]]:
        """(version, statuses) of an agency, fresh enough, without blocking the event loop."""
        hit = self._cache.get(agency_id)
        if hit is not None:
            if time.monotonic() - hit[0] >= self.ttl and agency_id not in self._building:
                self._start_build(agency_id)
            return hit[1], hit[2]
        if agency_id not in self._building:
            self._start_build(agency_id)
        await self._building[agency_id]
        cached = self._cache[agency_id]
        return cached[1], cached[2]

    def _start_build(self, agency_id: str) -> None:
        loop = asyncio.get_running_loop()
        self._version += 1
        version = self._version
        future = loop.run_in_executor(self._executor, self._build_and_render, agency_id, version)
        self._building[agency_id] = future

        def done(result: asyncio.Future[list[ServiceStatus]]) -> None:
            self._building.pop(agency_id, None)
            if not result.cancelled() and result.exception() is None:
                self._cache[agency_id] = (time.monotonic(), version, result.result())

        future.add_done_callback(done)

    def _build_and_render(self, agency_id: str, version: int) -> list[ServiceStatus]:
        statuses = self._build_agency(agency_id, None)
        if self.prerender is not None:
            self.prerender(agency_id, version, statuses)
        return statuses

    def _build_agency(self, agency_id: str, now_ms: int | None) -> list[ServiceStatus]:
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        agency = next(a for a in self.config.agencies if a.id == agency_id)
        store = self.open_store()
        try:
            states = store.states()
            # The month so far comes from the settlement itself: the same figure as every report and export.
            settled = settle(self.config, store, JalaliMonth.containing(now_ms), now_ms,
                             [service.id for service in agency.services])
            return [self._service(store, service, states.get(service.id), settled.figures(service.id), now_ms)
                    for service in agency.services]
        finally:
            store.close()

    def _service(self, store: Store, service: ServiceConfig, state: Any, figures: ServiceMonth | None,
                 now_ms: int) -> ServiceStatus:
        agreement = self.config.agreement(service.agreement)
        interval_ms = round(service.interval_seconds * 1000)
        midnights = tehran_midnights(now_ms, HISTORY_DAYS)
        month = JalaliMonth.containing(now_ms)
        start = min(midnights[0], month.start_ms())
        locations = list(store.locations_of(service.id))
        per_location = [store.period_segments(service.id, loc, start, now_ms, interval_ms, service.failure_threshold)
                        for loc in locations]
        combined = quorum_segments([s for s in per_location if s]) if any(per_location) else []
        down = union(clip(((s, e) for s, e, d in combined if d), start, now_ms))
        covered = union(clip(((s, e) for s, e, _ in combined), start, now_ms))
        days = []
        for index, midnight in enumerate(midnights):
            end = midnights[index + 1] if index + 1 < len(midnights) else now_ms
            day_down = measure(intersection(down, [(midnight, end)])) / 60_000
            has_data = measure(intersection(covered, [(midnight, end)])) > 0
            days.append(DayBar(jalali(midnight, with_time=False), round(day_down, 1), has_data,
                               _level(day_down, has_data)))
        maintenance_windows = store.maintenance(now_ms, now_ms + 60 * DAY_MS)
        incidents = [self._incident(o, now_ms, locations, per_location)
                     for o in reversed(store.outages(service.id, midnights[0], now_ms))]
        upcoming = []
        for w in maintenance_windows:
            if w.cancelled or not applies(w.services, service.id):
                continue
            verdict = notice_verdict(w.start_ms, w.announced_at_ms, agreement.notice_hours)
            upcoming.append({"id": w.id, "start": jalali(w.start_ms), "end": jalali(w.end_ms),
                             "notice_hours": round(verdict.given_hours, 1), "in_time": verdict.meets})
        months = []
        for offset in range(1, 4):
            past = JalaliMonth.containing(month.start_ms() - 1)
            for _ in range(offset - 1):
                past = past.previous()
            closed = store.month_close(str(past))
            if closed is None:
                continue
            closed_figures = next((s for s in closed[1]["services"] if s["service"] == service.id), None)
            if closed_figures is not None:
                sufficient = closed_figures.get("evidence_sufficient", True)
                months.append({"month": str(past),
                               "availability": truncate_percent(closed_figures["availability_percent"]),
                               "verdict": ("met" if closed_figures["met"] else "missed") if sufficient
                               else "insufficient_evidence",
                               "credit_percent": closed_figures["credit_percent"]})
        return ServiceStatus(
            bars_html={lang: bars_html(days, lang) for lang in ("fa", "en")},
            id=service.id, name_fa=service.name.fa, name_en=service.name.en,
            state=state.status.value if state and state.status else "no data",
            since=jalali(state.since_ms) if state and state.since_ms else None,
            month_availability=truncate_percent(figures.availability_percent) if figures else "—",
            month_availability_exact=figures.availability_percent if figures else 0.0,
            target=agreement.target_percent, met=figures is not None and figures.met,
            verdict=figures.verdict if figures else "no_agreement",
            coverage=round(figures.coverage_percent, 2) if figures else 0.0,
            days=days, incidents=incidents, maintenance=upcoming, months=months,
        )

    @staticmethod
    def _incident(outage: Outage, now_ms: int, locations: list[str], per_location: list[list[Any]]
                  ) -> dict[str, Any]:
        end = outage.end_ms
        until = end or now_ms
        # Where it was seen from: the locations whose own results were down during it.
        seen = [loc for loc, segments in zip(locations, per_location, strict=True)
                if any(down and s < until and e > outage.start_ms for s, e, down in segments)]
        # An ongoing outage shows how long it has lasted so far, in seconds until it reaches a minute.
        return {"code": outage.tracking_code, "start": jalali(outage.start_ms),
                "end": jalali(end) if end else None, "open": end is None,
                "elapsed_ms": until - outage.start_ms, "error": outage.error, "locations": seen}
