"""Several locations, one verdict: the collector's online outages against the monthly maths, case by case.

Each row gives every location's results, one character per interval (U up, D down, ? unknown — the
location's own network is down —, a space: nothing arrived), fed to a real collector on a real SQLite
file in the order they would arrive, and the outages expected.  The same results through the monthly
maths (``derive_segments`` per location, then ``quorum_segments``) must give the same downtime: one
rule, ``sla_calc.derive.quorum_down``, in both.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from collector.collector import Collector, ServicePolicy
from core.model import ProbeResult, Status
from sla_calc.derive import derive_segments, quorum_segments
from store.sql_store import SqliteStore

I = 60_000  # noqa: E741 (the interval, in ms: the tables read in intervals)
CODES = {"U": Status.UP, "D": Status.DOWN, "?": Status.UNKNOWN}

CASES = [
    # name, {location: pattern}, locations whose results arrive late (after the others'), outages in intervals
    ("one location of three down: no outage", {"a": "UUDDDDUU", "b": "UUUUUUUU", "c": "UUUUUUUU"}, (), []),
    ("two of three down: from when the second went down", {"a": "UUDDDDUU", "b": "UUUDDDUU", "c": "UUUUUUUU"}, (),
     [(3, 6)]),
    ("all three down", {"a": "UUDDDUUU", "b": "UUDDDUUU", "c": "UUDDDUUU"}, (), [(2, 5)]),
    ("a blip at two locations is not an outage", {"a": "UUDUUU", "b": "UUDUUU", "c": "UUUUUU"}, (), []),
    ("a silent location abstains: the one still reporting decides, from when the other's results stopped "
     "covering", {"a": "UUDDDDDD", "b": "UU      "}, (), [(3, None)]),
    ("a location whose own network is down abstains and never makes downtime",
     {"a": "UU????UU", "b": "UUUUUUUU", "c": "UUUUUUUU"}, (), []),
    ("one down, one up, one whose network is down: no majority of those reporting",
     {"a": "UUDDDDUU", "b": "UU????UU", "c": "UUUUUUUU"}, (), []),
    ("two down while the third's network is down: two of the two reporting",
     {"a": "UUDDDDUU", "b": "UUDDDDUU", "c": "UU????UU"}, (), [(2, 6)]),
    ("a partitioned agent's late batch, down where the others were up, changes nothing",
     {"a": "UUUUUUUUUU", "b": "UUUUUUUUUU", "c": "UUDDDDUUUU"}, ("c",), []),
    ("two partitioned agents' late batches change history: the outage they show is recorded, closed",
     {"a": "UUUUUUUUUU", "b": "UUDDDDUUUU", "c": "UUDDDDUUUU"}, ("b", "c"), [(2, 6)]),
]


def results_of(patterns: dict[str, str], late: tuple[str, ...]) -> list[ProbeResult]:
    """In arrival order: interval by interval across the live locations, then the late ones' batches."""
    def of(location: str) -> list[ProbeResult]:
        return [ProbeResult("portal", location, k * I, CODES[c], 10.0, None if c == "U" else "http_status")
                for k, c in enumerate(patterns[location]) if c != " "]

    live = sorted((r for loc in patterns if loc not in late for r in of(loc)), key=lambda r: r.ts_ms)
    return live + [r for loc in late for r in of(loc)]


def month_downtime(results: list[ProbeResult]) -> list[tuple[int, int]]:
    per_location = []
    for location in sorted({r.location for r in results}):
        mine = sorted((r.ts_ms, r.status) for r in results if r.location == location)
        per_location.append(derive_segments(mine, I, 2))
    return [(start, end) for start, end, down in quorum_segments(per_location) if down]


@pytest.mark.parametrize(("name", "patterns", "late", "expected"), CASES, ids=[c[0] for c in CASES])
async def test_online_outages_follow_the_quorum_of_the_locations_reporting(
        db_path: Path, name: str, patterns: dict[str, str], late: tuple[str, ...],
        expected: list[tuple[int, int | None]]) -> None:
    store = SqliteStore(db_path)
    collector = Collector(store, {"portal": ServicePolicy(I, 2)}, flush_seconds=0.01)
    await collector.start()
    results = results_of(patterns, late)
    for result in results:
        collector.submit(result)
        await asyncio.sleep(0)
    await asyncio.wait_for(collector.stop(), 10)
    online = [(o.start_ms // I, None if o.end_ms is None else o.end_ms // I) for o in store.outages("portal")]
    store.close()
    assert online == expected, name
    # The monthly maths from the same results: the same downtime (an open outage runs to the end of the data).
    month = [(start // I, end // I) for start, end in month_downtime(results)]
    data_end = max(r.ts_ms for r in results) // I + 2
    assert month == [(start, data_end if end is None else end) for start, end in expected], name
