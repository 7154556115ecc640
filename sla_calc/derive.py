"""From check results to downtime: DESIGN.md §3 "Outage", as pure functions.

Result *i* of one (service, location) covers ``[ts_i, min(ts_{i+1}, ts_i + 2 ×
interval))``: a result never vouches for more than two intervals, so a
stopped monitor cannot invent downtime.  A *run* is a maximal sequence of
consecutive ``down`` results (``up`` or ``unknown`` ends it, a gap does not);
a run of at least ``failure_threshold`` results is downtime over the union of
its results' coverage, a shorter one is a blip.  ``unknown`` covers nothing.

``RunTracker`` is the one state machine behind both uses: the collector feeds
it online, result by result, to open and close outages; ``derive_segments``
feeds it offline to compute a month.  Because it is the same code the two can
never disagree.  Times are integer milliseconds since the epoch (UTC).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from core.model import Status

UP, DOWN, UNKNOWN = Status.UP, Status.DOWN, Status.UNKNOWN


@dataclass(slots=True)
class TrackerState:
    """What must survive a restart for one (service, location)."""

    last_ts_ms: int | None = None
    run_start_ms: int | None = None  # first down of the current run
    run_length: int = 0
    run_last_ms: int | None = None  # last down of the current run
    open: bool = False  # the run reached the threshold: an outage is open


@dataclass(frozen=True, slots=True)
class Transition:
    kind: str  # "opened" | "closed"
    at_ms: int  # opened: first down of the run; closed: end of its coverage


class RunTracker:
    """Online outage derivation for one (service, location).

    Feed results in timestamp order.  A result older than the last one fed is
    refused (``feed`` returns False): the online view only moves forward, and
    the SLA figures, which sort everything first, still count it.
    """

    __slots__ = ("abstained_at_ms", "interval_ms", "state", "threshold")

    def __init__(self, interval_ms: int, threshold: int, state: TrackerState | None = None) -> None:
        self.interval_ms = interval_ms
        self.threshold = threshold
        self.state = state if state is not None else TrackerState()
        # Since when the location's results have been unknown (its own trouble): it covers nothing.
        self.abstained_at_ms: int | None = None

    def reporting(self, now_ms: int, window_ms: int) -> bool:
        """Whether this location's latest result still covers ``now_ms`` (it counts in a quorum)."""
        last = self.state.last_ts_ms
        return self.abstained_at_ms is None and last is not None and now_ms < last + window_ms

    def coverage_end(self, window_ms: int) -> int:
        """Where this location's coverage stopped: its first unknown, or two intervals after its last result."""
        if self.abstained_at_ms is not None:
            return self.abstained_at_ms
        return (self.state.last_ts_ms or 0) + window_ms

    def accepts(self, ts_ms: int) -> bool:
        last = self.state.last_ts_ms
        return last is None or ts_ms >= last

    def feed(self, ts_ms: int, status: Status) -> Transition | None:
        state = self.state
        state.last_ts_ms = ts_ms
        if status is UNKNOWN:
            if self.abstained_at_ms is None:
                self.abstained_at_ms = ts_ms
        else:
            self.abstained_at_ms = None
        if status is DOWN:
            if state.run_length == 0:
                state.run_start_ms = ts_ms
            state.run_length += 1
            state.run_last_ms = ts_ms
            if state.run_length == self.threshold and not state.open:
                state.open = True
                assert state.run_start_ms is not None
                return Transition("opened", state.run_start_ms)
            return None
        transition = None
        if state.open:
            assert state.run_last_ms is not None
            transition = Transition("closed", min(ts_ms, state.run_last_ms + 2 * self.interval_ms))
        state.run_start_ms = state.run_last_ms = None
        state.run_length = 0
        state.open = False
        return transition


# A segment is (start_ms, end_ms, down): a covered interval, counted as
# downtime or not.  Plain tuples keep a month of one-second results cheap.
Segment = tuple[int, int, bool]


def derive_segments(
    results: Iterable[tuple[int, Status]], interval_ms: int, threshold: int
) -> list[Segment]:
    """Covered intervals of one (service, location), from results sorted by time.

    Adjacent intervals with the same verdict are merged, so a steady month is
    a handful of segments whatever the check frequency.
    """
    tracker = RunTracker(interval_ms, threshold)
    segments: list[Segment] = []
    run: list[tuple[int, int]] = []  # coverage of the current run's results
    run_counted = False

    def emit(start: int, end: int, down: bool) -> None:
        if end <= start:
            return
        if segments and segments[-1][2] == down and segments[-1][1] == start:
            segments[-1] = (segments[-1][0], end, down)
        else:
            segments.append((start, end, down))

    for ts_ms, status, end_ms in _with_coverage(results, 2 * interval_ms):
        transition = tracker.feed(ts_ms, status)
        if status is DOWN:
            run.append((ts_ms, end_ms))
            run_counted = run_counted or transition is not None  # the tracker opened an outage
            continue
        for start, end in run:  # the run ended: its verdict is known now
            emit(start, end, run_counted)
        run.clear()
        run_counted = False
        if status is UP:
            emit(ts_ms, end_ms, False)
    for start, end in run:
        emit(start, end, run_counted)
    return segments


def _with_coverage(
    results: Iterable[tuple[int, Status]], cap_ms: int
) -> Iterable[tuple[int, Status, int]]:
    """Each result with the end of its coverage: the next result, at most ``cap_ms`` later."""
    iterator = iter(results)
    previous = next(iterator, None)
    while previous is not None:
        following = next(iterator, None)
        ts_ms, status = previous
        end = ts_ms + cap_ms if following is None else min(following[0], ts_ms + cap_ms)
        yield ts_ms, status, end
        previous = following


def unrecorded_downtime(combined: Sequence[Segment], recorded: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The runs of downtime in ``combined`` that no recorded outage overlaps (late results showed them)."""
    runs: list[tuple[int, int]] = []
    for start, end, down in combined:
        if not down:
            continue
        if runs and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], end)
        else:
            runs.append((start, end))
    return [(s, e) for s, e in runs if not any(rs < e and s < re for rs, re in recorded)]


def quorum_down(down: int, reporting: int, quorum: float = 0.5) -> bool:
    """The quorum rule, online and in the month alike: more than ``quorum`` of the locations reporting say down.

    The default, 0.5, is a strict majority; a location that is not reporting does not count either way.
    """
    return reporting > 0 and down > quorum * reporting


def quorum_needs(reporting: int, quorum: float = 0.5) -> int:
    """How many of ``reporting`` locations must say down for ``quorum_down``."""
    return int(quorum * reporting) + 1


def quorum_segments(per_location: Sequence[Sequence[Segment]], quorum: float = 0.5) -> list[Segment]:
    """Combine locations: down at an instant when more than ``quorum`` of those reporting say down.

    With one location this returns its segments unchanged.
    """
    if len(per_location) == 1:
        return list(per_location[0])
    events: list[tuple[int, int, int]] = []  # (time, delta reporting, delta down)
    for segments in per_location:
        for start, end, down in segments:
            events.append((start, 1, 1 if down else 0))
            events.append((end, -1, -1 if down else 0))
    events.sort()
    combined: list[Segment] = []
    reporting = down_count = 0
    index = 0
    while index < len(events):
        moment = events[index][0]
        while index < len(events) and events[index][0] == moment:
            reporting += events[index][1]
            down_count += events[index][2]
            index += 1
        if index < len(events) and reporting > 0:
            is_down = quorum_down(down_count, reporting, quorum)
            next_moment = events[index][0]
            if combined and combined[-1][1] == moment and combined[-1][2] == is_down:
                combined[-1] = (combined[-1][0], next_moment, is_down)
            else:
                combined.append((moment, next_moment, is_down))
    return combined
