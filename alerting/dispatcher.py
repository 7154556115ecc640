"""Delivering the outbox: claim what is due, send through the channel, record the outcome.

Each channel has a token bucket (its ``rate_per_second``), and at most
``concurrency`` sends run at once.  A transient failure goes back to the
outbox with backoff; a permanent one is recorded as failed with its reason.
The outbox's SQLite connection is used from one worker thread only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from alerting.channels import Channel, DeliveryError
from store.contract import Notice, OutboxStore

log = logging.getLogger("didban.alerting")


class TokenBucket:
    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.updated = time.monotonic()

    def available(self) -> int:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return int(self.tokens)

    def consume(self, count: int) -> None:
        self.tokens -= count


class Dispatcher:
    def __init__(self, outbox: OutboxStore, channels: dict[str, Channel], *, clock: Callable[[], float] = time.time,
                 concurrency: int = 32, poll_seconds: float = 0.2) -> None:
        self.outbox = outbox
        self.channels = channels
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.sent = 0
        self.failed = 0
        self.retried = 0
        self._buckets = {ident: TokenBucket(channel.rate_per_second) for ident, channel in channels.items()}
        self.concurrency = concurrency
        self._active: set[asyncio.Task[None]] = set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="didban-outbox")

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def _db(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def run_once(self) -> int:
        """Start sends for what is due, into the free sending slots; return how many were started."""
        # Rows a dead process left 'sending' come back once they are stale (cheap: an indexed UPDATE).
        await self._db(self.outbox.recover_stale, self._now_ms())
        started = 0
        for ident, channel in self.channels.items():
            # Claim no more than there are free slots: a claimed row is 'sending', and after a
            # crash only rows truly in flight may be sent a second time.
            free = self.concurrency - len(self._active)
            if free <= 0:
                break
            bucket = self._buckets[ident]
            allowed = bucket.available()
            if allowed < 1:
                continue
            notices: list[Notice] = await self._db(self.outbox.claim, self._now_ms(), min(allowed, free), ident)
            bucket.consume(len(notices))
            for notice in notices:
                task = asyncio.create_task(self._deliver(channel, notice))
                self._active.add(task)
                task.add_done_callback(self._active.discard)
            started += len(notices)
        return started

    async def _settle(self, timeout: float) -> None:
        """Wait until a send finishes (a slot frees) or ``timeout`` passes."""
        if self._active:
            await asyncio.wait(self._active, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        else:
            await asyncio.sleep(timeout)

    async def _deliver(self, channel: Channel, notice: Notice) -> None:
        try:
            await channel.send(notice)
        except DeliveryError as exc:
            await self._db(self.outbox.failed, notice, exc.reason, exc.permanent, self._now_ms())
            if exc.permanent:
                self.failed += 1
                log.error("notice %s to %s via %s failed for good: %s", notice.event, _mask(notice.recipient),
                          channel.id, exc.reason)
            else:
                self.retried += 1
            return
        except Exception as exc:  # a bug in a channel must not lose the notice
            await self._db(self.outbox.failed, notice, f"{type(exc).__name__}", False, self._now_ms())
            self.retried += 1
            log.exception("channel %s crashed; the notice will be retried", channel.id)
            return
        await self._db(self.outbox.sent, notice, self._now_ms())
        self.sent += 1

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = await self.run_once()
            if not started or len(self._active) >= self.concurrency:
                await self._settle(self.poll_seconds)
        if self._active:
            await asyncio.wait(self._active)

    async def drain(self, timeout: float) -> bool:
        """Deliver until nothing is pending (True) or the timeout passes (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await self.run_once()
            await self._settle(0.05)
            if self._active:
                continue
            counts = await self._db(self.outbox.counts, tuple(self.channels))
            if not counts.get("pending") and not counts.get("sending"):
                return True
        if self._active:
            await asyncio.wait(self._active)
        return False

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()
        self._executor.shutdown(wait=True)


def _mask(address: str) -> str:
    """Logs show enough of an address to trace a problem, not enough to collect it."""
    return address[:3] + "…" + address[-2:] if len(address) > 6 else "…"
