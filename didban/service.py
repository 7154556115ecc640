"""The running service, assembled: one store backend, the engine, alerting, the web and the feed.

This is where the parts meet: the backend opens the store objects and each
part is handed the ones it uses (the collector its store, alerting its
outboxes and subscribers, the web the backend's openers, the feed its cursor
and the settlement's own function).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from core.config import DidbanConfig, InfluxConfig, Secrets
from core.waiting import set_within
from didban.operations import on_own_store
from didban.workshop import Workshop
from store.backend import Backend
from store.lease import Lease

EXIT_OK = 0


async def serve(config: DidbanConfig, backend: Backend, location: str, *, keepalive: bool,
                duration: float | None, live_every: float | None, quiet: bool = False,
                secrets_file: str | None = None, events: Any = None, center: bool = False,
                probing: bool = True) -> int:
    """Run the engine until a signal (or ``duration``), showing live state when asked.

    ``center``: ``didban server`` — agents' batches are taken on ``POST /api/ingest`` and outages are
    derived from the store's stream of results; ``probing`` False: it probes nothing itself.
    """
    from collector.journal import Journal
    from didban.engine import Engine, settle_heap
    from didban.metrics import Metrics

    store = backend.store()
    alerts = None
    if config.alerting.channels:
        from alerting.service import Alerts

        alerts = Alerts(config, backend.outbox(), backend.subscribers(), backend.outbox(), Secrets.load(secrets_file))
    metrics = Metrics()
    journal = Journal(backend.journal_path(config.store.journal_dir))
    workshop = Workshop()  # heavy work: the engine's month jobs, the web's exports

    async def store_work(job: Any, *args: Any) -> Any:
        return await workshop.run(on_own_store, backend, job, config, *args)

    engine = Engine(config, store, location, keepalive=keepalive, alerts=alerts, metrics=metrics, journal=journal,
                    follow=backend.feed() if center else None, lease=Lease(backend) if center else None,
                    probing=probing, store_work=store_work)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if events is not None:  # the demo's event log: outages with their codes, and blips
        engine.store_jobs.subscribe(events.on_outage)
        engine.on_result = events.on_result
    await engine.start()
    settle_heap()
    web_runner = await start_web(config, backend, engine, metrics, workshop) if config.web.enabled else None
    feed = influx_sink(config, backend, secrets_file)
    if feed is not None:  # Grafana's month figures follow every outage and every close
        engine.store_jobs.subscribe(lambda event: feed.request_sla())
        engine.month_closed_handlers.append(lambda month: _async(feed.request_sla))
    feed_stop = asyncio.Event()
    feed_task = engine.supervisor.spawn("feed", lambda: feed.run(feed_stop)) if feed is not None else None
    address = f"http://{config.web.host}:{web_runner.addresses[0][1]}/" if web_runner is not None else None
    started = time.monotonic()
    try:
        while not stop.is_set():
            wait = live_every or 3600.0
            if duration is not None:
                wait = min(wait, max(0.0, duration - (time.monotonic() - started)))
            await set_within(stop, wait)
            if live_every and not quiet:
                from didban import live

                live.show(config, engine, events)
            if duration is not None and time.monotonic() - started >= duration:
                break
    finally:
        if feed_task is not None:
            feed_stop.set()
            await feed_task
            feed.close()
        if web_runner is not None:
            await web_runner.cleanup()
        await engine.stop()
        workshop.close()
        store.close()
    if events is not None:
        from didban import live

        shown = str(backend.path) if backend.path is not None else backend.describe()
        print(live.summary(events, engine, shown, address), flush=True)
    return EXIT_OK


async def _async(call: Any) -> None:
    call()


def influx_sink(config: DidbanConfig, backend: Backend, secrets_file: str | None) -> Any:
    """The InfluxDB feed, when one is configured (``store.influxdb`` or DIDBAN_INFLUXDB_URL)."""
    from collector.influx_sink import InfluxSink
    from didban.settlement import settle

    influx = config.store.influxdb
    if influx is None and os.environ.get("DIDBAN_INFLUXDB_URL"):  # e.g. deploy/docker-compose.yml
        influx = InfluxConfig(url=os.environ["DIDBAN_INFLUXDB_URL"], org=os.environ.get("DIDBAN_INFLUXDB_ORG", "-"),
                              bucket=os.environ.get("DIDBAN_INFLUXDB_BUCKET", "didban"))
    if influx is None:
        return None
    token = Secrets.load(secrets_file).influxdb_token
    return InfluxSink(config, backend.feed(), backend.store, settle, url=influx.url, org=influx.org,
                      bucket=influx.bucket, token=token.get_secret_value() if token else "",
                      batch_size=influx.batch_size)


async def start_web(config: DidbanConfig, backend: Backend, engine: Any, metrics: Any, workshop: Workshop) -> Any:
    from aiohttp import web

    from didban.web.app import WebContext, build_app

    ingest = None
    if engine.collector is not None and engine.collector.follow is not None:
        collector = engine.collector

        def read_and_store(location: str, read: Callable[[], list[Any]], now_ms: int) -> tuple[int, int, int]:
            batch = read()
            return (*collector.store.ingest(location, batch, now_ms), len(batch))

        async def ingest(location: str, read: Callable[[], list[Any]], now_ms: int) -> tuple[int, int, int]:
            # On the store's own thread and connection, in turn with the collector's writes.
            stored: tuple[int, int, int] = await collector.run_in_store(read_and_store, location, read, now_ms)
            collector.wake()
            return stored

    context = WebContext(config, backend, prober=engine.probe_now if engine.probing else None,
                         heartbeat=engine.heartbeat, problems=engine.problems, metrics=metrics,
                         refresh=engine.refresh_gauges, ingest=ingest, workshop=workshop, owns_workshop=False)
    runner = web.AppRunner(build_app(context), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.web.host, config.web.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        print(f"didban: the status page could not listen on {config.web.host}:{config.web.port} ({exc.strerror}); "
              "probing goes on without it (set web.port)", file=sys.stderr)
        return None
    host, port = runner.addresses[0][:2]
    print(f"status page and API on http://{host}:{port}/", file=sys.stderr, flush=True)
    return runner


def web_from_environment(config: DidbanConfig) -> DidbanConfig:
    """DIDBAN_WEB_HOST / DIDBAN_WEB_PORT: where the status page listens (a container publishes 0.0.0.0)."""
    host, port = os.environ.get("DIDBAN_WEB_HOST"), os.environ.get("DIDBAN_WEB_PORT")
    if not host and not port:
        return config
    web = config.web.model_copy(update={**({"host": host} if host else {}),
                                        **({"port": int(port)} if port and port.isdigit() else {})})
    return config.model_copy(update={"web": web})
