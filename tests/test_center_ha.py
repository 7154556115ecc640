"""No single point of failure in the center: two ``didban server`` on one PostgreSQL, three agents.

The lease holder is killed with ``kill -9``; the other center takes the lease within 30 s, the agents
fail over to it, and afterwards: every result the target answered is stored once, the ended month was
closed once, the outage was announced once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from core.model import ProbeResult, Status
from sla_calc.periods import JalaliMonth
from store.backend import Backend
from store.contract import Batch
from tests.conftest import free_port, wait_http
from tests.postgres import Cluster, postgres_cluster  # noqa: F401 - the session's PostgreSQL
from tests.test_agents import Farm, didban, stopped

ROOT = Path(__file__).resolve().parent.parent
CONFIG = """agreements:
  - {{id: sla, title: "توافقنامه", valid_from: "1400-01-01", valid_until: "1410-12-29", target_percent: 99.5}}
  - {{id: sla-new, title: "توافقنامهٔ تازه", valid_from: "{this_month}", valid_until: "1410-12-29",
     target_percent: 99.5}}
locations: [{{id: shiraz}}, {{id: tabriz}}, {{id: mashhad}}]
scheduler: {{jitter_seconds: 1}}
alerting:
  channels: [{{type: email, id: mail, host: 127.0.0.1, port: 9, sender: "Didban <noreply@didban.ir>"}}]
  staff: [{{agency: agency, levels: [[{{channel: mail, to: "it-director@eaz.ir", lang: fa}}]]}}]
web: {{host: 127.0.0.1, port: 0}}
agencies:
  - id: agency
    name: {{fa: "اداره", en: "Agency"}}
    services:
      - id: archive
        name: {{fa: "بایگانی", en: "Archive"}}
        agreement: sla
        interval_seconds: 300
        timeout_seconds: 1
        probes: [{{type: http, url: "http://127.0.0.1:{target}/archive"}}]
      - id: portal
        name: {{fa: "پورتال", en: "Portal"}}
        agreement: sla-new
        interval_seconds: 1
        timeout_seconds: 1
        probes: [{{type: http, url: "http://127.0.0.1:{target}/portal"}}]
      - id: broken
        name: {{fa: "خدمت خراب", en: "Broken"}}
        agreement: sla-new
        interval_seconds: 1
        timeout_seconds: 1
        probes: [{{type: http, url: "http://127.0.0.1:{target}/broken"}}]
"""


async def lease_held(port: int) -> bool:
    try:
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as answer:
            return "didban_lease_held 1.0" in await answer.text()
    except aiohttp.ClientError:
        return False


@pytest.mark.slow
async def test_the_lease_holder_killed_the_other_center_carries_on(tmp_path: Path, aiohttp_server: Any,
                                                                  postgres_cluster: Cluster) -> None:  # noqa: F811
    farm = Farm()

    async def answer(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        response = web.Response(text="ok", status=503 if name == "broken" else 200)
        await response.prepare(request)
        await response.write_eof()
        farm.answered[name] += 1
        return response

    app = web.Application()
    app.router.add_get("/{name}", answer)
    target = await aiohttp_server(app)
    url = postgres_cluster.url(postgres_cluster.new_database())
    env = {**os.environ, "DIDBAN_STORE_URL": url, "DIDBAN_STORE_PASSWORD": postgres_cluster.password,
           "PYTHONPATH": str(ROOT)}
    config = tmp_path / "config.yaml"
    this_month = JalaliMonth.containing(int(time.time() * 1000))
    config.write_text(CONFIG.format(target=target.port, this_month=f"{this_month.year}-{this_month.month:02d}-01"),
                      encoding="utf-8")
    backend = Backend(conninfo=url, password=postgres_cluster.password)
    # The month before, observed and ended, to close: the archive's (the others' agreement begins this month).
    month = this_month.previous()
    store = backend.store()
    for location in ("shiraz", "tabriz", "mashhad"):
        store.write(Batch(results=[ProbeResult("archive", location, ts, Status.UP, 20.0)
                                   for ts in range(month.start_ms(), month.end_ms(), 300_000)]))
    seeded = store.count_results()
    store.close()
    tokens = {}
    for location in ("shiraz", "tabriz", "mashhad"):
        made = subprocess.run([sys.executable, "-m", "didban.cli", "token", "create", "--role", "agent", "--name",
                               location, "--config", str(config)], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=60)
        assert made.returncode == 0, made.stderr
        (tmp_path / f"{location}.token").write_text(made.stdout.strip(), encoding="utf-8")
        tokens[location] = made.stdout.strip()
    ports = [free_port(), free_port()]

    async def center(port: int) -> asyncio.subprocess.Process:
        return await didban("server", "--config", str(config), cwd=tmp_path, env={**env, "DIDBAN_WEB_PORT": str(port)})

    centers = [await center(ports[0])]
    await asyncio.to_thread(wait_http, f"http://127.0.0.1:{ports[0]}/healthz", 30)
    centers.append(await center(ports[1]))
    await asyncio.to_thread(wait_http, f"http://127.0.0.1:{ports[1]}/healthz", 30)
    urls = ",".join(f"http://127.0.0.1:{p}" for p in ports)
    agents = [await didban("agent", "--config", str(config), "--location", location, "--center", urls,
                           "--token-file", str(tmp_path / f"{location}.token"), "--buffer",
                           str(tmp_path / f"{location}.buffer"), cwd=tmp_path)
              for location in ("shiraz", "tabriz", "mashhad")]

    def count(sql: str) -> int:
        db = backend.database(upgrade=False)
        try:
            return int(db.execute(sql).fetchone()[0])
        finally:
            db.close()

    async def until(condition: Any, seconds: float) -> float:
        started = time.monotonic()
        while not await condition():
            assert time.monotonic() - started < seconds, "never happened"
            await asyncio.sleep(0.5)
        return time.monotonic() - started

    survivor: asyncio.subprocess.Process | None = None
    try:
        async def one_holder() -> bool:
            return [await lease_held(p) for p in ports].count(True) == 1

        await until(one_holder, 20)
        holder = 0 if await lease_held(ports[0]) else 1

        async def outage_and_close() -> bool:
            return (count("SELECT count(*) FROM outages") == 1
                    and count(f"SELECT count(*) FROM month_closes WHERE month = '{month}'") == 1)

        try:
            await until(outage_and_close, 60)  # the holder derived the outage and closed the ended month
        except AssertionError:
            raise AssertionError([(await stopped(p))[-3000:] for p in centers]) from None
        await stopped(centers[holder], signal.SIGKILL)
        survivor = centers[1 - holder]

        async def taken() -> bool:
            return await lease_held(ports[1 - holder])

        assert await until(taken, 30) <= 30
        await asyncio.sleep(12)  # the survivor derives, notifies, and closes due months again: nothing to close
    finally:
        logs = [await stopped(agent) for agent in agents]
        if survivor is not None:
            logs.append(await stopped(survivor))
        for process in centers:
            if process.returncode is None:
                logs.append(await stopped(process))
    assert all(agent.returncode == 0 for agent in agents), logs
    stored = count("SELECT count(*) FROM results") - seeded
    distinct = count("SELECT count(*) FROM (SELECT DISTINCT service, location, ts_ms FROM results) AS d") - seeded
    assert stored == distinct, "a result was stored twice"
    assert stored == sum(farm.answered.values()), f"stored {stored}, the target answered {farm.answered}"
    assert count(f"SELECT count(*) FROM month_closes WHERE month = '{month}'") == 1
    assert count("SELECT count(*) FROM outages") == 1  # one outage of the broken service, derived once
    assert count("SELECT count(*) FROM outbox WHERE event LIKE 'outage:%'") == 1  # announced once


def test_the_compose_file_shows_the_topology_and_the_image_holds_every_package() -> None:
    import tomllib

    from ruamel.yaml import YAML

    compose = YAML(typ="safe").load((ROOT / "deploy/docker-compose.ha.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    centers = [s for s in services.values() if s.get("command", [])[:2] == ["didban", "server"]]
    agents = {name: s for name, s in services.items() if s.get("command", [])[:2] == ["didban", "agent"]}
    assert "postgres" in services and len(centers) == 2 and len(agents) == 3
    assert {c["environment"]["DIDBAN_STORE_URL"] for c in centers} == {"postgresql://didban@postgres:5432/didban"}
    for agent in agents.values():
        command = agent["command"]
        assert command.count("--center") == 2  # it fails over between the centers
        assert agent["environment"]["DIDBAN_AGENT_TOKEN"].startswith("${AGENT_TOKEN_")  # a secret from .env
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"]
    dockerfile = (ROOT / "deploy/Dockerfile").read_text(encoding="utf-8")
    for package in {p.split(".")[0] for p in packages}:
        assert f"COPY {package} {package}" in dockerfile, package
