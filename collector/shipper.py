"""An agent's results, shipped to the center: buffered on disk first, then sent in batches.

``submit`` never blocks: results wait in memory for a few milliseconds and
are appended to the ``Buffer`` (fsync'd) by its own thread in small group
commits.  The shipping task sends the oldest buffered results, gzip'd JSON,
to ``POST /api/ingest`` of a center with the agent's token; the center stores
the batch in one transaction and answers the highest sequence number it
holds, which the buffer then forgets.  A center that does not answer is
retried with capped backoff and the next center of the list is tried: the
agent keeps probing and buffering meanwhile, and drains in order when a
center returns.  Nothing leaves the buffer before a center acknowledged it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import aiohttp

from collector.buffer import Buffer
from core.model import ProbeResult
from core.waiting import set_within

log = logging.getLogger("didban.agent")
_T = TypeVar("_T")


@dataclass(slots=True)
class ShipperStats:
    buffered: int = 0  # appended to the buffer since start
    shipped: int = 0  # acknowledged by a center since start
    batches: int = 0
    refusals: int = 0  # batches a center refused (4xx): kept, retried, and said loudly


class Shipper:
    def __init__(self, buffer: Buffer, centers: list[str], token: str, *, batch_max: int = 20_000,
                 retry_max_seconds: float = 5.0, request_timeout: float = 30.0,
                 clock: Callable[[], float] = time.time) -> None:
        if not centers:
            raise ValueError("an agent needs at least one center URL")
        self.buffer = buffer
        self.centers = [c.rstrip("/") for c in centers]
        self._token = token
        self.batch_max = batch_max
        self.retry_max = retry_max_seconds
        self.request_timeout = request_timeout
        self.clock = clock
        self.stats = ShipperStats()
        self.unavailable_since: float | None = None  # monotonic: no center has answered since then
        self.depth = buffer.depth()  # buffered and not yet acknowledged (refreshed by the buffer thread)
        self.oldest_ms = buffer.oldest_ms()
        self._incoming: deque[ProbeResult] = deque()
        self._appended = asyncio.Event()
        self._arrived = asyncio.Event()
        self._center = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="didban-buffer")
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._warned: dict[str, float] = {}
        self._batch: tuple[int, int, bytes] | None = None  # (last seq, count, body) of the batch to send next

    # -- what the engine sees (the collector's interface) ------------------------------------------

    def submit(self, result: ProbeResult) -> None:
        self._incoming.append(result)
        self._arrived.set()

    @property
    def pending(self) -> int:
        return len(self._incoming) + self.depth

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.request_timeout),
                                              headers={"User-Agent": "Didban-agent/0.1"})
        # Each loop keeps itself alive (a failing round is logged and tried again), so plain tasks suffice.
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._append_loop(), name="didban-agent-buffer"),
                       loop.create_task(self._ship_loop(), name="didban-agent-ship")]
        if self.depth:
            log.info("agent buffer %s holds %d results from before; shipping them first", self.buffer.path,
                     self.depth)

    async def stop(self, grace_s: float = 10.0) -> None:
        """Everything submitted goes to disk; one last try to ship it (bounded); then stop."""
        for task in self._tasks:  # the loops stop first: the last shipping below is the only one
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)
        await self._run(self._append_now)
        try:
            async with asyncio.timeout(grace_s):  # a center slow to answer does not hold the stop
                while self.depth and self.unavailable_since is None:
                    if not await self._ship_once():
                        break
        except TimeoutError:
            pass
        if self._session is not None:
            await self._session.close()
        await self._run(self.buffer.close)
        self._executor.shutdown(wait=True)
        if self.depth:
            log.warning("agent stopped with %d results buffered in %s; they are shipped at the next start",
                        self.depth, self.buffer.path)

    # -- the buffer's thread -------------------------------------------------------------------

    async def _run(self, function: Callable[..., _T], *args: object) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def _append_now(self) -> None:
        taken = [self._incoming.popleft() for _ in range(len(self._incoming))]
        if taken:
            try:
                self.buffer.append(taken)
            except BaseException:
                self._incoming.extendleft(reversed(taken))
                raise
            self.stats.buffered += len(taken)
        self._refresh()

    def _refresh(self) -> None:
        self.depth = self.buffer.depth()
        self.oldest_ms = self.buffer.oldest_ms()

    async def _append_loop(self) -> None:
        trimmed = 0.0
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            await asyncio.sleep(0.02)  # a group commit: one fsync for the results of a few milliseconds
            try:
                await self._run(self._append_now)
                if time.monotonic() - trimmed > 60:
                    trimmed = time.monotonic()
                    await self._run(self.buffer.trim, int(self.clock() * 1000))
            except Exception:  # a full disk, say: the results stay in memory and the next append retries
                log.exception("cannot append to the agent buffer %s; %d results wait in memory", self.buffer.path,
                              len(self._incoming))
                await asyncio.sleep(1.0)
                self._arrived.set()
                continue
            self._appended.set()

    # -- shipping ----------------------------------------------------------------------------------

    async def _ship_loop(self) -> None:
        delay = 0.2
        while True:
            if not self.depth:
                self._appended.clear()
                await set_within(self._appended, 1.0)
                continue
            try:
                shipped = await self._ship_once()
            except Exception:  # a fault of our own (the buffer unreadable): said, and tried again
                log.exception("shipping from the agent buffer %s failed", self.buffer.path)
                shipped = False
            if shipped:
                delay = 0.2
                continue
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.retry_max)

    async def _ship_once(self) -> bool:
        """Send the oldest batch to the current center; True when it was acknowledged."""
        # Read, joined and compressed on the buffer's thread: the loop that measures only sends it. A batch
        # no center took is kept for the next try, not read again (20,000 rows every few seconds, for days).
        if self._batch is None:
            self._batch = await self._run(self.buffer.batch, self.batch_max, 0)
        last, count, body = self._batch
        if not count:
            self._batch = None
            await self._run(self._refresh)
            return True
        center = self.centers[self._center]
        # While a center takes batches, the next one is read and compressed while this one is in flight:
        # a draining agent sends it as soon as this one is acknowledged.
        following = (asyncio.ensure_future(self._run(self.buffer.batch, self.batch_max, last))
                     if self.unavailable_since is None else None)
        try:
            acknowledged = await self._post(center, body)
        finally:
            next_batch = await following if following is not None else None
        if acknowledged is None:
            return False
        self._batch = next_batch if acknowledged == last else None
        await self._run(self.buffer.acknowledge, acknowledged)
        await self._run(self._refresh)
        self.stats.shipped += count if acknowledged >= last else max(0, count - (last - acknowledged))
        self.stats.batches += 1
        if self.unavailable_since is not None:
            log.warning("center %s reachable again after %.0f s; draining %d buffered results", center,
                        time.monotonic() - self.unavailable_since, self.depth)
            self.unavailable_since = None
            self._warned.clear()
        return True

    async def _post(self, center: str, body: bytes) -> int | None:
        """The highest sequence number the center says it stores, or None (said) when it did not answer so."""
        assert self._session is not None
        headers = {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json",
                   "Content-Encoding": "gzip"}
        try:
            async with self._session.post(f"{center}/api/ingest", data=body, headers=headers) as answer:
                text = await answer.text()
                if answer.status != 200:
                    self._trouble(center, f"HTTP {answer.status}: {text[:200]}", refused=400 <= answer.status < 500)
                    return None
                return int(json.loads(text)["acknowledged"])
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError, KeyError) as exc:
            self._trouble(center, f"{type(exc).__name__}: {exc}"[:200])
            return None

    def _trouble(self, center: str, cause: str, refused: bool = False) -> None:
        if self.unavailable_since is None:
            self.unavailable_since = time.monotonic()
        if refused:
            self.stats.refusals += 1
        if len(self.centers) > 1:  # fail over: the next center of the list gets the next try
            self._center = (self._center + 1) % len(self.centers)
        now = time.monotonic()
        if now - self._warned.get(cause, float("-inf")) >= 60:
            self._warned[cause] = now
            log.warning("center %s %s (%s); %d results buffered in %s, probing goes on", center,
                        "refused the batch" if refused else "unreachable", cause, self.pending, self.buffer.path)
