"""What every probe shares: its signature, what it returns, how it fails.

A probe only speaks its protocol.  The runner (``probes.runner``) owns the
clock, the timeout, the latency and the classification of errors, so a probe
never measures time and never decides whether an exception means ``down``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver

from core.model import ErrorClass
from probes.conditions import CheckFacts
from probes.deadlines import Deadlines


class ProbeFailure(Exception):
    """The target answered, but not as expected (wrong status, missing keyword, ...)."""

    def __init__(self, error: ErrorClass, detail: str, facts: CheckFacts | None = None) -> None:
        super().__init__(detail)
        self.error = error
        self.detail = detail
        self.facts = facts


@dataclass(slots=True)
class ProbeContext:
    """Shared, long-lived resources a probe may use."""

    http: aiohttp.ClientSession
    # The resolver the HTTP session uses (the resolver canaries ask it too).
    resolver: AbstractResolver | None = None
    # Placeholders the service's conditions use, so a probe can skip work
    # nobody reads (parsing the certificate of every HTTPS check, say).
    wants: frozenset[str] = field(default_factory=frozenset)
    # The checks' timeouts, on one timer for all of them.
    deadlines: Deadlines = field(default_factory=Deadlines)
    # False: every HTTP request through ClientSession.request (``probes.http_client`` says why not by default).
    direct_http: bool = True
    _variants: dict[frozenset[str], ProbeContext] = field(default_factory=dict, repr=False)

    def wanting(self, wants: frozenset[str]) -> ProbeContext:
        """The same resources for a check that reads ``wants`` (cached: checks run thousands of times)."""
        if wants == self.wants:
            return self
        variant = self._variants.get(wants)
        if variant is None:
            variant = self._variants[wants] = ProbeContext(self.http, self.resolver, wants, self.deadlines,
                                                           self.direct_http)
        return variant


ProbeFn = Callable[[Any, ProbeContext], Awaitable[CheckFacts]]
