"""The engine: probes scheduled 24/7 into the collector.

APScheduler 3's ``AsyncIOScheduler`` runs one job per service with
``max_instances=1`` and ``coalesce=True``; each job gets a fixed random phase
within its interval so 10,000 checks never fire in the same millisecond, and a
global semaphore bounds how many checks run at once.  Schedule lag (due →
started, after the semaphore) is measured for every check.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import aiohttp
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from collector.collector import Collector, ServicePolicy
from collector.store import Store
from didban.config import DidbanConfig
from didban.model import ErrorClass, ProbeResult, Status
from probes.base import ProbeContext
from probes.canary import CanaryGuard
from probes.runner import CompiledCheck, compile_check, compile_service, run_check

log = logging.getLogger("didban.engine")
# APScheduler logs two INFO lines per job run: at 333 checks/s that is noise and CPU.
logging.getLogger("apscheduler").setLevel(logging.WARNING)


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


@dataclass(frozen=True, slots=True)
class ScheduledCheck:
    check: CompiledCheck
    interval_s: float
    anchor: float  # epoch seconds of the first run; runs are anchor + k × interval


def make_session(limit: int, keepalive: bool) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, force_close=not keepalive,
                                     ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        # The runner bounds every check with its own total timeout; aiohttp's
        # default 5-minute timer per request would only cost CPU.
        timeout=aiohttp.ClientTimeout(total=None),
        cookie_jar=aiohttp.DummyCookieJar(),  # a monitor must not carry state between checks
        headers={"User-Agent": "Didban/0.1 (+availability monitor)"},
    )


class Engine:
    def __init__(
        self,
        config: DidbanConfig,
        store: Store,
        location: str,
        *,
        clock: Callable[[], float] = time.time,
        keepalive: bool = False,
        seed: int | None = None,
    ) -> None:
        self.config = config
        self.location = location
        self.clock = clock
        self.keepalive = keepalive
        self.collector = Collector(
            store,
            {
                s.id: ServicePolicy(int(s.interval_seconds * 1000), s.failure_threshold)
                for _, s in config.services()
            },
            queue_size=config.store.queue_size,
        )
        self.lag = LagStats()
        self.latest: dict[str, ProbeResult] = {}
        self.checks_run = 0
        self._random = random.Random(seed)
        self._semaphore = asyncio.Semaphore(config.scheduler.max_concurrency)
        self._scheduler: AsyncIOScheduler | None = None
        self._session: aiohttp.ClientSession | None = None
        self.guard: CanaryGuard | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------

    async def open(self) -> None:
        """Everything but the schedule: HTTP session, canaries, collector."""
        self._session = make_session(self.config.scheduler.max_concurrency, self.keepalive)
        self._context = ProbeContext(self._session)
        self._canaries = [
            compile_check(f"canary:{c.id}", [c.as_probe()], [], 5.0) for c in self.config.canaries
        ]
        self.guard = CanaryGuard(self._canaries, self._context, self.location, self.clock)
        await self.collector.start()

    async def start(self) -> None:
        await self.open()
        assert self.guard is not None
        scheduler = AsyncIOScheduler(timezone=UTC)
        now = self.clock()
        jitter = self.config.scheduler.jitter_seconds
        for _, service in self.config.services():
            if service.locations is not None and self.location not in service.locations:
                continue
            interval = service.interval_seconds
            anchor = now + self._random.uniform(0, min(jitter, interval))
            job = ScheduledCheck(compile_service(service), interval, anchor)
            scheduler.add_job(
                self._run_job,
                IntervalTrigger(seconds=interval, start_date=datetime.fromtimestamp(anchor, UTC)),
                args=[job],
                id=f"check:{service.id}",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
        if self._canaries:
            scheduler.add_job(self.guard.check_now, IntervalTrigger(seconds=30), id="canaries",
                              max_instances=1, coalesce=True)
        # Months close once they have ended in Tehran plus the grace period for late results;
        # the same job turns evidence that arrives later into ledger adjustments.
        scheduler.add_job(self.settle_due, IntervalTrigger(minutes=15), id="settlement", max_instances=1,
                          coalesce=True)
        # Derived segments are stored as results age, so month figures never re-read a month of results.
        scheduler.add_job(self.materialize, IntervalTrigger(minutes=30), id="materialize", max_instances=1,
                          coalesce=True)
        # Retention runs at night, Tehran time, when the portals are quiet.
        scheduler.add_job(self.compact, CronTrigger(hour=3, minute=30, timezone="Asia/Tehran"),
                          id="retention", max_instances=1, coalesce=True)
        scheduler.start()
        self._scheduler = scheduler
        log.info("engine started: %d services at location %s", len(scheduler.get_jobs()) - 1, self.location)

    async def stop(self) -> None:
        self._stopping = True  # a job the scheduler already handed over must not start a check now
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        await asyncio.sleep(0)  # let handed-over jobs see the flag (or register as in flight)
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=15)
        await self.collector.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- checks ------------------------------------------------------------------

    async def _run_job(self, job: ScheduledCheck) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._stopping:
            return
        self._in_flight.add(task)
        try:
            async with self._semaphore:
                now = self.clock()
                due = job.anchor + math.floor((now - job.anchor) / job.interval_s) * job.interval_s
                self.lag.add(max(0.0, now - due))
                result = await self.check(job.check)
            self.collector.submit(result)
        finally:
            self._in_flight.discard(task)

    async def check(self, check: CompiledCheck) -> ProbeResult:
        """One check, with the telecom clause applied."""
        assert self._session is not None and self.guard is not None
        outcome = await run_check(check, self._context, self.location, self.clock)
        result = outcome.result
        if result.status is Status.DOWN and not await self.guard.network_ok():
            result = replace(
                result,
                status=Status.UNKNOWN,
                error=ErrorClass.PROBE_NETWORK.value,
                detail=f"every canary of {self.location} failed; the check saw: {result.error}",
            )
        self.checks_run += 1
        self.latest[check.service] = result
        return result

    # -- settlement ------------------------------------------------------------------

    async def settle_due(self) -> list[str]:
        """Close the months that are due; recheck closed ones for late evidence."""
        from collector.sqlite_store import SqliteStore
        from didban.settlement import close_month, due_months

        store = self.collector.store
        if not isinstance(store, SqliteStore):
            return []  # settlement needs the system of record
        now_ms = int(self.clock() * 1000)
        grace_ms = int(self.config.sla.close_grace_minutes * 60_000)
        done = []
        for month in due_months(now_ms, grace_ms):
            outcome = await self.collector.run_in_store(close_month, self.config, store, month, now_ms)
            if outcome.closed_now:
                log.info("month %s closed: %d credit(s)", month, len(outcome.credits))
            for entry in outcome.adjustments:
                log.warning("month %s: late evidence adjusted %s (%s)", month, entry.service, entry.note)
            done.append(str(month))
        return done

    # -- retention -------------------------------------------------------------------

    async def materialize(self) -> int:
        """Store derived segments up to an hour ago (later results may still arrive out of order)."""
        from collector.sqlite_store import SqliteStore

        store = self.collector.store
        if not isinstance(store, SqliteStore):
            return 0
        until_ms = int((self.clock() - 3600) * 1000)
        written = 0
        for _, service in self.config.services():
            for location in await self.collector.run_in_store(store.locations_of, service.id):
                written += await self.collector.run_in_store(
                    store.materialize, service.id, location, until_ms,
                    int(service.interval_seconds * 1000), service.failure_threshold,
                )
        return written

    async def compact(self) -> int:
        """Compact raw results older than retention_days into run-length segments."""
        cutoff_ms = int((self.clock() - timedelta(days=self.config.store.retention_days).total_seconds()) * 1000)
        store = self.collector.store
        removed = 0
        for _, service in self.config.services():
            for location in await self.collector.run_in_store(store.locations_of, service.id):
                removed += await self.collector.run_in_store(
                    store.compact, service.id, location, cutoff_ms,
                    int(service.interval_seconds * 1000), service.failure_threshold,
                )
        if removed:
            log.info("retention: %d raw results compacted into segments", removed)
        return removed
