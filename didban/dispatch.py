"""Checks on time: a heap of due times and a fixed pool of workers.

Why not one APScheduler job per check: at 5,000 checks a second, APScheduler's own dispatch
(the job store's updates, next-run arithmetic, events, one task per run) cost about 11 % of the
engine's time, and each check also waited on a semaphore. Here a check costs a heap push and pop
and a hand-off to a waiting worker (a deque and a future: 1–2 % less of the core than an
asyncio.Queue); one already due again when it ends (an overloaded engine) goes straight behind the
others that wait. APScheduler keeps the calendar jobs (month close, retention, notices).

The rules are the scheduler's: runs are ``anchor + k × interval``; a service never has two checks
at once (its next run is scheduled when its check ends); a run more than a whole interval late is
merged with the ones it missed (coalesce), so an overloaded engine starts checks late, never
drops them, and catches up without a burst. ``oldest_wait`` says how late the oldest due check is.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from probes.runner import CompiledCheck


@dataclass(frozen=True, slots=True)
class ScheduledCheck:
    check: CompiledCheck
    interval_s: float
    anchor: float  # epoch seconds of the first run; runs are anchor + k × interval


RunCheck = Callable[[ScheduledCheck, float], Awaitable[None]]  # (the check, when it was due)


def next_run(job: ScheduledCheck, due: float, now: float) -> float:
    """When a check that was due at ``due`` and ended at ``now`` runs next."""
    following = due + job.interval_s
    if following > now - job.interval_s:
        return following
    # More than a whole interval behind: the runs missed meanwhile are one run, now's slot.
    return job.anchor + math.floor((now - job.anchor) / job.interval_s) * job.interval_s


class Dispatcher:
    def __init__(self, run: RunCheck, workers: int, clock: Callable[[], float]) -> None:
        self._run, self._workers, self._clock = run, workers, clock
        self._heap: list[tuple[float, int, ScheduledCheck]] = []
        self._order = itertools.count()  # ties in due time keep the order they were added in
        self._ready: deque[tuple[float, ScheduledCheck]] = deque()  # due, not started, oldest first
        self._idle: deque[asyncio.Future[tuple[float, ScheduledCheck]]] = deque()  # workers waiting for a check
        self._tasks: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[None]] = set()
        self._wake: asyncio.Future[None] | None = None
        self._wake_at = math.inf
        self._stopping = False

    def add(self, job: ScheduledCheck) -> None:
        self._push(job.anchor, job)

    @property
    def running(self) -> bool:
        return bool(self._tasks) and not self._stopping

    @property
    def scheduled(self) -> int:
        return len(self._heap) + len(self._ready) + len(self._busy)

    @property
    def waiting(self) -> int:
        """Checks that are due and not started: above zero for long, the engine is overloaded."""
        return len(self._ready)

    def oldest_wait(self) -> float:
        """Seconds the oldest due check has waited to start (0 when none waits)."""
        return max(0.0, self._clock() - self._ready[0][0]) if self._ready else 0.0

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._dispatch(), name="dispatch")]
        self._tasks += [asyncio.create_task(self._work(), name=f"check-worker-{i}") for i in range(self._workers)]

    async def stop(self, grace_s: float) -> None:
        """No new checks; the checks in flight get ``grace_s`` to finish (and be stored), then are cancelled."""
        self._stopping = True
        for task in self._tasks:
            if task not in self._busy:
                task.cancel()
        if self._busy:
            await asyncio.wait(set(self._busy), timeout=grace_s)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def _push(self, due: float, job: ScheduledCheck) -> None:
        heapq.heappush(self._heap, (due, next(self._order), job))
        if due < self._wake_at and self._wake is not None and not self._wake.done():
            self._wake.set_result(None)  # the dispatcher sleeps past this one: wake it now

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        heap, ready, idle = self._heap, self._ready, self._idle
        while True:
            now = self._clock()
            while heap and heap[0][0] <= now:
                due, _, job = heapq.heappop(heap)
                while idle and idle[0].done():  # a worker cancelled while it waited
                    idle.popleft()
                if idle:
                    idle.popleft().set_result((due, job))  # straight to a waiting worker
                else:
                    ready.append((due, job))
            self._wake_at = heap[0][0] if heap else math.inf
            self._wake = loop.create_future()
            # Nothing scheduled (every check running or waiting to): only a push wakes it, no timer is set
            # and cancelled.
            timer = loop.call_later(min(self._wake_at - now, 60.0), _settle, self._wake) if heap else None
            await self._wake
            if timer is not None:
                timer.cancel()

    async def _work(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        ready, idle = self._ready, self._idle
        while not self._stopping:
            if ready:
                due, job = ready.popleft()
            else:
                handed: asyncio.Future[tuple[float, ScheduledCheck]] = loop.create_future()
                idle.append(handed)
                due, job = await handed
            self._busy.add(task)
            try:
                await self._run(job, due)
            finally:
                self._busy.discard(task)
                if not self._stopping:
                    now = self._clock()
                    following = next_run(job, due, now)
                    if following <= now and not idle:
                        # Due already (an overloaded engine): behind the others that wait, without waking
                        # the dispatcher to move it there (a task step per check).
                        ready.append((following, job))
                    else:
                        self._push(following, job)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
