"""Three agents on loopback, one center: an outage only when most locations see the service down.

Each agent reaches the portal through its own path (its own copy of the config names its own front of
the portal: what differs between cities is the path), and each path can be broken on its own.  One broken
path is the path's fault, not the agency's: no outage.  Two of three broken: an outage, closed when the
second path heals.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import wait_http
from tests.test_agents import ROOT, didban, setup_center, stopped

LOCATIONS = ("shiraz", "tabriz", "mashhad")


def outages(db: Path) -> list[tuple[int, int | None]]:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT start_ms, end_ms FROM outages ORDER BY id").fetchall()


@pytest.mark.slow
async def test_an_outage_needs_a_majority_of_the_locations(tmp_path: Path, aiohttp_server: Any) -> None:
    broken: set[str] = set()  # the locations whose path to the portal is down

    async def front(request: web.Request) -> web.Response:
        return web.Response(status=503 if request.match_info["location"] in broken else 200, text="portal")

    app = web.Application()
    app.router.add_get("/{location}/s0", front)
    portal = await aiohttp_server(app)
    config, db, port, _ = setup_center(tmp_path, portal.port, services=1)
    text = config.read_text(encoding="utf-8").replace(
        "locations: [{id: shiraz}, {id: tabriz}]", "locations: [{id: shiraz}, {id: tabriz}, {id: mashhad}]")
    config.write_text(text, encoding="utf-8")
    center = await didban("server", "--config", str(config), "--db", str(db), cwd=tmp_path)
    agents = []
    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/healthz", 20)
        for location in LOCATIONS:
            made = subprocess.run([sys.executable, "-m", "didban.cli", "token", "create", "--role", "agent",
                                   "--name", location, "--config", str(config), "--db", str(db)],
                                  capture_output=True, text=True, cwd=tmp_path, timeout=60,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
            (tmp_path / f"{location}.token").write_text(made.stdout.strip(), encoding="utf-8")
            own = tmp_path / f"{location}.yaml"  # the same config, with this city's path to the portal
            own.write_text(text.replace(f"127.0.0.1:{portal.port}/s0", f"127.0.0.1:{portal.port}/{location}/s0"),
                           encoding="utf-8")
            agents.append(await didban("agent", "--config", str(own), "--location", location, "--center",
                                       f"http://127.0.0.1:{port}", "--token-file", str(tmp_path / f"{location}.token"),
                                       "--buffer", str(tmp_path / f"{location}.buffer"), cwd=tmp_path))
        await asyncio.sleep(4)
        broken.add("shiraz")  # one path broken: the path's fault
        await asyncio.sleep(6)
        assert outages(db) == []
        broken.add("tabriz")  # two of three: the portal is down
        opened_after = int(time.time() * 1000)
        deadline = time.monotonic() + 15
        while not outages(db) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        [(start, end)] = outages(db)
        assert end is None and start >= opened_after - 1_500
        broken.discard("tabriz")  # back to one of three: the outage closes
        deadline = time.monotonic() + 15
        while outages(db)[0][1] is None and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        assert outages(db)[0][1] is not None
    finally:
        for agent in agents:
            await stopped(agent)
        await stopped(center)
