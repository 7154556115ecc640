"""The check dispatcher: runs on the anchor's grid, never two at once per service, late rather than dropped."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from didban.dispatch import Dispatcher, ScheduledCheck, next_run
from probes.runner import compile_check


def job(service: str, interval: float, anchor: float) -> ScheduledCheck:
    return ScheduledCheck(compile_check(service, [], [], 1.0), interval, anchor)


class Recorder:
    """A check that takes ``seconds`` and records (service, due, started, ended)."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.runs: list[tuple[str, float, float, float]] = []

    async def __call__(self, scheduled: ScheduledCheck, due: float) -> None:
        started = time.time()
        await asyncio.sleep(self.seconds)
        self.runs.append((scheduled.check.service, due, started, time.time()))


async def test_runs_follow_the_anchor_grid_on_time() -> None:
    recorder = Recorder()
    dispatcher = Dispatcher(recorder, workers=4, clock=time.time)
    anchor = time.time() + 0.05
    for name in ("a", "b", "c"):
        dispatcher.add(job(name, 0.2, anchor))
    await dispatcher.start()
    await asyncio.sleep(1.0)
    await dispatcher.stop(grace_s=1)
    for name in ("a", "b", "c"):
        dues = [due for service, due, _, _ in recorder.runs if service == name]
        assert len(dues) >= 4
        assert all(abs((due - anchor) / 0.2 - round((due - anchor) / 0.2)) < 1e-6 for due in dues)  # the grid
        assert dues == sorted(set(dues))  # each slot once
    assert max(started - due for _, due, started, _ in recorder.runs) < 0.1  # on time


async def test_a_service_never_has_two_checks_at_once_and_missed_runs_merge() -> None:
    recorder = Recorder(seconds=0.35)  # longer than the interval: runs would overlap under a naive timer
    dispatcher = Dispatcher(recorder, workers=4, clock=time.time)
    dispatcher.add(job("slow", 0.1, time.time()))
    await dispatcher.start()
    await asyncio.sleep(1.2)
    await dispatcher.stop(grace_s=1)
    runs = [(started, ended) for _, _, started, ended in recorder.runs]
    assert len(runs) >= 3
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(runs))  # one at a time
    assert len(runs) <= 4  # the slots missed while it ran were merged, not queued up as a burst


async def test_when_more_is_due_than_the_workers_can_run_checks_start_late_not_dropped() -> None:
    recorder = Recorder(seconds=0.05)
    dispatcher = Dispatcher(recorder, workers=1, clock=time.time)  # 20 checks/s at most
    anchor = time.time()
    for i in range(40):
        dispatcher.add(job(f"s{i}", 0.5, anchor))  # 80 checks/s due
    await dispatcher.start()
    await asyncio.sleep(1.0)
    assert dispatcher.waiting > 0 and dispatcher.oldest_wait() > 0.5  # the overload is visible
    await asyncio.sleep(1.5)
    await dispatcher.stop(grace_s=1)
    checked = {service for service, _, _, _ in recorder.runs}
    assert checked == {f"s{i}" for i in range(40)}  # every service got its turn, in due order
    order = [service for service, _, _, _ in recorder.runs]
    assert order[:40] == [f"s{i}" for i in range(40)]
    # Overdue again when they end, the later ones queue behind the earlier ones: the second round keeps the order.
    assert order[40:50] == [f"s{i}" for i in range(10)]


async def test_stop_lets_checks_in_flight_finish_and_starts_no_new_one() -> None:
    recorder = Recorder(seconds=0.3)
    dispatcher = Dispatcher(recorder, workers=2, clock=time.time)
    dispatcher.add(job("a", 10, time.time()))
    dispatcher.add(job("b", 10, time.time() + 0.5))
    await dispatcher.start()
    await asyncio.sleep(0.1)
    await dispatcher.stop(grace_s=2)
    assert [service for service, _, _, _ in recorder.runs] == ["a"]  # finished; b was not started
    assert not dispatcher.running


@pytest.mark.parametrize(("due", "now", "expected", "why"), [
    (100.0, 100.5, 110.0, "on time: the next slot"),
    (100.0, 115.0, 110.0, "less than a whole interval behind: the next slot, late"),
    (100.0, 135.0, 130.0, "more than a whole interval behind: the missed slots are one run, now's"),
])
def test_the_next_run_after_a_check(due: float, now: float, expected: float, why: str) -> None:
    assert next_run(job("a", 10.0, 0.0), due, now) == expected, why
