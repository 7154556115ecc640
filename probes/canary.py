"""Canaries: the telecom clause, for the network and for the resolver.

The agreements promise availability only while the telecom infrastructure is
up.  A location's canaries are targets that should always answer:

- **network canaries** (http, tcp, icmp, or dns with its own nameserver):
  when every one fails, the location's network is down and its failed checks
  prove nothing about the services: they become ``unknown`` (error
  ``probe_network``), never ``down``;
- **resolver canaries** (``dns`` without a nameserver: a name resolved by the
  probes' own resolver): when every one fails, the location's ``dns``-class
  failures are the monitor's own and become ``unknown`` the same way.  A
  broken local resolver must not charge downtime to every agency while the
  network canaries still connect.

A failed check asks before it is recorded.  Each answer is computed at most
once per ``freshness_s`` however many checks ask (a single flight), and a
periodic round keeps both fresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from core.model import Status
from probes.base import ProbeContext
from probes.runner import CompiledCheck, run_check

log = logging.getLogger("didban.canary")


class _Group:
    """One kind of canary: "some answers" computed once per freshness period, in a single flight."""

    def __init__(self, what: str, canaries: list[CompiledCheck], context: ProbeContext, location: str,
                 clock: Callable[[], float], freshness_s: float) -> None:
        self._what, self._canaries, self._context = what, canaries, context
        self._location, self._clock, self._freshness = location, clock, freshness_s
        self._checked_at = float("-inf")
        self.ok = True
        self._flight: asyncio.Task[bool] | None = None

    async def fresh(self) -> bool:
        if not self._canaries:
            return True
        if time.monotonic() - self._checked_at < self._freshness:
            return self.ok
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
        if ok != self.ok:
            if ok:
                log.warning("location %s: %s back (a canary answers)", self._location, self._what)
            else:
                log.error("location %s: every %s canary failed; the failures it explains are recorded as unknown",
                          self._location, self._what)
        self.ok = ok
        self._checked_at = time.monotonic()
        return ok


class CanaryGuard:
    def __init__(
        self,
        canaries: list[CompiledCheck],
        context: ProbeContext,
        location: str,
        clock: Callable[[], float] = time.time,
        freshness_s: float = 5.0,
        resolver_canaries: list[CompiledCheck] | None = None,
    ) -> None:
        self._network = _Group("network", canaries, context, location, clock, freshness_s)
        self._resolver = _Group("resolver", resolver_canaries or [], context, location, clock, freshness_s)

    async def network_ok(self) -> bool:
        return await self._network.fresh()

    async def resolver_ok(self) -> bool:
        return await self._resolver.fresh()

    async def check_now(self) -> bool:
        network, resolver = await asyncio.gather(self._network.check_now(), self._resolver.check_now())
        return network and resolver
