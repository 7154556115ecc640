"""A target that always answers 200 at once, in its own process (so a test's own work cannot slow it).

Usage: python -m tests.always_up --lifetime SECONDS [--delay SECONDS]
prints its port, then serves until the lifetime ends.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from aiohttp import web


async def main(lifetime: float, delay: float) -> None:
    async def ok(request: web.Request) -> web.Response:
        if delay:
            await asyncio.sleep(delay)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.sleep(lifetime)
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--lifetime", type=float, default=120)
    parser.add_argument("--delay", type=float, default=0.0, help="answer after this many seconds")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.lifetime, arguments.delay))
    sys.exit(0)
