"""The store's upkeep: derived segments as results age, and retention.

Functions of (config, store, …) like the month jobs, so the engine runs them on a store connection of
their own: a store opened for the job sees every (service, location) that any writer stored (another
center, an agent's backlog), where a long-lived store's caches know only what it wrote or read at its
start; and the collector's thread is not held while they run.
"""

from __future__ import annotations

from core.config import DidbanConfig
from store.contract import Store


def materialize(config: DidbanConfig, store: Store, until_ms: int) -> int:
    """Derived segments stored up to ``until_ms``; how many were written."""
    written = 0
    for _, service in config.services():
        for location in store.locations_of(service.id):
            written += store.materialize(service.id, location, until_ms, int(service.interval_seconds * 1000),
                                         service.failure_threshold)
    return written


def compact(config: DidbanConfig, store: Store, before_ms: int) -> int:
    """Raw results older than ``before_ms`` folded into run-length segments; how many results were removed."""
    removed = 0
    for _, service in config.services():
        for location in store.locations_of(service.id):
            removed += store.compact(service.id, location, before_ms, int(service.interval_seconds * 1000),
                                     service.failure_threshold)
    return removed
