"""How the monitor knows it stalled.

A heartbeat on the event loop wakes every ``tick_s``; when it wakes more
than ``bound_s`` late, the loop was stalled (a long synchronous job, the
machine starved of CPU) and the stall is remembered for a while.  A check
whose run overlaps a stall, or that is still waiting for the heartbeat when
it finishes, measured the monitor, not the service: the runner's caller
records it as ``unknown`` (``probe_overload``), never as ``down``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque


class LoopWatch:
    def __init__(self, bound_s: float = 0.25, tick_s: float = 0.05, keep_s: float = 600.0) -> None:
        self.bound_s = bound_s
        self.tick_s = tick_s
        self.keep_s = keep_s
        self.stalls: deque[tuple[float, float]] = deque()  # (start, end) in time.monotonic()
        self._last_beat = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._last_beat = time.monotonic()
        self._task = asyncio.create_task(self._beat(), name="didban-loopwatch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            now = time.monotonic()
            late = now - self._last_beat - self.tick_s
            if late > self.bound_s:
                self.stalls.append((self._last_beat + self.tick_s, now))
            while self.stalls and self.stalls[0][1] < now - self.keep_s:
                self.stalls.popleft()
            self._last_beat = now

    def stalled_during(self, start: float, end: float | None = None) -> bool:
        """Whether the loop stalled beyond the bound between ``start`` and ``end`` (monotonic seconds)."""
        end = time.monotonic() if end is None else end
        if self._task is not None and end - self._last_beat > self.bound_s + self.tick_s:
            return True  # a stall still under way: the heartbeat has not run since
        return any(s < end and e > start for s, e in reversed(self.stalls))
