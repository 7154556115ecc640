"""Waiting for an event with a time bound, without losing a cancellation.

On Python 3.11, ``asyncio.wait_for(event.wait(), t)`` returns normally when its task is cancelled
just as the event is set: the cancellation is swallowed (python/cpython#86296, fixed in 3.12 by
rebuilding ``wait_for`` on ``asyncio.timeout``). A loop stopped with ``cancel()`` then runs on and
the stop that awaits it never ends. ``asyncio.timeout`` counts cancellations and lets ours through.
"""

from __future__ import annotations

import asyncio


async def set_within(event: asyncio.Event, seconds: float | None) -> bool:
    """True once ``event`` is set, False when ``seconds`` pass first (None: no bound)."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
