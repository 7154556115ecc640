"""Outage derivation (DESIGN.md §3), one row per rule; times in seconds for readability.

Notation: a string of results one interval (60 s) apart starting at t=0:
U up, D down, ? unknown, _ no result (a gap).
"""

from __future__ import annotations

import pytest

from core.model import Status
from sla_calc.derive import RunTracker, Transition, derive_segments, quorum_segments

INTERVAL = 60  # seconds
CODES = {"U": Status.UP, "D": Status.DOWN, "?": Status.UNKNOWN}


def results(pattern: str, interval: int = INTERVAL) -> list[tuple[int, Status]]:
    return [(i * interval * 1000, CODES[c]) for i, c in enumerate(pattern) if c != "_"]


def seconds(segments: list[tuple[int, int, bool]]) -> list[tuple[int, int, bool]]:
    return [(s // 1000, e // 1000, d) for s, e, d in segments]


def downtime(segments: list[tuple[int, int, bool]]) -> int:
    return sum(e - s for s, e, d in seconds(segments) if d)


ROWS = [
    # pattern, threshold, expected downtime seconds, why
    ("UUUU", 2, 0, "all up"),
    ("UDUU", 2, 0, "a single down is a blip below the threshold"),
    ("UDUU", 1, 60, "threshold 1: one down is an outage"),
    ("UDDU", 2, 120, "two downs: outage from the first down to the first up"),
    ("UDDDDU", 2, 240, "start is the first down of the run, not the one that crossed the threshold"),
    ("UDD?U", 2, 120, "unknown ends the run and covers nothing"),
    ("UD?DU", 2, 0, "unknown splits a run into two blips"),
    ("UDD__DU", 2, 120 + 60 + 60, "a gap does not end a run; each down covers at most two intervals"),
    ("UDD", 2, 60 + 120, "the last result covers two intervals, not more"),
    ("DDDD", 3, 3 * 60 + 120, "a run at the very start of the data"),
    ("UDDDU", 4, 0, "three downs under threshold four"),
]


@pytest.mark.parametrize(("pattern", "threshold", "expected", "why"), ROWS, ids=[r[3] for r in ROWS])
def test_downtime_follows_the_outage_rule(pattern: str, threshold: int, expected: int, why: str) -> None:
    assert downtime(derive_segments(results(pattern), INTERVAL * 1000, threshold)) == expected, why


def test_coverage_of_a_result_stops_at_the_next_one_or_two_intervals() -> None:
    segments = seconds(derive_segments([(0, Status.UP), (30_000, Status.UP), (400_000, Status.UP)], INTERVAL * 1000, 2))
    assert segments == [(0, 150, False), (400, 520, False)]


def test_unknown_is_missing_coverage_not_downtime() -> None:
    assert seconds(derive_segments(results("U??U"), INTERVAL * 1000, 2)) == [(0, 60, False), (180, 300, False)]


def test_tracker_opens_at_first_down_and_closes_at_first_up() -> None:
    tracker = RunTracker(INTERVAL * 1000, 2)
    transitions = [tracker.feed(ts, status) for ts, status in results("UDDDU")]
    assert transitions == [None, None, Transition("opened", 60_000), None, Transition("closed", 240_000)]


def test_tracker_closes_at_coverage_end_when_data_stopped() -> None:
    tracker = RunTracker(INTERVAL * 1000, 2)
    for ts, status in results("DD"):
        tracker.feed(ts, status)
    assert tracker.feed(1_000_000, Status.UP) == Transition("closed", 60_000 + 120_000)


def test_tracker_refuses_results_older_than_the_last() -> None:
    tracker = RunTracker(INTERVAL * 1000, 2)
    tracker.feed(120_000, Status.UP)
    assert not tracker.accepts(60_000)
    assert tracker.accepts(120_000)


QUORUM_ROWS = [
    # (location patterns, expected service downtime seconds, why)
    (["UDDDU"], 180, "one location: its own verdict"),
    (["UDDDU", "UUUUU"], 0, "one of two down is not a majority"),
    (["UDDDU", "UDDDU"], 180, "both down"),
    (["UDDDU", "UDDUU", "UUUUU"], 120, "two of three down while both are down"),
    (["UDDDU", "U???U"], 180, "a location with no verdict does not dilute the quorum"),
]


@pytest.mark.parametrize(("patterns", "expected", "why"), QUORUM_ROWS, ids=[r[2] for r in QUORUM_ROWS])
def test_a_service_is_down_when_a_majority_of_reporting_locations_say_so(
    patterns: list[str], expected: int, why: str
) -> None:
    per_location = [derive_segments(results(p), INTERVAL * 1000, 2) for p in patterns]
    assert downtime(quorum_segments(per_location)) == expected, why
