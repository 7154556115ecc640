"""Canaries: the telecom clause.

The agreements promise availability only while the telecom infrastructure is
up.  A location's canaries are targets that should always answer; when every
one of them fails, the location's own network is down and its failed checks
prove nothing about the service: they become ``unknown`` (error
``probe_network``), never ``down``.

A failed check asks ``network_ok()`` before it is recorded.  The answer is
computed at most once per ``freshness_s`` however many checks ask (a single
flight), and a periodic round keeps it fresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from didban.model import Status
from probes.base import ProbeContext
from probes.runner import CompiledCheck, run_check

log = logging.getLogger("didban.canary")


class CanaryGuard:
    def __init__(
        self,
        canaries: list[CompiledCheck],
        context: ProbeContext,
        location: str,
        clock: Callable[[], float] = time.time,
        freshness_s: float = 5.0,
    ) -> None:
        self._canaries = canaries
        self._context = context
        self._location = location
        self._clock = clock
        self._freshness = freshness_s
        self._checked_at = float("-inf")
        self._ok = True
        self._flight: asyncio.Task[bool] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._canaries)

    @property
    def last_verdict(self) -> bool:
        return self._ok

    async def network_ok(self) -> bool:
        if not self._canaries:
            return True
        if time.monotonic() - self._checked_at < self._freshness:
            return self._ok
        return await self.check_now()

    async def check_now(self) -> bool:
        if not self._canaries:
            return True
        if self._flight is None or self._flight.done():
            self._flight = asyncio.create_task(self._round())
        return await asyncio.shield(self._flight)

    async def _round(self) -> bool:
        outcomes = await asyncio.gather(
            *(run_check(c, self._context, self._location, self._clock) for c in self._canaries)
        )
        ok = any(o.result.status is Status.UP for o in outcomes)
        if ok != self._ok:
            if ok:
                log.warning("location %s: network back (a canary answers)", self._location)
            else:
                log.error("location %s: every canary failed; failed checks are recorded as unknown",
                          self._location)
        self._ok = ok
        self._checked_at = time.monotonic()
        return ok
