"""Waiting and stopping: a loop stopped by ``cancel()`` stops, and a stop that hangs says where."""

from __future__ import annotations

import asyncio

import pytest

from core.waiting import set_within


async def test_a_cancelled_wait_ends_even_when_its_event_is_set_at_the_same_moment() -> None:
    event = asyncio.Event()
    rounds = 0

    async def wait_forever() -> None:  # the shape of the shipper's and the collector's loops
        nonlocal rounds
        while True:
            rounds += 1
            event.clear()
            await set_within(event, 5.0)

    task = asyncio.create_task(wait_forever())
    await asyncio.sleep(0)  # it waits
    event.set()
    task.cancel()  # at the same moment (with asyncio.wait_for on 3.11 the loop went on: python/cpython#86296)
    done, _ = await asyncio.wait({task}, timeout=2)
    assert task in done and task.cancelled() and rounds == 1


async def test_a_wait_says_whether_the_event_came_or_the_time_ran_out() -> None:
    event = asyncio.Event()
    assert await set_within(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await set_within(event, 5.0) is True
    assert await set_within(event, None) is True  # already set: no wait


@pytest.mark.parametrize("seconds", [0.0, -1.0])
async def test_no_time_left_is_an_immediate_answer(seconds: float) -> None:
    assert await set_within(asyncio.Event(), seconds) is False


async def test_a_stop_still_running_past_its_bound_shows_where_it_hangs(capfd: pytest.CaptureFixture[str]) -> None:
    from didban.supervisor import stacks_if_slower_than

    async def shipping_forever() -> None:
        await asyncio.Event().wait()

    with stacks_if_slower_than(0.05):
        await asyncio.sleep(0.01)
    assert capfd.readouterr().err == ""  # done in time: nothing said
    hanging = asyncio.create_task(shipping_forever(), name="ship")
    with stacks_if_slower_than(0.05):
        await asyncio.sleep(0.3)
    hanging.cancel()
    told = capfd.readouterr().err
    assert "still stopping after 0 s" in told and "task ship:" in told
    assert "in shipping_forever" in told and "locks.py" in told  # down to the innermost await (Event.wait)
