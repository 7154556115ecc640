"""The store interface.  SQLite (``collector.sqlite_store``) is the embedded
default and the system of record for SLA settlement; other backends implement
the same protocol and pass the same contract tests.

Methods are synchronous: the collector runs them on its own writer thread so
the event loop never waits on disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from core.model import Outage, ProbeResult, ServiceState
from sla_calc.derive import Segment, TrackerState


@dataclass(frozen=True, slots=True)
class OutageChange:
    """Open (``end_ms`` None) or close an outage of a service, in batch order."""

    service: str
    at_ms: int
    opening: bool
    error: str | None = None


@dataclass(slots=True)
class Batch:
    """What the collector commits in one transaction, so results and the
    outage state derived from them are never out of step after a crash."""

    results: list[ProbeResult] = field(default_factory=list)
    trackers: dict[tuple[str, str], TrackerState] = field(default_factory=dict)
    changes: list[OutageChange] = field(default_factory=list)


class StoreUnavailable(Exception):
    """The store cannot take writes now (locked, disk full, I/O error); retry later."""


class Store(Protocol):
    def write(self, batch: Batch) -> list[Outage]:
        """Commit a batch atomically; return the outages it opened or closed, as stored."""
        ...

    def tracker_states(self) -> dict[tuple[str, str], TrackerState]: ...

    def open_outages(self) -> dict[str, Outage]: ...

    def results(self, service: str, start_ms: int, end_ms: int) -> list[ProbeResult]: ...

    def count_results(self) -> int: ...

    def missing(self, results: Sequence[ProbeResult]) -> list[ProbeResult]:
        """Those of ``results`` not stored yet (replaying a journal twice stores each result once)."""
        ...

    def outages(
        self, service: str | None = None, start_ms: int | None = None, end_ms: int | None = None
    ) -> list[Outage]: ...

    def states(self) -> dict[str, ServiceState]: ...

    def segments(self, service: str, location: str, start_ms: int, end_ms: int) -> list[Segment]:
        """Compacted history of (service, location) overlapping [start, end)."""
        ...

    def compact(self, service: str, location: str, before_ms: int, interval_ms: int, threshold: int) -> int:
        """Turn raw results older than ``before_ms`` into segments; return rows removed."""
        ...

    def locations_of(self, service: str) -> Sequence[str]: ...

    def close(self) -> None: ...
