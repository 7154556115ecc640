"""Every check's timeout on one timer.

``asyncio.timeout`` schedules and cancels a timer of the event loop for each check: against the
target farm with keep-alive that was 11 µs of a check's 100 µs of CPU. Checks with the same timeout
reach their deadlines in the order they started, so each timeout's deadlines wait in a queue, in
order; one timer is set for the earliest deadline of a check still running. A check costs a queue
append and pop, and the timer fires about once per timeout rather than once per check.

The semantics are ``asyncio.timeout``'s: a check past its deadline is cancelled, and the
``CancelledError`` it gets is a timeout; a cancellation that is not the deadline's (the engine
stopping) goes on. Plain calls rather than ``async with``, which costs two more coroutines a check::

    deadline = deadlines.start(timeout_s)
    try:
        try:
            ...  # the check
        finally:
            cut = deadline.end()
    except asyncio.CancelledError:
        if not cut:
            raise
        ...  # timed out
"""

from __future__ import annotations

import asyncio
import math
from collections import deque

_RUNNING, _DONE, _EXPIRED = 0, 1, 2


class Deadline:
    """One check's deadline."""

    __slots__ = ("_cancelling", "_queue", "_state", "_task", "at")

    def __init__(self, at: float, task: asyncio.Task[object], queue: deque[Deadline]) -> None:
        self.at, self._task, self._queue = at, task, queue
        self._cancelling, self._state = task.cancelling(), _RUNNING

    def end(self) -> bool:
        """The check is over: whether its deadline cut it, and nobody else asked for a cancellation
        meanwhile (then its ``CancelledError`` is a timeout)."""
        state, self._state = self._state, _DONE
        queue = self._queue
        while queue and queue[0]._state != _RUNNING:  # the finished checks at the front leave the queue
            queue.popleft()
        return state == _EXPIRED and self._task.uncancel() <= self._cancelling


class Deadlines:
    def __init__(self) -> None:
        self._queues: dict[float, deque[Deadline]] = {}  # timeout (s) → its running checks, earliest first
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def start(self, timeout_s: float) -> Deadline:
        """A deadline ``timeout_s`` from now for the running task."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline is for a task")
        queue = self._queues.get(timeout_s)
        if queue is None:
            queue = self._queues[timeout_s] = deque()
        deadline = Deadline(loop.time() + timeout_s, task, queue)
        queue.append(deadline)
        if deadline.at < self._timer_at:
            self._arm(loop, deadline.at)
        return deadline

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = loop.call_at(at, self._expire, loop), at

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer, self._timer_at = None, math.inf
        now, earliest = loop.time(), math.inf
        for queue in self._queues.values():
            while queue:
                head = queue[0]
                if head._state == _RUNNING and head.at > now:
                    earliest = min(earliest, head.at)
                    break
                queue.popleft()
                if head._state == _RUNNING:
                    head._state = _EXPIRED
                    head._task.cancel()
        if earliest < math.inf:
            self._arm(loop, earliest)
