"""``didban agent``: one probe location that ships its results to the center.

The same engine as ``didban run`` (dispatcher, canaries, the monitor's own
trouble), handed a ``Shipper`` instead of a collector: results go to the
agent's durable buffer and on to a center; the agent stores and settles
nothing.  Its services and schedule come from the same config file as the
center's (the services whose ``locations`` include this one, or that name
none): a config change reaches an agent when it is restarted with the new
file.  With ``--listen`` it serves ``/healthz``, ``/readyz`` and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

from aiohttp import web

from collector.buffer import Buffer
from collector.shipper import Shipper
from core.config import DidbanConfig
from core.waiting import set_within
from didban.engine import Engine, settle_heap
from didban.metrics import Metrics

EXIT_OK = 0


def agent_problems(engine: Engine, shipper: Shipper, grace_s: float) -> list[str]:
    found = [p for p in engine.problems() if not p.startswith("store unavailable")]
    since = shipper.unavailable_since
    if since is not None and time.monotonic() - since > grace_s:
        found.append(f"no center reachable for {time.monotonic() - since:.0f} s; {shipper.pending} results "
                     "buffered")
    return found


def refresh_agent_gauges(metrics: Metrics, shipper: Shipper, clock: float) -> None:
    metrics.agent_buffered.set(shipper.pending)
    metrics.agent_buffer_age.set(max(0.0, clock - shipper.oldest_ms / 1000) if shipper.oldest_ms else 0.0)
    metrics.agent_buffer_dropped.set(shipper.buffer.dropped)
    metrics.agent_shipped.set(shipper.stats.shipped)


async def _start_listener(engine: Engine, shipper: Shipper, metrics: Metrics, host: str, port: int,
                          grace_s: float) -> web.AppRunner:
    from prometheus_client import CONTENT_TYPE_LATEST

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(request: web.Request) -> web.Response:
        problems = agent_problems(engine, shipper, grace_s)
        return web.json_response({"ready": not problems, "problems": problems}, status=503 if problems else 200)

    async def metrics_page(request: web.Request) -> web.Response:
        engine.refresh_gauges()
        refresh_agent_gauges(metrics, shipper, time.time())
        body = await asyncio.to_thread(metrics.exposition)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"agent health and metrics on http://{host}:{runner.addresses[0][1]}/", file=sys.stderr, flush=True)
    return runner


async def run_agent(config: DidbanConfig, location: str, centers: list[str], token: str, buffer_path: Path, *,
                    keepalive: bool = False, listen: tuple[str, int] | None = None,
                    duration: float | None = None) -> int:
    buffer = Buffer(buffer_path, config.agent.buffer_max_days)
    shipper = Shipper(buffer, centers, token, batch_max=config.agent.batch_max)
    metrics = Metrics()
    engine = Engine(config, None, location, keepalive=keepalive, metrics=metrics, sink=shipper)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await engine.start()
    settle_heap()
    grace = config.store.unavailable_grace_seconds
    runner = await _start_listener(engine, shipper, metrics, *listen, grace) if listen else None
    print(f"agent {location}: {engine.scheduled} checks, shipping to {', '.join(shipper.centers)}; buffer "
          f"{buffer_path}", file=sys.stderr, flush=True)
    try:
        await set_within(stop, duration)
    finally:
        if runner is not None:
            await runner.cleanup()
        await engine.stop()
    return EXIT_OK
