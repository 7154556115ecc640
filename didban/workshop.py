"""Heavy work, kept off the event loop that measures.

Settlement, exports and month closes read a month of evidence; rendering a
PDF of 50 services takes seconds of pure CPU.  On the probing loop either
would make every check late and, with a short timeout, turn healthy services
into false outages.  So:

- ``run`` executes a job on one worker thread: jobs are serialised (two
  exports never compete with each other), and the store work in them
  releases the GIL while SQLite reads.
- ``render`` renders an export format in a separate process (one, reused),
  so CPU-bound rendering cannot hold the GIL the event loop needs.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, TypeVar

_T = TypeVar("_T")


class Workshop:
    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="didban-heavy")
        self._process: ProcessPoolExecutor | None = None

    async def run(self, job: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, job, *args)

    def render_blocking(self, fmt: str, model: dict[str, Any]) -> bytes:
        """Render in the worker process from a thread that may wait (a ``run`` job)."""
        if self._process is None:
            # spawn, not fork: the service has threads and an event loop a forked child must not inherit.
            self._process = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        from didban.exports import render

        return self._process.submit(render, fmt, model).result()

    def close(self) -> None:
        self._thread.shutdown(wait=True, cancel_futures=True)
        if self._process is not None:
            self._process.shutdown(wait=True, cancel_futures=True)
            self._process = None
