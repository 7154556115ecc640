"""The collector: results in, stored results and online outages out.

Probes hand results to ``submit`` (never blocks).  A single writer task takes
them from a bounded queue in batches, feeds each (service, location) to its
``RunTracker`` (the same state machine the SLA maths uses), and commits the
results, the tracker states and any outage transitions in one transaction.
Only after the commit are ``outage_opened`` / ``outage_closed`` published, so
a notice never announces something the store does not hold.

When the store fails (locked, disk full) the batch is kept and retried with
backoff; new results wait in the queue.  Only when the queue's bound is hit
are results dropped, and then they are counted and reported once a minute.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from collector.store import Batch, OutageChange, Store, StoreUnavailable
from didban.model import Outage, OutageEvent, ProbeResult
from sla_calc.derive import RunTracker

log = logging.getLogger("didban.collector")

EventHandler = Callable[[OutageEvent], Awaitable[None] | None]
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ServicePolicy:
    interval_ms: int
    failure_threshold: int
    quorum: float = 0.5  # down when more than this share of reporting locations say down


@dataclass(slots=True)
class CollectorStats:
    received: int = 0
    written: int = 0
    dropped: int = 0
    out_of_order: int = 0
    store_errors: int = 0
    batches: int = 0


class Collector:
    def __init__(
        self,
        store: Store,
        policies: dict[str, ServicePolicy],
        *,
        queue_size: int = 100_000,
        batch_size: int = 2_000,
        flush_seconds: float = 0.25,
        retry_max_seconds: float = 5.0,
    ) -> None:
        self.store = store
        self.policies = policies
        self.stats = CollectorStats()
        # A plain deque and a wake-up event: an asyncio.Queue's per-item
        # bookkeeping cost more than the SQLite insert of the same result.
        self._pending: deque[ProbeResult] = deque()
        self._queue_size = queue_size
        self._wake = asyncio.Event()
        self._writing = False
        self._stopping = False
        self._batch_size = batch_size
        self._flush_seconds = flush_seconds
        self._retry_max = retry_max_seconds
        self._trackers: dict[str, dict[str, RunTracker]] = {}  # service → location → tracker
        self._open: dict[str, Outage] = {}
        self._handlers: list[EventHandler] = []
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="didban-store")
        self._task: asyncio.Task[None] | None = None
        self._last_drop_report = 0.0
        self._drops_reported = 0
        self.idle = asyncio.Event()

    # -- wiring --------------------------------------------------------------

    def subscribe(self, handler: EventHandler) -> None:
        self._handlers.append(handler)

    async def start(self) -> None:
        """Load the persisted outage state so a restart resumes, never duplicates."""
        states = await self.run_in_store(self.store.tracker_states)
        for (service, location), state in states.items():
            policy = self.policies.get(service)
            if policy is not None:
                tracker = RunTracker(policy.interval_ms, policy.failure_threshold, state)
                self._trackers.setdefault(service, {})[location] = tracker
        self._open = await self.run_in_store(self.store.open_outages)
        self._task = asyncio.create_task(self._run(), name="didban-collector")

    async def stop(self) -> None:
        """Write everything that was submitted, then stop."""
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            while (self._pending or self._writing) and not self._task.done():
                self.idle.clear()
                idle = asyncio.ensure_future(self.idle.wait())  # set by the writer when it has nothing left
                await asyncio.wait({idle, self._task}, return_when=asyncio.FIRST_COMPLETED)
                idle.cancel()
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self._executor.shutdown(wait=True)

    def open_outage(self, service: str) -> Outage | None:
        return self._open.get(service)

    def open_services(self) -> set[str]:
        return set(self._open)

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- input ---------------------------------------------------------------

    def submit(self, result: ProbeResult) -> None:
        self.stats.received += 1
        if len(self._pending) >= self._queue_size:
            self.stats.dropped += 1
            self._report_drops()
            return
        self._pending.append(result)
        if len(self._pending) == 1:
            self._wake.set()

    def _report_drops(self) -> None:
        now = time.monotonic()
        if now - self._last_drop_report >= 60:
            newly = self.stats.dropped - self._drops_reported
            log.error(
                "result queue full: %d results dropped in the last minute (%d in all); "
                "the store is not keeping up or is unavailable",
                newly, self.stats.dropped,
            )
            self._last_drop_report = now
            self._drops_reported = self.stats.dropped

    # -- the writer ------------------------------------------------------------

    async def run_in_store(self, function: Callable[..., _T], *args: object) -> _T:
        """Run a store call on the writer thread: the store's connection is never shared."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    async def _take(self) -> list[ProbeResult]:
        """Wait for results, give a batch time to gather, then take up to batch_size of them."""
        while not self._pending:
            self.idle.set()
            self._wake.clear()
            await self._wake.wait()
        self.idle.clear()
        if len(self._pending) < self._batch_size and not self._stopping:
            await asyncio.sleep(self._flush_seconds)
        take = min(len(self._pending), self._batch_size)
        return [self._pending.popleft() for _ in range(take)]

    async def _run(self) -> None:
        while True:
            items = await self._take()
            self._writing = True
            try:
                batch = self._derive(items)
                outages = await self._write(batch)
            finally:
                self._writing = False
            self.stats.written += len(items)
            self.stats.batches += 1
            for outage in outages:
                await self._publish(outage)

    async def _write(self, batch: Batch) -> list[Outage]:
        delay = 0.1
        while True:
            try:
                return await self.run_in_store(self.store.write, batch)
            except StoreUnavailable as exc:
                self.stats.store_errors += 1
                log.warning("store unavailable (%s); %d results wait, retrying in %.1fs",
                            exc, len(batch.results) + len(self._pending), delay)
            except Exception:  # an unexpected store error must delay results, never drop them
                self.stats.store_errors += 1
                log.exception("store write failed; %d results wait, retrying in %.1fs",
                              len(batch.results) + len(self._pending), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)

    def _derive(self, items: list[ProbeResult]) -> Batch:
        """Advance the online outage state with a batch of results (in time order)."""
        batch = Batch(results=items)
        items = sorted(items, key=lambda r: r.ts_ms)
        for result in items:
            by_location = self._trackers.setdefault(result.service, {})
            tracker = by_location.get(result.location)
            if tracker is None:
                policy = self.policies.get(result.service)
                if policy is None:
                    continue  # a service no longer configured: stored, not tracked
                tracker = RunTracker(policy.interval_ms, policy.failure_threshold)
                by_location[result.location] = tracker
            if not tracker.accepts(result.ts_ms):
                self.stats.out_of_order += 1
                continue
            was_idle = tracker.state.run_length == 0
            transition = tracker.feed(result.ts_ms, result.status)
            # An idle tracker fed an up stays idle: nothing a restart needs has changed.
            if not (was_idle and tracker.state.run_length == 0):
                batch.trackers[(result.service, result.location)] = tracker.state
            if transition is not None:
                self._service_transition(result, transition.at_ms, batch)
        return batch

    def _service_transition(self, result: ProbeResult, at_ms: int, batch: Batch) -> None:
        service = result.service
        policy = self.policies[service]
        trackers = self._trackers[service].values()
        down = sum(1 for t in trackers if t.state.open)
        is_down = down > policy.quorum * len(trackers)
        is_open = service in self._open
        if is_down and not is_open:
            self._open[service] = Outage(0, service, at_ms, None, result.error, "")
            batch.changes.append(OutageChange(service, at_ms, opening=True, error=result.error))
        elif not is_down and is_open:
            del self._open[service]
            batch.changes.append(OutageChange(service, at_ms, opening=False))

    async def _publish(self, outage: Outage) -> None:
        kind = "outage_opened" if outage.is_open else "outage_closed"
        placeholder = self._open.get(outage.service)
        if outage.is_open and placeholder is not None and placeholder.start_ms == outage.start_ms:
            self._open[outage.service] = outage  # now with its id and tracking code
        event = OutageEvent(kind, outage)
        log.info("%s: %s since %s (%s)", kind, outage.service, outage.start_ms, outage.tracking_code)
        for handler in self._handlers:
            try:
                pending = handler(event)
                if pending is not None:
                    await pending
            except Exception:  # a broken subscriber must not stop the collector
                log.exception("event handler failed for %s", kind)

