"""Every check's timeout on one timer.

``asyncio.timeout`` schedules and cancels a timer of the event loop for each check: against the
target farm with keep-alive that was 11 µs of a check's 100 µs of CPU. Checks with the same timeout
reach their deadlines in the order they started, so each timeout's deadlines wait in a queue, in
order; one timer is set for the earliest deadline of a check still running. A check costs a queue
append and pop, and the timer fires about once per timeout rather than once per check.

The semantics are ``asyncio.timeout``'s: a check past its deadline is cancelled and the block
raises ``TimeoutError``; a cancellation that is not the deadline's (the engine stopping) goes on.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from types import TracebackType

_RUNNING, _DONE, _EXPIRED = 0, 1, 2


class Deadline:
    """One check's deadline; ``async with`` it around the check."""

    __slots__ = ("_cancelling", "_owner", "_queue", "_state", "_task", "_timeout_s", "at")

    _task: asyncio.Task[object]
    _queue: deque[Deadline]

    def __init__(self, owner: Deadlines, timeout_s: float) -> None:
        self._owner, self._timeout_s = owner, timeout_s
        self.at, self._cancelling, self._state = math.inf, 0, _RUNNING

    async def __aenter__(self) -> Deadline:
        self._owner._enter(self, self._timeout_s)
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        state, self._state = self._state, _DONE
        queue = self._queue
        while queue and queue[0]._state != _RUNNING:  # the finished checks at the front leave the queue
            queue.popleft()
        if state == _EXPIRED and self._task.uncancel() <= self._cancelling and kind is asyncio.CancelledError:
            raise TimeoutError from error  # the deadline's own cancellation, and nobody else asked for one


class Deadlines:
    def __init__(self) -> None:
        self._queues: dict[float, deque[Deadline]] = {}  # timeout (s) → its running checks, earliest first
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def within(self, timeout_s: float) -> Deadline:
        return Deadline(self, timeout_s)

    def _enter(self, deadline: Deadline, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline is for a task")
        deadline.at = at = loop.time() + timeout_s
        deadline._task, deadline._cancelling, deadline._state = task, task.cancelling(), _RUNNING
        queue = self._queues.get(timeout_s)
        if queue is None:
            queue = self._queues[timeout_s] = deque()
        deadline._queue = queue
        queue.append(deadline)
        if at < self._timer_at:
            self._arm(loop, at)

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

