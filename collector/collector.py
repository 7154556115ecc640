"""The collector: results in, stored results and online outages out.

Probes hand results to ``submit`` (never blocks).  A single writer task takes
them from a bounded queue in batches, feeds each (service, location) to its
``RunTracker`` (the same state machine the SLA maths uses), and commits the
results, the tracker states and any outage transitions in one transaction.
Only after the commit are ``outage_opened`` / ``outage_closed`` published, so
a notice never announces something the store does not hold.

When the store fails (locked, disk full) the batch is kept and retried with
capped exponential backoff and jitter (one warning per distinct cause per
minute); new results wait in the queue and, with a ``Journal``, are appended
to it (fsync'd) so a crash meanwhile loses none of them.  The journal is
replayed in order, idempotently, at start and when the store returns.  Only
when the queue's bound is hit are results dropped, and then they are counted
and reported once a minute.

On a center (``follow``), results also arrive from agents straight into the
store, so outages are derived from the store's own stream of results (every
result, whoever stored it, in the order it was stored) and the trackers, the
outage changes and the stream's position are committed together: a restart
resumes where the last commit left off.  The collector's own results (a
center's heartbeats) are then stored without deriving, and derived from the
stream like the agents'.

With several locations a service is down when a quorum of the locations
reporting for it are in a counted run of ``down`` (``sla_calc.derive.quorum_down``,
the rule the monthly maths applies).  A location abstains while its latest
result is ``unknown`` (its canaries failed: its own network is down) or when it
has reported nothing for two intervals; an abstaining location never makes
downtime.  Late results (a partitioned agent draining its buffer) cannot
change the verdict now; after their batch the quorum of the stored results over
their span is taken and any past outage they show is recorded, closed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, TypeVar

from collector.journal import Journal
from core.model import Outage, OutageEvent, ProbeResult, Status
from core.timefmt import jalali
from core.waiting import set_within
from sla_calc.derive import RunTracker, Transition, quorum_down, quorum_needs, quorum_segments, unrecorded_downtime
from store.contract import Batch, FeedSource, OutageChange, Store, StoreUnavailable

log = logging.getLogger("didban.collector")

_TIME = attrgetter("ts_ms")
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
        journal: Journal | None = None,
        spawn: Callable[[str, Callable[[], Coroutine[Any, Any, None]]], asyncio.Task[None]] | None = None,
        follow: FeedSource | None = None,
        may_derive: Callable[[], bool] = lambda: True,
    ) -> None:
        self.store = store
        self.follow = follow  # a center: outages are derived from the store's stream of results
        self._may_derive = may_derive  # several centers: only the lease holder derives
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
        # The journal has a thread of its own: while a write waits on a locked store (up to its busy timeout),
        # what keeps arriving is journaled meanwhile, not held in memory only until the write gives up.
        self._journal_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="didban-journal")
        self._task: asyncio.Task[None] | None = None
        self._follow_task: asyncio.Task[None] | None = None  # a center's deriving from the stream
        self._last_drop_report = 0.0
        self._drops_reported = 0
        self.idle = asyncio.Event()
        self.journal = journal
        self._journaled = 0  # how many results at the front of the queue are already in the journal
        self._spawn = spawn or (lambda name, run: asyncio.create_task(run(), name=f"didban-{name}"))
        self.unavailable_since: float | None = None  # monotonic time the store stopped taking writes
        self._warned: dict[str, float] = {}  # cause → when it was last logged
        self._stream_wake = asyncio.Event()
        self._late: dict[str, tuple[int, int]] = {}  # service → the span of late results of this batch

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
        if self.journal is not None:
            waiting = await self._in_journal(self.journal.read)
            if waiting:  # results a previous process could not store: first in line, in their order
                log.warning("replaying %d results from the journal %s", len(waiting), self.journal.path)
                fresh = await self.run_in_store(self.store.missing, waiting)
                self._pending.extendleft(reversed(fresh))
                self._journaled = len(fresh)
                self.journal.appended = len(waiting)  # cleared once they are all stored
        self._task = self._spawn("collector", self._run)
        if self.follow is not None:
            self._follow_task = self._spawn("derive", self._derive_stream)

    async def stop(self, grace_s: float = 10.0) -> None:
        """Write everything that was submitted, then stop.

        A store that stays unavailable for ``grace_s`` does not hold the stop hostage: what still
        waits goes to the journal (replayed at the next start) and the writer is stopped.
        """
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            deadline = time.monotonic() + grace_s
            while (self._pending or self._writing) and not self._task.done():
                left = deadline - time.monotonic()
                if left <= 0:
                    await self._journal_pending()
                    log.warning("stopping with the store unavailable: %d results wait in the journal",
                                len(self._pending))
                    break
                self.idle.clear()
                idle = asyncio.ensure_future(self.idle.wait())  # set by the writer when it has nothing left
                await asyncio.wait({idle, self._task}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                idle.cancel()
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._follow_task is not None:
            self._follow_task.cancel()
            try:
                await self._follow_task
            except asyncio.CancelledError:
                pass
            self._follow_task = None
        self._executor.shutdown(wait=True)
        self._journal_thread.shutdown(wait=True)

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

    async def _in_journal(self, function: Callable[..., _T], *args: object) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._journal_thread, function, *args)

    async def _take(self) -> tuple[list[ProbeResult], bool]:
        """Wait for results, give a batch time to gather, then take up to batch_size of them
        (and whether all of them are in the journal already)."""
        while not self._pending:
            self.idle.set()
            self._wake.clear()
            await self._wake.wait()
        self.idle.clear()
        if len(self._pending) < self._batch_size and not self._stopping:
            await asyncio.sleep(self._flush_seconds)
        take = min(len(self._pending), self._batch_size)
        journaled = take <= self._journaled
        self._journaled = max(0, self._journaled - take)
        return [self._pending.popleft() for _ in range(take)], journaled

    async def _run(self) -> None:
        while True:
            items, journaled = await self._take()
            self._writing = True
            try:
                try:
                    # On a center the stream derives everything; here the results are only stored.
                    batch = Batch(results=items) if self.follow is not None else self._derive(items)
                except BaseException:
                    self._pending.extendleft(reversed(items))  # a failed derivation must not lose the batch
                    raise
                outages = await self._write(batch, journaled)
            finally:
                self._writing = False
            self.stats.written += len(items)
            self.stats.batches += 1
            for outage in outages:
                await self._publish(outage)
            await self._reconcile()

    async def _write(self, batch: Batch, journaled: bool) -> list[Outage]:
        delay = 0.1
        while True:
            attempt = asyncio.ensure_future(self.run_in_store(self.store.write, batch))
            # A write still waiting after a second (a locked store waits out its busy timeout; a quarter of one
            # once the store is known to be in trouble): the batch and what keeps arriving go to the journal
            # meanwhile, so a kill -9 then loses only the checks in flight.
            patience = 0.25 if self.unavailable_since is not None else 1.0
            while self.journal is not None and not (await asyncio.wait({attempt}, timeout=patience))[0]:
                if not journaled:
                    journaled = await self._journal(batch.results)
                await self._journal_pending()
                patience = 0.25
            try:
                outages = await attempt
            except Exception as exc:  # locked, disk full, a bug: results are delayed, never dropped
                self.stats.store_errors += 1
                if self.unavailable_since is None:
                    self.unavailable_since = time.monotonic()
                self._warn(exc, len(batch.results) + len(self._pending))
                if not journaled:
                    journaled = await self._journal(batch.results)
                # Back off with jitter, journaling what keeps arriving meanwhile.
                until = time.monotonic() + delay * random.uniform(0.5, 1.0)
                while time.monotonic() < until:
                    await self._journal_pending()
                    await asyncio.sleep(min(0.25, max(0.0, until - time.monotonic())))
                delay = min(delay * 2, self._retry_max)
                continue
            if self.unavailable_since is not None:
                log.warning("store available again after %.0f s; %d results waiting are being written",
                            time.monotonic() - self.unavailable_since, len(self._pending))
                self.unavailable_since = None
                self._warned.clear()
            if self.journal is not None and self._journaled == 0 and self.journal.appended:
                await self._in_journal(self.journal.clear)  # everything journaled is stored now
            return outages

    def _warn(self, exc: Exception, waiting: int) -> None:
        cause = str(exc) if isinstance(exc, StoreUnavailable) else f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        if now - self._warned.get(cause, float("-inf")) < 60:
            return
        self._warned[cause] = now
        log.warning("store unavailable (%s); %d results wait%s, retrying with backoff", cause, waiting,
                    " in the journal" if self.journal is not None else "",
                    exc_info=not isinstance(exc, StoreUnavailable))

    async def _journal(self, results: list[ProbeResult]) -> bool:
        if self.journal is None:
            return False
        try:
            await self._in_journal(self.journal.append, results)
        except OSError as exc:
            log.error("cannot append to the journal %s (%s); waiting results are in memory only",
                      self.journal.path, exc)
            return False
        return True

    async def _journal_pending(self) -> None:
        """Append the queued results the journal does not hold yet."""
        if self.journal is None or self._journaled >= len(self._pending):
            return
        fresh = list(itertools.islice(self._pending, self._journaled, None))
        if await self._journal(fresh):
            self._journaled += len(fresh)

    # -- a center: outages from the store's stream of results ---------------------------------------------

    def wake(self) -> None:
        """Results were stored by someone else (an agent's batch): derive them soon."""
        self._stream_wake.set()

    async def _derive_stream(self) -> None:
        assert self.follow is not None
        source = self.follow
        position = await self.run_in_store(_stream_start, source)
        leading = True
        while True:
            if not self._may_derive():
                leading = False
                await asyncio.sleep(1.0)
                continue
            if not leading:  # the lease came (back) to us: another center derived meanwhile
                position = await self._resume(source)
                leading = True
            rows = await self.run_in_store(source.results_after, position, 0, self._batch_size)
            if not rows:
                self._stream_wake.clear()
                await set_within(self._stream_wake, self._flush_seconds * 4)
                continue
            batch = self._derive([result for _, result in rows])
            batch.results = []  # stored already: the trackers, outage changes and position commit together
            batch.cursor = (DERIVE_STREAM, rows[-1][0])
            outages = await self._write(batch, True)
            position = rows[-1][0]
            for outage in outages:
                await self._publish(outage)
            await self._reconcile()

    async def _resume(self, source: FeedSource) -> int:
        """The trackers, open outages and position as the last deriver committed them."""
        states = await self.run_in_store(self.store.tracker_states)
        self._trackers = {}
        for (service, location), state in states.items():
            policy = self.policies.get(service)
            if policy is not None:
                self._trackers.setdefault(service, {})[location] = RunTracker(policy.interval_ms,
                                                                              policy.failure_threshold, state)
        self._open = await self.run_in_store(self.store.open_outages)
        return await self.run_in_store(_stream_start, source)

    def _derive(self, items: list[ProbeResult]) -> Batch:
        """Advance the online outage state with a batch of results (in time order)."""
        batch = Batch(results=items)
        items = sorted(items, key=_TIME)
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
            if len(by_location) == 1:  # one location: its own transitions are the service's
                if transition is not None:
                    self._change(result, transition.kind == "opened", transition.at_ms, batch)
            else:
                self._quorum(result, transition, by_location, batch)
        return batch

    def _quorum(self, result: ProbeResult, transition: Transition | None, by_location: dict[str, RunTracker],
                batch: Batch) -> None:
        """Several locations: down while a quorum of those reporting now are in a counted run of down."""
        policy = self.policies[result.service]
        window = 2 * policy.interval_ms  # a result covers at most two intervals, as in the monthly maths
        now = max(t.state.last_ts_ms or 0 for t in by_location.values())
        reporting = [t for t in by_location.values() if t.reporting(now, window)]
        if by_location[result.location] not in reporting and result.status is not Status.UNKNOWN:
            # A late result (a partitioned agent draining): it cannot change the verdict now, only the past.
            low, high = self._late.get(result.service, (result.ts_ms, result.ts_ms))
            self._late[result.service] = (min(low, result.ts_ms), max(high, result.ts_ms))
        down = [t for t in reporting if t.state.open]
        is_down = quorum_down(len(down), len(reporting), policy.quorum)
        if is_down == (result.service in self._open):
            return
        if is_down:
            # From when the quorum held: the run start of the deciding location, or later, when a location
            # that would have outvoted it stopped reporting.
            starts = sorted(t.state.run_start_ms or now for t in down)
            at = starts[quorum_needs(len(reporting), policy.quorum) - 1]
            ended = [t.coverage_end(window) for t in by_location.values() if t not in reporting]
            at = max([at, *(end for end in ended if end <= now)])
        else:
            at = transition.at_ms if transition is not None and transition.kind == "closed" else result.ts_ms
        self._change(result, is_down, at, batch)

    async def _reconcile(self) -> None:
        """Late results may show a past outage the online view could not see then: record it, closed."""
        if not self._late:
            return
        late, self._late = self._late, {}
        for service, (low, high) in late.items():
            try:
                found = await self.run_in_store(self._history, service, low, high)
            except Exception:  # the store unavailable: the month's figures count the late results regardless
                log.warning("late results of %s not reconciled now (store unavailable)", service, exc_info=True)
                continue
            for outage in found:
                log.warning("outage of %s from %s to %s Tehran recorded from late results (%s)", service,
                            jalali(outage.start_ms), jalali(outage.end_ms or outage.start_ms), outage.tracking_code)

    def _history(self, service: str, low: int, high: int) -> list[Outage]:
        """On the store's thread: the quorum of the span's stored results against the outages recorded."""
        policy = self.policies[service]
        margin = 2 * policy.interval_ms
        start, end = low - margin, high + margin
        per_location = [self.store.period_segments(service, location, start, end, policy.interval_ms,
                                                   policy.failure_threshold)
                        for location in self.store.locations_of(service)]
        combined = quorum_segments([s for s in per_location if s], policy.quorum)
        recorded = [(o.start_ms, o.end_ms if o.end_ms is not None else end + 1)
                    for o in self.store.outages(service, start, end)]
        return [self.store.record_outage(service, s, e, "late results")
                for s, e in unrecorded_downtime(combined, recorded)]

    def _change(self, result: ProbeResult, opening: bool, at_ms: int, batch: Batch) -> None:
        service = result.service
        if opening and service not in self._open:
            self._open[service] = Outage(0, service, at_ms, None, result.error, "")
            batch.changes.append(OutageChange(service, at_ms, opening=True, error=result.error))
        elif not opening and service in self._open:
            del self._open[service]
            batch.changes.append(OutageChange(service, at_ms, opening=False))

    async def _publish(self, outage: Outage) -> None:
        kind = "outage_opened" if outage.is_open else "outage_closed"
        placeholder = self._open.get(outage.service)
        if outage.is_open and placeholder is not None and placeholder.start_ms == outage.start_ms:
            self._open[outage.service] = outage  # now with its id and tracking code
        event = OutageEvent(kind, outage)
        log.info("%s: %s since %s Tehran (%s)", kind.replace("_", " "), outage.service, jalali(outage.start_ms),
                 outage.tracking_code)
        for handler in self._handlers:
            try:
                pending = handler(event)
                if pending is not None:
                    await pending
            except Exception:  # a broken subscriber must not stop the collector
                log.exception("event handler failed for %s", kind)



DERIVE_STREAM = "derive"  # the stream position of the results a center has derived outages from


def _stream_start(source: FeedSource) -> int:
    """Where deriving resumes: the committed position, or (a store that was run by ``didban run`` until
    now, its outages derived as its results were stored) the newest result."""
    position = source.position(DERIVE_STREAM)
    if not position:
        position = source.newest()
        source.advance(DERIVE_STREAM, position)  # a crash before the first derivation resumes here too
    return position
