"""The engine with APScheduler running for real, short intervals, real targets, real SQLite."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

from aiohttp import web

from core.model import OutageEvent, Status
from didban.engine import Engine
from store.sql_store import SqliteStore
from tests.conftest import make_config


class Target:
    """An HTTP target whose health a test flips, counting requests per path."""

    def __init__(self) -> None:
        self.healthy: dict[str, bool] = {}
        self.requests: dict[str, int] = {}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{name}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.requests[name] = self.requests.get(name, 0) + 1
        if self.healthy.get(name, True):
            return web.Response(text="ok")
        return web.Response(status=503, text="down")


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_scheduler_checks_every_service_and_opens_outages(aiohttp_server: Any, db_path: Path) -> None:
    target = Target()
    target.healthy["broken"] = False
    server = await aiohttp_server(target.app())
    config = make_config(
        [
            {"id": name, "interval_seconds": 1, "timeout_seconds": 1,
             "probes": [{"type": "http", "url": str(server.make_url(f"/{name}"))}]}
            for name in ("portal", "payments", "broken")
        ],
        scheduler={"jitter_seconds": 1},
    )
    store = SqliteStore(db_path)
    engine = Engine(config, store, "local", seed=7)
    events: list[OutageEvent] = []
    engine.collector.subscribe(events.append)
    await engine.start()
    try:
        await wait_for(lambda: any(e.kind == "outage_opened" for e in events), timeout=8)
        await wait_for(lambda: engine.checks_run >= 9, timeout=8)
    finally:
        await engine.stop()
    assert {e.outage.service for e in events} == {"broken"}
    assert engine.latest["portal"].status is Status.UP
    assert engine.latest["broken"].error == "http_status"
    assert store.count_results() == engine.checks_run  # everything checked was stored
    assert engine.lag.count == engine.checks_run
    assert engine.lag.percentile(99) < 0.5
    store.close()


async def test_when_every_canary_fails_failures_are_unknown_not_down(aiohttp_server: Any, db_path: Path) -> None:
    target = Target()
    target.healthy["portal"] = False
    server = await aiohttp_server(target.app())
    dead = closed_port()
    config = make_config(
        [{"id": "portal", "interval_seconds": 1, "timeout_seconds": 1,
          "probes": [{"type": "http", "url": str(server.make_url("/portal"))}]}],
        canaries=[{"id": "national-link", "type": "tcp", "target": f"127.0.0.1:{dead}"}],
        scheduler={"jitter_seconds": 0},
    )
    store = SqliteStore(db_path)
    engine = Engine(config, store, "local")
    events: list[OutageEvent] = []
    engine.collector.subscribe(events.append)
    await engine.start()
    try:
        await wait_for(lambda: engine.checks_run >= 3, timeout=8)
    finally:
        await engine.stop()
    assert events == []
    stored = store.results("portal", 0, 10**14)
    assert stored and all(r.status is Status.UNKNOWN and r.error == "probe_network" for r in stored)
    assert "http_status" in stored[0].detail
    store.close()


async def test_a_canary_that_answers_lets_failures_count(aiohttp_server: Any, db_path: Path) -> None:
    target = Target()
    target.healthy["portal"] = False
    server = await aiohttp_server(target.app())
    config = make_config(
        [{"id": "portal", "interval_seconds": 1, "timeout_seconds": 1,
          "probes": [{"type": "http", "url": str(server.make_url("/portal"))}]}],
        canaries=[{"id": "national-link", "type": "http", "url": str(server.make_url("/canary"))}],
        scheduler={"jitter_seconds": 0},
    )
    store = SqliteStore(db_path)
    engine = Engine(config, store, "local")
    await engine.start()
    try:
        await wait_for(lambda: engine.checks_run >= 3, timeout=8)
    finally:
        await engine.stop()
    assert {r.status for r in store.results("portal", 0, 10**14)} == {Status.DOWN}
    store.close()


async def test_retention_compacts_old_results_into_segments(db_path: Path) -> None:
    import time as clock

    from core.model import ProbeResult
    from store.contract import Batch

    now = clock.time()
    old = int((now - 100 * 86400) * 1000)
    store = SqliteStore(db_path)
    pattern = [Status.UP, Status.DOWN, Status.DOWN, Status.UP, Status.UP]
    store.write(Batch(results=[ProbeResult("portal", "local", old + i * 60_000, s, 1.0)
                               for i, s in enumerate(pattern)]))
    config = make_config([{"id": "portal", "probes": [{"type": "tcp", "target": "127.0.0.1:9"}]}])
    engine = Engine(config, store, "local", clock=lambda: now)
    await engine.collector.start()
    removed = await engine.compact()
    await engine.collector.stop()
    assert removed == 4  # all but the last up, which starts the raw history
    assert store.segments("portal", "local", 0, 10**14) == [
        (old, old + 60_000, False), (old + 60_000, old + 180_000, True), (old + 180_000, old + 240_000, False)
    ]
    store.close()


async def test_upkeep_sees_what_another_writer_stored(db_path: Path) -> None:
    """Two centers on one store: the one that materializes knows pairs only the other ever stored."""
    import time as clock

    from core.model import ProbeResult
    from didban.operations import on_own_store
    from store.backend import Backend
    from store.contract import Batch

    now = clock.time()
    start = int((now - 3 * 3600) * 1000)
    config = make_config([{"id": "portal", "probes": [{"type": "tcp", "target": "127.0.0.1:9"}]}],
                         locations=[{"id": "tabriz"}, {"id": "shiraz"}])
    backend = Backend(path=db_path)

    async def store_work(job: Any, *args: Any) -> Any:  # as `didban server` runs it (there in its workshop)
        return await asyncio.to_thread(on_own_store, backend, job, config, *args)

    engine = Engine(config, backend.store(), "tabriz", clock=lambda: now, store_work=store_work)
    await engine.collector.start()
    with backend.store() as other:  # the other center ingests shiraz's agent after this one started
        other.write(Batch(results=[ProbeResult("portal", "shiraz", start + i * 60_000, Status.UP, 1.0)
                                   for i in range(180)]))
    try:
        assert await engine.materialize() == 1  # shiraz's steady 'up' segment
    finally:
        await engine.collector.stop()
        engine.collector.store.close()


async def test_materialize_job_stores_segments_up_to_an_hour_ago(db_path: Path) -> None:
    import time as clock

    from core.model import ProbeResult
    from store.contract import Batch

    now = clock.time()
    start = int((now - 3 * 3600) * 1000)
    store = SqliteStore(db_path)
    store.write(Batch(results=[ProbeResult("portal", "local", start + i * 60_000, Status.UP, 1.0)
                               for i in range(180)]))
    config = make_config([{"id": "portal", "probes": [{"type": "tcp", "target": "127.0.0.1:9"}]}])
    engine = Engine(config, store, "local", clock=lambda: now)
    await engine.collector.start()
    assert await engine.materialize() == 1  # one steady 'up' segment
    await engine.collector.stop()
    horizon = store.horizon("portal", "local")
    assert horizon is not None and now * 1000 - 3600_000 - 61_000 <= horizon < now * 1000 - 3600_000
    store.close()
