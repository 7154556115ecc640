"""The alerting service inside the running process: a notifier and a dispatcher on one outbox.

Each side is given its own outbox (its own connection to the store), used
from one thread only: the notifier's on a worker thread of its own, the
outbox dispatcher's on another.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from alerting.channels import build_channels
from alerting.dispatcher import Dispatcher
from alerting.notifier import Notifier
from core.config import DidbanConfig, Secrets
from core.model import Credit
from sla_calc.month import truncate_percent
from store.contract import OutboxStore, SubscriberStore


class Alerts:
    def __init__(self, config: DidbanConfig, notices: OutboxStore, subscribers: SubscriberStore,
                 delivery: OutboxStore, secrets: Secrets, clock: Callable[[], float] = time.time) -> None:
        """``notices`` is the notifier's outbox, ``delivery`` the dispatcher's: one connection each."""
        self.notifier = Notifier(config, notices, subscribers)
        self.dispatcher = Dispatcher(delivery, build_channels(config.alerting.channels, secrets), clock=clock)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="didban-notifier")
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run a notifier call on its own thread (its SQLite connections never cross threads)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def start(self, spawn: Callable[[str, Callable[[], Any]], asyncio.Task[None]] | None = None) -> None:
        """Run the dispatcher, under a supervisor's ``spawn`` when given (it restarts it when it fails)."""
        self._stop.clear()
        if spawn is None:
            self._task = asyncio.create_task(self.dispatcher.run(self._stop), name="didban-dispatcher")
        else:
            self._task = spawn("dispatcher", lambda: self.dispatcher.run(self._stop))

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 30)
            except (TimeoutError, asyncio.CancelledError):
                pass
            self._task = None
        await self.dispatcher.close()
        self._executor.shutdown(wait=True)
        self.notifier.outbox.close()
        self.notifier.subscribers.close()
        self.dispatcher.outbox.close()

    async def credits(self, credits: Sequence[Credit], now_ms: int) -> None:
        for credit in credits:
            await self.call(self.notifier.credit_issued, credit, truncate_percent(credit.availability_percent),
                            self._target(credit.service), now_ms)

    def _target(self, service: str) -> float:
        config = self.notifier.config
        return config.agreement(config.service(service).agreement).target_percent
