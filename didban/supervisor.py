"""One small supervisor for every long-lived task and scheduled job.

A background task that dies silently is worse than a crash: the process
looks alive while notices wait forever.  Under the supervisor a failure is
logged once with its cause, counted (``didban_task_restarts_total{task}``),
reported on ``/readyz`` while it lasts, and the task restarts with capped
exponential backoff and jitter.  A task that has run ``healthy_after_s``
since its last restart is healthy again.  Scheduled jobs (APScheduler) are
wrapped the same way: the schedule itself is their retry.

A failure because the store is unavailable is logged and counted like any
other, but not reported as the task's own: the store's trouble has one
reporter on ``/readyz`` (the collector, after ``unavailable_grace_seconds``),
and a job must not keep the service "not ready" for its whole interval after
the store is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import random
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

from store.contract import StoreUnavailable

log = logging.getLogger("didban.supervisor")
_T = TypeVar("_T")


@contextlib.contextmanager
def stacks_if_slower_than(seconds: float) -> Iterator[None]:
    """Where everything waits, to stderr, if the block is still running after ``seconds`` (it runs on).

    Each part of a stop is bounded; one that hangs all the same is a bug to find, and the person who
    runs ``systemctl stop`` (or a test) sees where instead of a process that never ends: every task's
    chain of awaits, and every thread's stack should the event loop itself be blocked.
    """
    told = asyncio.get_running_loop().call_later(seconds, _tell_tasks, seconds)
    try:
        faulthandler.dump_traceback_later(seconds + 1)
        dumping = True
    except (ValueError, OSError, AttributeError):  # stderr is no file (embedded, captured): threads untold
        dumping = False
    try:
        yield
    finally:
        told.cancel()
        if dumping:
            faulthandler.cancel_dump_traceback_later()


def _tell_tasks(seconds: float) -> None:
    lines = [f"still stopping after {seconds:.0f} s; where each task waits:"]
    for task in asyncio.all_tasks():
        lines.append(f"  task {task.get_name()}:")
        awaited: Any = task.get_coro()
        while awaited is not None:  # the coroutine, what it awaits, and so on down to the innermost await
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is not None:
                lines.append(f"    {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    print("\n".join(lines), file=sys.stderr, flush=True)


class Supervisor:
    def __init__(self, metrics: Any = None, *, initial_s: float = 1.0, max_s: float = 60.0,
                 healthy_after_s: float = 10.0) -> None:
        self.metrics = metrics
        self.initial_s, self.max_s, self.healthy_after_s = initial_s, max_s, healthy_after_s
        self.failing: dict[str, str] = {}  # task → the cause of its last failure, while it lasts
        self._store_waits: dict[str, str] = {}  # task → the store trouble it last met (logged once per cause)
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def problems(self) -> list[str]:
        return [f"task {name} failing: {cause}" for name, cause in sorted(self.failing.items())]

    def _failed(self, name: str, exc: BaseException) -> None:
        cause = f"{type(exc).__name__}: {exc}"[:300]
        if self.metrics is not None:
            self.metrics.task_restarts.labels(name).inc()
        if isinstance(exc, StoreUnavailable):
            if self._store_waits.get(name) != cause:
                log.warning("task %s waits for the store (%s); it restarts with backoff", name, cause)
            self._store_waits[name] = cause
            return
        if self.failing.get(name) != cause:  # once per distinct cause, not once per retry
            log.error("task %s failed (%s); it restarts with backoff", name, cause, exc_info=exc)
        self.failing[name] = cause

    def _recovered(self, name: str) -> None:
        self.failing.pop(name, None)
        self._store_waits.pop(name, None)

    # -- long-lived tasks ---------------------------------------------------------------

    def spawn(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> asyncio.Task[None]:
        """Run ``run()`` until it returns; restart it when it raises."""
        task = asyncio.create_task(self._keep(name, run), name=f"didban-{name}")
        self._tasks[name] = task
        return task

    async def _keep(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        delay = self.initial_s
        while True:
            started = time.monotonic()
            healthy = asyncio.get_running_loop().call_later(self.healthy_after_s, self._recovered, name)
            try:
                await run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed(name, exc)
            finally:
                healthy.cancel()
            if time.monotonic() - started >= self.healthy_after_s:
                delay = self.initial_s  # it had recovered: a new failure starts the backoff again
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.max_s)

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks.clear()

    # -- scheduled jobs -------------------------------------------------------------------

    def job(self, name: str, run: Callable[[], Awaitable[_T]]) -> Callable[[], Awaitable[_T | None]]:
        """A scheduled job that logs, counts and reports its failures instead of dying with them."""

        async def supervised() -> _T | None:
            try:
                result = await run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed(name, exc)
                return None
            self._recovered(name)
            return result

        return supervised
