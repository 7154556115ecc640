"""The collector and the SQLite store, on a real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from collector.collector import Collector, ServicePolicy
from core.model import OutageEvent, ProbeResult, Status
from core.tracking import is_valid
from sla_calc.derive import derive_segments
from store.sql_store import SqliteStore

INTERVAL_MS = 60_000
POLICY = {"portal": ServicePolicy(INTERVAL_MS, 2)}
CODES = {"U": Status.UP, "D": Status.DOWN, "?": Status.UNKNOWN}


def results_for(pattern: str, service: str = "portal", location: str = "tabriz", start: int = 0) -> list[ProbeResult]:
    return [
        ProbeResult(service, location, start + i * INTERVAL_MS, CODES[c], 12.5,
                    None if c == "U" else "http_status")
        for i, c in enumerate(pattern)
    ]


async def collect(store: SqliteStore, results: list[ProbeResult]) -> tuple[Collector, list[OutageEvent]]:
    collector = Collector(store, POLICY, flush_seconds=0.01)
    events: list[OutageEvent] = []
    collector.subscribe(events.append)
    await collector.start()
    for result in results:
        collector.submit(result)
    await asyncio.wait_for(collector.stop(), 10)
    return collector, events


async def test_outage_opens_after_threshold_and_closes_at_first_up(db_path: Path) -> None:
    store = SqliteStore(db_path)
    _, events = await collect(store, results_for("UUDDDUU"))
    assert [e.kind for e in events] == ["outage_opened", "outage_closed"]
    opened, closed = events[0].outage, events[1].outage
    assert opened.start_ms == 2 * INTERVAL_MS  # the first down, not the one that crossed the threshold
    assert closed.end_ms == 5 * INTERVAL_MS  # the first up
    assert opened.tracking_code == closed.tracking_code and is_valid(opened.tracking_code)
    assert store.count_results() == 7
    assert [(o.start_ms, o.end_ms) for o in store.outages("portal")] == [(120_000, 300_000)]
    store.close()


async def test_blip_below_threshold_opens_nothing(db_path: Path) -> None:
    store = SqliteStore(db_path)
    _, events = await collect(store, results_for("UUDUU"))
    assert events == []
    assert store.outages() == []
    store.close()


async def test_results_in_scrambled_order_within_a_batch_derive_the_same_outage(db_path: Path) -> None:
    store = SqliteStore(db_path)
    scrambled = results_for("UDDDU")
    scrambled = [scrambled[i] for i in (3, 0, 4, 2, 1)]
    collector = Collector(store, POLICY, flush_seconds=0.5)
    await collector.start()
    for result in scrambled:
        collector.submit(result)
    await collector.stop()
    assert [(o.start_ms, o.end_ms) for o in store.outages("portal")] == [(60_000, 240_000)]
    store.close()


async def test_restart_resumes_an_open_outage_without_duplicating_it(db_path: Path) -> None:
    store = SqliteStore(db_path)
    _, first = await collect(store, results_for("UDDD"))
    assert [e.kind for e in first] == ["outage_opened"]
    store.close()

    reopened = SqliteStore(db_path)  # as after a restart
    _, second = await collect(reopened, results_for("DDUU", start=4 * INTERVAL_MS))
    assert [e.kind for e in second] == ["outage_closed"]
    assert second[0].outage.tracking_code == first[0].outage.tracking_code
    assert [(o.start_ms, o.end_ms) for o in reopened.outages()] == [(60_000, 360_000)]
    reopened.close()


async def test_status_shows_state_since_and_latency(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await collect(store, results_for("UUDDD"))
    state = store.states()["portal"]
    assert state.status is Status.DOWN
    assert state.since_ms == 2 * INTERVAL_MS
    assert state.last_latency_ms == 12.5
    assert state.open_outage is not None and state.open_outage.start_ms == 2 * INTERVAL_MS
    store.close()


async def test_a_locked_store_delays_results_and_loses_none(db_path: Path) -> None:
    store = SqliteStore(db_path, busy_timeout_s=0.05)
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    collector = Collector(store, POLICY, flush_seconds=0.01, retry_max_seconds=0.1)
    events: list[OutageEvent] = []
    collector.subscribe(events.append)
    await collector.start()
    for result in results_for("UDDDU"):
        collector.submit(result)
    await asyncio.sleep(0.5)
    assert collector.stats.store_errors > 0
    assert collector.stats.written == 0
    assert events == []  # nothing announced that the store does not hold
    blocker.execute("ROLLBACK")
    blocker.close()
    await asyncio.wait_for(collector.stop(), 10)
    assert store.count_results() == 5
    assert collector.stats.dropped == 0
    assert [e.kind for e in events] == ["outage_opened", "outage_closed"]
    store.close()


async def test_when_the_queue_bound_is_hit_drops_are_counted(db_path: Path) -> None:
    store = SqliteStore(db_path)
    collector = Collector(store, POLICY, queue_size=3)
    for result in results_for("UUUUU"):  # the writer is not running yet: the queue fills
        collector.submit(result)
    assert collector.stats.dropped == 2
    await collector.start()
    await collector.stop()
    assert store.count_results() == 3
    store.close()


def test_compaction_keeps_the_downtime_arithmetic(db_path: Path) -> None:
    pattern = "UUDDDUUDUU??UDDUUUU"
    store = SqliteStore(db_path)
    from store.contract import Batch

    store.write(Batch(results=results_for(pattern)))
    before = derive_segments([(r.ts_ms, r.status) for r in store.results("portal", 0, 10**13)], INTERVAL_MS, 2)
    removed = store.compact("portal", "tabriz", before_ms=15 * INTERVAL_MS, interval_ms=INTERVAL_MS, threshold=2)
    assert removed > 0
    remaining = store.results("portal", 0, 10**13)
    assert remaining[0].status is Status.UP  # the cut is at an up: no run straddles it
    after = store.segments("portal", "tabriz", 0, 10**13) + derive_segments(
        [(r.ts_ms, r.status) for r in remaining], INTERVAL_MS, 2
    )

    def measure(segments: list[tuple[int, int, bool]], down: bool) -> int:
        return sum(e - s for s, e, d in segments if d is down)

    assert measure(after, True) == measure(before, True)
    assert measure(after, False) == measure(before, False)
    store.close()


@pytest.mark.parametrize("service", ["portal"])
def test_results_read_back_exactly(db_path: Path, service: str) -> None:
    from store.contract import Batch

    store = SqliteStore(db_path)
    written = [*results_for("UD?", service=service),
               ProbeResult(service, "tabriz", 10**9, Status.UP, 3.0, None, "", 200, cert_days_left=42.5)]
    store.write(Batch(results=written))
    assert store.results(service, 0, 10**13) == written
    store.close()
