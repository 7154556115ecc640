"""Runs an outbox dispatcher as its own process (for the kill -9 test): ``python -m tests.outbox_worker CONFIG DB``."""

from __future__ import annotations

import asyncio
import json
import sys

from alerting.channels import build_channels
from alerting.dispatcher import Dispatcher
from core.config import DidbanConfig, Secrets
from store.outbox import Outbox
from store.schema import open_sqlite


async def main(config: DidbanConfig, db: str) -> None:
    dispatcher = Dispatcher(Outbox(open_sqlite(db), stale_seconds=1),
                            build_channels(config.alerting.channels, Secrets()), concurrency=1)
    print("started", flush=True)
    await dispatcher.drain(60)


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as file:
        loaded = DidbanConfig.model_validate(json.load(file))
    asyncio.run(main(loaded, sys.argv[2]))
