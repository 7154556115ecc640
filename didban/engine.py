"""The engine: probes scheduled 24/7 into the collector.

The checks are dispatched from a heap of due times by ``max_concurrency``
workers (``didban.dispatch``); each service gets a fixed random phase within
its interval so 10,000 checks never fire in the same millisecond. APScheduler
3's ``AsyncIOScheduler`` runs the calendar jobs (month close, notices,
materializer, retention, canaries, heartbeat watches). Schedule lag (due →
started) is measured for every check.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
from aiohttp.abc import AbstractResolver
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from collector.collector import Collector, ServicePolicy
from collector.journal import Journal
from core.config import DidbanConfig, ServiceConfig
from core.model import ErrorClass, OutageEvent, ProbeResult, Status
from core.timefmt import jalali
from didban.dispatch import Dispatcher, ScheduledCheck
from didban.locations import LocationState, LocationWatch
from didban.supervisor import Supervisor, stacks_if_slower_than
from probes.base import ProbeContext
from probes.canary import CanaryGuard
from probes.loopwatch import LoopWatch
from probes.resolver import make_resolver
from probes.runner import CompiledCheck, compile_check, compile_service, run_check
from store.contract import FeedSource, Store
from store.lease import Lease

if TYPE_CHECKING:
    from alerting.service import Alerts
    from didban.metrics import Metrics
    from sla_calc.periods import JalaliMonth

log = logging.getLogger("didban.engine")
_RESOLUTION_ERRORS = (ErrorClass.DNS.value, ErrorClass.TIMEOUT.value)
# APScheduler logs two INFO lines per job run: at 333 checks/s that is noise and CPU.
logging.getLogger("apscheduler").setLevel(logging.WARNING)


class ResultSink(Protocol):
    """Where the engine's results go: the collector (into the store) or an agent's shipper (to a center)."""

    unavailable_since: float | None  # monotonic: since when results cannot get through

    @property
    def pending(self) -> int: ...

    def submit(self, result: ProbeResult) -> None: ...

    async def start(self) -> None: ...

    async def stop(self, grace_s: float = ...) -> None: ...


class LagStats:
    """Recent schedule lags (seconds), for percentiles on the terminal and in benchmarks."""

    def __init__(self, keep: int = 100_000) -> None:
        self.recent: deque[float] = deque(maxlen=keep)
        self.count = 0
        self.worst = 0.0

    def add(self, lag: float) -> None:
        self.recent.append(lag)
        self.count += 1
        self.worst = max(self.worst, lag)

    def percentile(self, p: float) -> float:
        if not self.recent:
            return 0.0
        ordered = sorted(self.recent)
        return ordered[min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)]


INSUFFICIENT_RETRY_MS = 3_600_000


# Python's default (700, 10, 10) walks the young generation every 700 allocations: at saturation that is
# the objects of 64 checks in flight, again and again, about 12 % of the core (measured with gc.callbacks);
# every 20,000 it is about 2 %, every 100,000 about 1 % less again (an A/B of two `didban run` on one core,
# 3 December).  Cyclic garbage waits at most 100,000 allocations longer: a few megabytes at most.
STEADY_GC_THRESHOLDS = (100_000, 20, 10)


def settle_heap() -> None:
    """Once a process has started: what start-up built (the config, the compiled checks, the schedule)
    lives as long as the process, so the cyclic garbage collector stops walking it on every full pass —
    at 50,000 services that is millions of objects, a pause of about a second each time. From then on the
    collector runs less often (``STEADY_GC_THRESHOLDS``)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*STEADY_GC_THRESHOLDS)
    _fix_mmap_threshold()


_GLIBC_MMAP_THRESHOLD = -3  # mallopt's M_MMAP_THRESHOLD (malloc.h)


def _fix_mmap_threshold() -> None:
    """glibc raises its mmap threshold whenever a large block is freed (up to 32 MiB); blocks below it
    then come from the heap and stay there.  At 50,000 services one /metrics scrape (an 8 MB body) kept
    about 25 MB for good.  Setting the threshold stops the raising; at 1 MiB, the 256 KiB buffer of every
    socket read (asyncio's, when uvloop is absent) still comes from the heap, not from a system call."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc: its allocator has no such habit to stop
    libc.mallopt(_GLIBC_MMAP_THRESHOLD, 1 << 20)


def month_to_date(config: DidbanConfig, store: Store, month: JalaliMonth, now_ms: int) -> dict[str, float]:
    """Each service's availability so far this month, as the settlement truncates it for display."""
    from didban.settlement import settle_in_parts
    from sla_calc.month import truncate_percent

    return {figures.service: float(truncate_percent(figures.availability_percent))
            for figures in settle_in_parts(config, store, month, now_ms)}


def make_session(limit: int, keepalive: bool, resolver: AbstractResolver | None = None) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, force_close=not keepalive,
                                     ttl_dns_cache=300, resolver=resolver)
    return aiohttp.ClientSession(
        connector=connector,
        # The runner bounds every check with its own total timeout; aiohttp's
        # default 5-minute timer per request would only cost CPU.
        timeout=aiohttp.ClientTimeout(total=None),
        cookie_jar=aiohttp.DummyCookieJar(),  # a monitor must not carry state between checks
        headers={"User-Agent": "Didban/0.1 (+availability monitor)"},
    )


StoreWork = Callable[..., Awaitable[Any]]
"""Runs ``job(config, store, *args)`` — a settlement, a month close, the store's upkeep — on a store
connection of its own, and returns what it returns."""


class Engine:
    def __init__(
        self,
        config: DidbanConfig,
        store: Store | None,
        location: str,
        *,
        sink: ResultSink | None = None,
        follow: FeedSource | None = None,
        lease: Lease | None = None,
        probing: bool = True,
        clock: Callable[[], float] = time.time,
        keepalive: bool = False,
        seed: int | None = None,
        alerts: Alerts | None = None,
        metrics: Metrics | None = None,
        journal: Journal | None = None,
        store_work: StoreWork | None = None,
    ) -> None:
        self.config = config
        self.location = location
        self.clock = clock
        self.keepalive = keepalive
        self.supervisor = Supervisor(metrics)
        self.probing = probing  # False: a center that probes nothing itself (it watches heartbeats only)
        # Several centers on one store: the jobs that must run once run on the lease holder only.
        self.lease = lease
        # An agent hands its results to a shipper; everyone else to a collector that stores them and
        # derives outages (online, or, on a center, from the store's stream of results: ``follow``).
        self.collector: Collector | None = None
        if sink is None:
            assert store is not None
            self.collector = Collector(
                store,
                {
                    s.id: ServicePolicy(int(s.interval_seconds * 1000), s.failure_threshold)
                    for _, s in config.services()
                },
                queue_size=config.store.queue_size,
                journal=journal,
                spawn=self.supervisor.spawn,
                follow=follow,
                may_derive=self.leading,
            )
        self.sink: ResultSink = sink if sink is not None else self.collector  # type: ignore[assignment]
        self.lag = LagStats()
        self.loop_watch = LoopWatch(config.scheduler.stall_bound_seconds)
        self.latest: dict[str, ProbeResult] = {}
        self.checks_run = 0
        self._random = random.Random(seed)
        self._scheduler: AsyncIOScheduler | None = None  # the calendar jobs
        self._dispatcher: Dispatcher | None = None  # the checks
        self._session: aiohttp.ClientSession | None = None
        self.guard: CanaryGuard | None = None
        self._stopping = False
        self.alerts = alerts
        self.metrics = metrics
        self._recent_outages: dict[str, int] = {}  # service → last outage event (ms), for burn-rate checks
        self._last_beat: dict[str, float] = {}  # heartbeat service → when it last reported in (epoch s)
        self._insufficient_until: dict[str, int] = {}  # month short of evidence → when to try closing it again
        self._location_watch = LocationWatch()
        # Called with a month's id once the engine closed it (the InfluxDB feed writes its closed figures).
        self.month_closed_handlers: list[Callable[[str], Awaitable[None]]] = []
        self.on_result: Callable[[ProbeResult], None] | None = None  # e.g. the demo's event log
        # A month's evidence is read on a thread and store connection of its own when the service gives one:
        # the store's thread, which takes the results (and a center's agents' batches), never waits on it.
        self.store_work = store_work
        if alerts is not None and self.collector is not None:
            self.collector.subscribe(self._on_outage_event)

    def leading(self) -> bool:
        """Whether this process runs the jobs that must run once (always, unless centers share a lease)."""
        return self.lease is None or self.lease.held

    def _once(self, job: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[object]]:
        async def run() -> object:
            return await job() if self.leading() else None

        return run

    async def renew_lease(self) -> bool:
        """Take the lease when it is free, keep it while it is ours; say so when that changes."""
        assert self.lease is not None
        had = self.lease.held
        held = await asyncio.to_thread(self.lease.renew)
        if held != had:
            log.warning("%s the lease: %s", "took" if held else "lost",
                        "this center now derives outages, closes months and sends escalations" if held
                        else "another center (or none, while the store is unreachable) runs the jobs that run once")
            if held and self._scheduler is not None:  # what the last holder may have left: looked at soon
                soon = datetime.now(UTC) + timedelta(seconds=2)
                for job in ("settlement", "alerts"):
                    if self._scheduler.get_job(job) is not None:
                        self._scheduler.modify_job(job, next_run_time=soon)
        if self.metrics is not None:
            self.metrics.lease_held.set(int(held))
        return held

    @property
    def store_jobs(self) -> Collector:
        """The collector, for the jobs that read and write the store (never on an agent)."""
        assert self.collector is not None, "an agent has no store"
        return self.collector

    # -- lifecycle -------------------------------------------------------------

    async def open(self) -> None:
        """Everything but the schedule: HTTP session, canaries, collector."""
        if self.lease is not None:
            await self.renew_lease()  # before the collector starts: the first center up leads at once
        scheduler = self.config.scheduler
        resolver = make_resolver(scheduler.nameservers)
        self._session = make_session(scheduler.max_concurrency, self.keepalive, resolver)
        self._context = ProbeContext(self._session, resolver)
        self._canaries = [
            compile_check(f"canary:{c.id}", [c.as_probe()], [], 5.0) for c in self.config.canaries
        ]
        resolver_ids = {f"canary:{c.id}" for c in self.config.canaries if c.checks_resolver}
        self.guard = CanaryGuard([c for c in self._canaries if c.service not in resolver_ids], self._context,
                                 self.location, self.clock,
                                 resolver_canaries=[c for c in self._canaries if c.service in resolver_ids])
        self.loop_watch.start()
        await self.sink.start()
        if self.alerts is not None:
            await self.alerts.start(self.supervisor.spawn)

    async def start(self) -> None:
        await self.open()
        assert self.guard is not None
        scheduler = AsyncIOScheduler(timezone=UTC)
        dispatcher = Dispatcher(self._run_job, self.config.scheduler.max_concurrency, self.clock)
        now = self.clock()
        jitter = self.config.scheduler.jitter_seconds
        supervised = self.supervisor.job  # a failing job is logged, counted and reported, and runs again next time
        for _, service in self.config.services():
            if service.heartbeat is None and (not self.probing or (
                    service.locations is not None and self.location not in service.locations)):
                continue
            interval = service.interval_seconds
            if service.heartbeat is not None:  # it reports in; the schedule only notices when it does not
                if self.collector is None:
                    continue  # heartbeats report to the center, not to an agent
                self._last_beat[service.id] = now  # never charged for the time before this process ran
                watch = self._once(partial(self._heartbeat_overdue, service))
                scheduler.add_job(supervised(f"heartbeat:{service.id}", watch),
                                  IntervalTrigger(seconds=interval), id=f"check:{service.id}", max_instances=1,
                                  coalesce=True)
                continue
            anchor = now + self._random.uniform(0, min(jitter, interval))
            dispatcher.add(ScheduledCheck(compile_service(service), interval, anchor))
        if self._canaries and self.probing:
            scheduler.add_job(supervised("canaries", self.guard.check_now), IntervalTrigger(seconds=30), id="canaries",
                              max_instances=1, coalesce=True)
        if self.collector is not None:
            self._calendar(scheduler, supervised)
        scheduler.start()
        self._scheduler = scheduler
        await dispatcher.start()
        self._dispatcher = dispatcher
        log.info("engine started: %d services at location %s", self.scheduled, self.location)

    @property
    def scheduled(self) -> int:
        """The checks this engine runs: probed services and watched heartbeats."""
        return (self._dispatcher.scheduled if self._dispatcher is not None else 0) + len(self._last_beat)

    def _calendar(self, scheduler: AsyncIOScheduler, supervised: Callable[..., Callable[[], Awaitable[object]]]
                  ) -> None:
        """The jobs of the system of record: closes, notices, materialization, gauges, retention."""
        # Months close once they have ended in Tehran plus the grace period for late results;
        # the same job turns evidence that arrives later into ledger adjustments.
        once = self._once
        if self.lease is not None:
            scheduler.add_job(supervised("lease", self.renew_lease), IntervalTrigger(seconds=5), id="lease",
                              max_instances=1, coalesce=True)
        scheduler.add_job(supervised("month-close", once(self.settle_due)), IntervalTrigger(minutes=15),
                          id="settlement", max_instances=1, coalesce=True,
                          next_run_time=datetime.now(UTC) + timedelta(seconds=20))  # a due month, soon after a start
        if self.alerts is not None:
            scheduler.add_job(supervised("notifier", once(self.alert_tick)), IntervalTrigger(minutes=1), id="alerts",
                              max_instances=1, coalesce=True)
        # Derived segments are stored as results age, so month figures never re-read a month of results.
        scheduler.add_job(supervised("materializer", once(self.materialize)), IntervalTrigger(minutes=30),
                          id="materialize", max_instances=1, coalesce=True)
        if self.metrics is not None:  # month-to-date per service on /metrics, from the settlement itself
            scheduler.add_job(supervised("month-gauges", self.month_gauges), IntervalTrigger(minutes=5),
                              id="month-gauges", max_instances=1, coalesce=True,
                              next_run_time=datetime.now(UTC) + timedelta(seconds=5))
        if self.store_jobs.follow is not None:  # a center watches its probe locations
            scheduler.add_job(supervised("location-watch", once(self.watch_locations)), IntervalTrigger(seconds=5),
                              id="location-watch", max_instances=1, coalesce=True,
                              next_run_time=datetime.now(UTC) + timedelta(seconds=1))
        # Retention runs at night, Tehran time, when the portals are quiet.
        scheduler.add_job(supervised("retention", once(self.compact)),
                          CronTrigger(hour=3, minute=30, timezone="Asia/Tehran"), id="retention", max_instances=1,
                          coalesce=True)

    async def stop(self) -> None:
        with stacks_if_slower_than(30.0):
            await self._stop()

    async def _stop(self) -> None:
        self._stopping = True  # a check handed over but not begun must not start now
        if self._scheduler is not None:
            self._scheduler.pause()  # no new calendar runs
        if self._dispatcher is not None:  # checks in flight finish (each bounded by its timeout) and are stored;
            await self._dispatcher.stop(grace_s=15)  # what still runs after 15 s is cancelled: no verdict
            self._dispatcher = None
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        await self.sink.stop()
        if self.collector is not None:
            log.info("engine stopped: %d checks run, %d results stored, %d not stored yet (journaled)",
                     self.checks_run, self.collector.stats.written, self.collector.pending)
        else:
            log.info("engine stopped: %d checks run, %d results buffered for the center", self.checks_run,
                     self.sink.pending)
        await self.loop_watch.stop()
        if self.alerts is not None:
            await self.alerts.stop()
        await self.supervisor.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- checks ------------------------------------------------------------------

    async def _run_job(self, job: ScheduledCheck, due: float) -> None:
        if self._stopping:
            return
        lag = max(0.0, self.clock() - due)
        self.lag.add(lag)
        try:
            result = await self.check(job.check, lag)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            return  # stopped mid-check: a check cut short by our own stop has no verdict and is not an error
        except Exception:  # a fault of the check path, not of the service: no verdict, and the next run comes
            log.exception("the check of %s failed inside Didban", job.check.service)
            return
        self._record(result, lag)

    @property
    def running(self) -> bool:
        return (self._scheduler is not None and self._scheduler.running
                and self._dispatcher is not None and self._dispatcher.running)

    def problems(self) -> list[str]:
        """What makes the service not ready: for /readyz, which names each."""
        found = [] if self.running else ["scheduler not running"]
        dispatcher = self._dispatcher
        if dispatcher is not None and dispatcher.oldest_wait() > self.config.scheduler.lag_bound_seconds:
            found.append(f"overloaded: {dispatcher.waiting} checks due and not started, "  # more than the core runs
                         f"the oldest {dispatcher.oldest_wait():.1f} s late")
        since = self.sink.unavailable_since
        if since is not None and time.monotonic() - since > self.config.store.unavailable_grace_seconds:
            found.append(f"store unavailable for {time.monotonic() - since:.0f} s; "
                         f"{self.sink.pending} results wait")
        return found + self.supervisor.problems()

    def refresh_gauges(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(self.sink.pending)
            if self.collector is not None:
                stats = self.collector.stats
                self.metrics.store_errors.set(stats.store_errors)
                self.metrics.dropped.set(stats.dropped)
                self.metrics.open_outages.set(len(self.collector.open_services()))
            if self._dispatcher is not None:
                self.metrics.checks_waiting.set(self._dispatcher.waiting)
                self.metrics.oldest_wait.set(self._dispatcher.oldest_wait())

    async def month_gauges(self) -> None:
        from sla_calc.periods import JalaliMonth

        assert self.metrics is not None
        now_ms = int(self.clock() * 1000)
        figures = await self._store_job(month_to_date, JalaliMonth.containing(now_ms), now_ms)
        self.metrics.series.month.update(figures)

    async def watch_locations(self) -> list[LocationState]:
        """Where each probe location stands; one notice when one goes silent and one when it returns."""
        from didban.locations import location_states

        now_ms = int(self.clock() * 1000)
        progress = await self.store_jobs.run_in_store(self.store_jobs.store.agents)
        states = location_states(self.config, progress, now_ms)
        if self.metrics is not None:
            for state in states:
                if state.reported:
                    self.metrics.location_age.labels(state.location).set(state.lag_seconds(now_ms) or 0.0)
                    self.metrics.location_silent.labels(state.location).set(int(state.silent))
        for location, silent, since_ms in self._location_watch.changes(states):
            log.warning("probe location %s %s (last batch %s Tehran time)", location,
                        "silent: missing coverage, not downtime" if silent else "reporting again", jalali(since_ms))
            if self.alerts is not None:
                await self.alerts.call(self.alerts.notifier.location_silent, location, silent, since_ms, now_ms)
        return states

    async def probe_now(self, service_id: str) -> ProbeResult | None:
        """Check a service at once (a citizen reported a fault); the result is stored like any other."""
        try:
            service = self.config.service(service_id)
        except KeyError:
            return None
        if service.heartbeat is not None:
            return self.latest.get(service_id)  # it cannot be checked from here: what it last reported
        result = await self.check(compile_service(service))
        self._record(result, 0.0)
        return result

    # -- heartbeat services ------------------------------------------------------------

    def heartbeat(self, service_id: str) -> ProbeResult | None:
        """A heartbeat service reported in: an ``up`` result now (None: not a heartbeat service of this engine)."""
        if service_id not in self._last_beat:
            return None
        now = self.clock()
        self._last_beat[service_id] = now
        result = ProbeResult(service_id, self.location, int(now * 1000), Status.UP, 0.0)
        self._record(result, 0.0)
        return result

    async def _heartbeat_overdue(self, service: ServiceConfig) -> None:
        """Each interval: a heartbeat missing for longer than the interval plus the grace is a failed check."""
        assert service.heartbeat is not None
        now = self.clock()
        allowed = service.interval_seconds + service.heartbeat.grace_seconds
        if self.collector is not None and self.collector.follow is not None:
            # Several centers: the heartbeat may have reported to another one; the store has it.
            recent = await self.collector.run_in_store(self.collector.store.results, service.id,
                                                       int((now - 2 * allowed) * 1000), int(now * 1000) + 1)
            beats = [r.ts_ms / 1000 for r in recent if r.status is Status.UP]
            if beats:
                self._last_beat[service.id] = max(self._last_beat[service.id], max(beats))
        silent_s = now - self._last_beat[service.id]
        if silent_s <= allowed:
            return
        result = ProbeResult(service.id, self.location, int(now * 1000), Status.DOWN, 0.0,
                             ErrorClass.HEARTBEAT_MISSED.value,
                             f"no heartbeat for {silent_s:.0f} s (interval {service.interval_seconds:g} s "
                             f"+ grace {service.heartbeat.grace_seconds:g} s)")
        # The monitor's own trouble (its network down, its loop stalled) explains a silence too.
        self._record(await self._unless_monitor_trouble(result, time.monotonic(), 0.0), 0.0)

    def _record(self, result: ProbeResult, lag_s: float) -> None:
        self.latest[result.service] = result
        self.sink.submit(result)
        if self.metrics is not None:
            self.metrics.observe_check(result, lag_s)
        if self.on_result is not None:
            self.on_result(result)

    async def check(self, check: CompiledCheck, lag_s: float = 0.0) -> ProbeResult:
        """One check, with the telecom clause and the monitor's own trouble applied."""
        assert self._session is not None and self.guard is not None
        started = time.monotonic()
        outcome = await run_check(check, self._context, self.location, self.clock)
        result = outcome.result
        if result.status is Status.DOWN:
            result = await self._unless_monitor_trouble(result, started, lag_s)
        self.checks_run += 1
        return result

    async def _unless_monitor_trouble(self, result: ProbeResult, started: float, lag_s: float) -> ProbeResult:
        """A failure that the monitor's own state explains is ``unknown``: it proves nothing about the service."""
        bounds = self.config.scheduler
        reason, error = None, ErrorClass.PROBE_NETWORK
        if lag_s > bounds.lag_bound_seconds or self.loop_watch.stalled_during(started):
            reason, error = (f"the monitor itself stalled or ran {lag_s:.1f}s late during the check",
                             ErrorClass.PROBE_OVERLOAD)
        elif not await self.guard.network_ok():  # type: ignore[union-attr]
            reason = f"every canary of {self.location} failed"
        # A resolver that does not answer shows as a timeout too when the check's timeout is the shorter.
        elif result.error in _RESOLUTION_ERRORS and not await self.guard.resolver_ok():  # type: ignore[union-attr]
            reason = f"every resolver canary of {self.location} failed: the monitor's own resolution is broken"
        if reason is None:
            return result
        if error is ErrorClass.PROBE_OVERLOAD and self.metrics is not None:
            self.metrics.overload.inc()
        # Built whole: at saturation every failed check comes here, and dataclasses.replace took 2.1 µs against 0.4.
        return ProbeResult(result.service, result.location, result.ts_ms, Status.UNKNOWN, result.latency_ms,
                           error.value, f"{reason}; the check saw: {result.error}: {result.detail}"[:300],
                           result.http_status, result.cert_days_left)

    # -- alerting -----------------------------------------------------------------------

    async def _on_outage_event(self, event: OutageEvent) -> None:
        assert self.alerts is not None
        self._recent_outages[event.outage.service] = int(self.clock() * 1000)
        await self.alerts.call(self.alerts.notifier.outage_event, event, int(self.clock() * 1000))

    async def alert_tick(self) -> int:
        """Escalations, maintenance reminders/start/end/overrun and burn-rate alerts."""
        assert self.alerts is not None
        store = self.store_jobs.store
        now_ms = int(self.clock() * 1000)
        notifier = self.alerts.notifier
        open_outages = list((await self.store_jobs.run_in_store(store.open_outages)).values())
        queued = int(await self.alerts.call(notifier.escalate, open_outages, now_ms))
        windows = await self.store_jobs.run_in_store(store.maintenance, now_ms - 86_400_000, now_ms + 3 * 86_400_000)
        down = {o.service for o in open_outages}
        queued += int(await self.alerts.call(notifier.maintenance_tick, windows, down, now_ms))
        queued += await self._burn_rate(store, now_ms)
        return queued

    async def _burn_rate(self, store: Store, now_ms: int) -> int:
        """Only services with an outage in the longest window can be burning their budget."""
        from didban.settlement import settle, window_downtime
        from sla_calc.burnrate import BurnRule, BurnWindow, error_budget_ms, firing
        from sla_calc.month import truncate_percent
        from sla_calc.periods import JalaliMonth

        assert self.alerts is not None
        rules = [BurnRule(tuple(BurnWindow(w.hours, w.budget_percent) for w in rule), f"rule-{i + 1}")
                 for i, rule in enumerate(self.config.alerting.burn_rules)]
        longest_ms = max((w.hours for r in rules for w in r.windows), default=0) * 3_600_000
        month = JalaliMonth.containing(now_ms)
        queued = 0
        for service_id, last_ms in list(self._recent_outages.items()):
            if last_ms < now_ms - longest_ms and service_id not in self.store_jobs.open_services():
                del self._recent_outages[service_id]
                continue
            service = self.config.service(service_id)
            agreement = self.config.agreement(service.agreement)
            budget = error_budget_ms(agreement.target_percent, month.denominator_ms(agreement.month_basis))
            # Downtime as the settlement counts it: maintenance announced in time and telecom exclusions removed.
            downtime = {
                w.hours: await self.store_jobs.run_in_store(
                    window_downtime, self.config, store, service_id, now_ms - int(w.hours * 3_600_000), now_ms)
                for rule in rules for w in rule.windows
            }
            fired = firing(rules, downtime, budget)
            if not fired:
                continue
            settled = await self.store_jobs.run_in_store(settle, self.config, store, month, now_ms, [service_id])
            figures = settled.figures(service_id)
            if figures is None:
                continue  # no agreement in force this month: there is no budget to burn
            for name in fired:
                rule = next(r for r in rules if r.name == name)
                long_window = max(rule.windows, key=lambda w: w.hours)
                burned = 100 * downtime[long_window.hours] / budget if budget else 100.0
                queued += int(await self.alerts.call(
                    self.alerts.notifier.sla_at_risk, service_id, name, burned, long_window.hours,
                    truncate_percent(figures.availability_percent), agreement.target_percent, now_ms))
        return queued

    # -- settlement ------------------------------------------------------------------

    async def _store_job(self, job: Callable[..., Any], *args: Any) -> Any:
        if self.store_work is not None:
            return await self.store_work(job, *args)
        return await self.store_jobs.run_in_store(job, self.config, self.store_jobs.store, *args)

    async def settle_due(self) -> list[str]:
        """Close the months that are due; recheck closed ones for late evidence."""
        from didban.settlement import InsufficientEvidence, close_month
        from sla_calc.closing import due_months

        now_ms = int(self.clock() * 1000)
        grace_ms = int(self.config.sla.close_grace_minutes * 60_000)
        done = []
        for month in due_months(now_ms, grace_ms):
            if now_ms < self._insufficient_until.get(str(month), 0):
                continue
            try:
                outcome = await self._store_job(close_month, month, now_ms)
            except InsufficientEvidence as exc:
                # Finding a month short reads its figures from the store (half a core-second per 5,000
                # services, on the core that measures): a short month is tried hourly, not every 15 minutes.
                first = str(month) not in self._insufficient_until
                self._insufficient_until[str(month)] = now_ms + INSUFFICIENT_RETRY_MS
                if first:  # said once per month, not at every try
                    log.warning("month %s not closed automatically: %s", month, exc)
                continue
            if outcome.closed_now:
                log.info("month %s closed: %d credit(s), evidence pack %s", month, len(outcome.credits),
                         outcome.pack_sha256)
                if self.alerts is not None:
                    await self.alerts.credits(outcome.credits, now_ms)
                for handler in self.month_closed_handlers:
                    await handler(str(month))
            for entry in outcome.adjustments:
                log.warning("month %s: late evidence adjusted %s (%s)", month, entry.service, entry.note)
            done.append(str(month))
        return done

    # -- retention -------------------------------------------------------------------

    async def materialize(self) -> int:
        """Store derived segments up to an hour ago (later results may still arrive out of order)."""
        from didban import upkeep

        return int(await self._store_job(upkeep.materialize, int((self.clock() - 3600) * 1000)))

    async def compact(self) -> int:
        """Compact raw results older than retention_days into run-length segments."""
        from didban import upkeep
        from didban.settlement import purge_old_packs

        cutoff_ms = int((self.clock() - timedelta(days=self.config.store.retention_days).total_seconds()) * 1000)
        removed = int(await self._store_job(upkeep.compact, cutoff_ms))
        if removed:
            log.info("retention: %d raw results compacted into segments", removed)
        purged = await self._store_job(purge_old_packs, int(self.clock() * 1000))
        if purged:
            log.info("evidence retention: %d archived pack(s) older than %g years removed", purged,
                     self.config.sla.evidence_retention_years)
        return removed
