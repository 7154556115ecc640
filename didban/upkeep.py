"""The store's upkeep: derived segments as results age, and retention.

Functions of (config, store, …) like the month jobs, so the engine runs them on a store connection of
their own: a store opened for the job sees every (service, location) that any writer stored (another
center, an agent's backlog), where a long-lived store's caches know only what it wrote or read at its
start; and the collector's thread is not held while they run.
"""

from __future__ import annotations

from collections.abc import Callable

from core.config import DidbanConfig
from store.contract import Store


def materialize(config: DidbanConfig, store: Store, until_ms: int) -> int:
    """Derived segments stored up to ``until_ms``; how many were written."""
    return _each_pair(config, store, store.materialize, until_ms)


def compact(config: DidbanConfig, store: Store, before_ms: int) -> int:
    """Raw results older than ``before_ms`` folded into run-length segments; how many results were removed."""
    return _each_pair(config, store, store.compact, before_ms)


def _each_pair(config: DidbanConfig, store: Store, fold: Callable[[str, str, int, int, int], int], at_ms: int) -> int:
    """``fold`` over every (service, location) the store holds, with the service's interval and threshold."""
    total = 0
    for _, service in config.services():
        for location in store.locations_of(service.id):
            total += fold(service.id, location, at_ms, int(service.interval_seconds * 1000), service.failure_threshold)
    return total
