"""Every check's timeout on one timer: asyncio.timeout's semantics, checked on the real event loop."""

from __future__ import annotations

import asyncio
import time

import pytest

from probes.deadlines import Deadlines


async def _timed_out_after(deadlines: Deadlines, timeout_s: float, work_s: float) -> float | None:
    """Seconds until the check was cut (None: the work finished first)."""
    began = time.monotonic()
    deadline = deadlines.start(timeout_s)
    try:
        try:
            await asyncio.sleep(work_s)
        finally:
            cut = deadline.end()
    except asyncio.CancelledError:
        if not cut:
            raise
        return time.monotonic() - began
    return None


async def test_a_check_past_its_deadline_is_cut_on_time() -> None:
    cut = await _timed_out_after(Deadlines(), 0.05, 5)
    assert cut is not None and 0.04 <= cut < 1.0


async def test_a_check_that_finishes_in_time_is_left_alone() -> None:
    deadlines = Deadlines()
    assert await asyncio.gather(*(_timed_out_after(deadlines, 1.0, 0.001) for _ in range(200))) == [None] * 200
    # The timer set for the first of them fires later and finds nothing to cut.
    await asyncio.sleep(0)
    assert await _timed_out_after(deadlines, 0.05, 5) is not None


async def test_a_shorter_timeout_started_later_is_cut_first() -> None:
    deadlines = Deadlines()
    long = asyncio.create_task(_timed_out_after(deadlines, 0.6, 5))
    await asyncio.sleep(0.01)
    short = await _timed_out_after(deadlines, 0.05, 5)  # the one timer, set for 0.6 s, is set earlier
    assert short is not None and short < 0.5
    assert not long.done()
    cut = await long
    assert cut is not None and 0.55 <= cut < 1.5


@pytest.mark.parametrize("timeouts", [(0.05,) * 5, (0.05, 0.1, 0.15, 0.1, 0.05)])
async def test_each_of_many_running_checks_is_cut_at_its_own_deadline(timeouts: tuple[float, ...]) -> None:
    deadlines = Deadlines()
    cuts = await asyncio.gather(*(_timed_out_after(deadlines, t, 5) for t in timeouts))
    for timeout_s, cut in zip(timeouts, cuts, strict=True):
        assert cut is not None and timeout_s - 0.01 <= cut < timeout_s + 0.5


async def test_a_cancellation_that_is_not_the_deadlines_goes_on() -> None:
    """The engine stopping cancels a check: that is a cancellation, never a timeout (nor a verdict)."""
    deadlines = Deadlines()
    task = asyncio.create_task(_timed_out_after(deadlines, 5, 5))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancel_during_the_deadlines_own_is_not_swallowed() -> None:
    """Both at once (as with asyncio.timeout): the other cancellation wins, so a stop is never lost."""
    deadlines = Deadlines()

    cut: list[bool] = []

    async def check() -> None:
        deadline = deadlines.start(0.05)
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            asyncio.current_task().cancel()  # type: ignore[union-attr]  # someone else's, while the deadline's is under way
            cut.append(deadline.end())

    task = asyncio.create_task(check())
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cut == [False]  # not the deadline's alone: the other cancellation stands
