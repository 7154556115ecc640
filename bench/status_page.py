#!/usr/bin/env python3
"""Status page latency: 500 services with 90 days of history, 200 requests/s.

The store holds 90 days of results for 500 services (10 agencies × 50; a
result every 30 minutes, 0–6 outages per service), materialized as the engine
does.  The web app runs in its own process on core 0; an open-loop load
generator on core 1 sends 200 requests/s (agency pages, service pages, both
languages) for 30 s and measures each response.

    python bench/status_page.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from store.backend import Backend

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
AGENCIES, PER_AGENCY, DAYS, INTERVAL_S = 10, 50, 90, 1800


def config_dict() -> dict[str, Any]:
    return {
        "agreements": [{"id": "sla", "title": "t", "valid_from": "1400-01-01", "valid_until": "1410-12-29",
                        "target_percent": 99.5}],
        "agencies": [{"id": f"agency-{a}", "name": {"fa": f"دستگاه {a}", "en": f"Agency {a}"},
                      "services": [{"id": f"svc-{a}-{i}", "name": {"fa": f"خدمت {i}", "en": f"Service {i}"},
                                    "agreement": "sla", "interval_seconds": INTERVAL_S, "timeout_seconds": 10,
                                    "probes": [{"type": "tcp", "target": "127.0.0.1:9"}]}
                                   for i in range(PER_AGENCY)]}
                     for a in range(AGENCIES)],
    }


def build_store(db: Path) -> dict[str, Any]:
    from core.config import DidbanConfig
    from core.model import ProbeResult, Status
    from store.contract import Batch, OutageChange
    from store.sql_store import SqliteStore

    config = DidbanConfig.model_validate(config_dict())
    rng = random.Random(7)
    now = int(time.time() * 1000)
    start = now - DAYS * 86_400_000
    step = INTERVAL_S * 1000
    store = SqliteStore(db)
    t0 = time.perf_counter()
    rows = 0
    for _, service in config.services():
        outages = []
        for _ in range(rng.randint(0, 6)):
            at = start + rng.randrange(0, now - start - 7_200_000)
            outages.append((at, at + rng.randint(2, 3) * step))
        results = [ProbeResult(service.id, "tabriz", ts, Status.DOWN if any(a <= ts < b for a, b in outages)
                               else Status.UP, 30.0) for ts in range(start, now, step)]
        changes = []
        for a, b in sorted(outages):
            changes += [OutageChange(service.id, a, opening=True, error="timeout"),
                        OutageChange(service.id, b, opening=False)]
        store.write(Batch(results=results, changes=changes))
        rows += len(results)
        store.materialize(service.id, "tabriz", now - 3_600_000, step, service.failure_threshold)
    store.close()
    return {"results": rows, "build_s": round(time.perf_counter() - t0, 1)}


def server_worker(db: str, port: int) -> None:
    from aiohttp import web

    from core.config import DidbanConfig
    from didban.web.app import WebContext, build_app

    context = WebContext(DidbanConfig.model_validate(config_dict()), Backend(path=Path(db)))
    print("ready", flush=True)
    web.run_app(build_app(context), host="127.0.0.1", port=port, print=None, access_log=None)


async def load(base: str, rate: float, seconds: float, warm: list[str]) -> dict[str, Any]:
    import aiohttp

    paths = ([f"/a/agency-{a}" for a in range(AGENCIES)] + [f"/s/svc-{a}-{i}" for a in range(AGENCIES)
                                                            for i in range(0, PER_AGENCY, 10)])
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        cold = []
        for path in warm:  # the first build of each board, measured apart
            t = time.perf_counter()
            async with session.get(base + path) as response:
                await response.read()
            cold.append(time.perf_counter() - t)

        async def one(path: str) -> None:
            nonlocal errors
            t = time.perf_counter()
            try:
                async with session.get(base + path) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            latencies.append(time.perf_counter() - t)

        rng = random.Random(3)
        tasks = []
        begin = time.perf_counter()
        for k in range(int(rate * seconds)):  # open loop: requests leave on schedule, whatever the answers do
            delay = begin + k / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            lang = "?lang=en" if rng.random() < 0.3 else ""
            tasks.append(asyncio.create_task(one(rng.choice(paths) + lang)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - begin
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000, 1)

    return {"requests": len(latencies), "achieved_rps": round(len(latencies) / elapsed, 1), "errors": errors,
            "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "max_ms": round(latencies[-1] * 1000, 1),
            "cold_build_max_ms": round(max(cold) * 1000, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server-worker", nargs=2, metavar=("DB", "PORT"))
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rate", type=float, default=200)
    args = parser.parse_args()
    if args.server_worker:
        server_worker(args.server_worker[0], int(args.server_worker[1]))
        return 0
    from tests.conftest import free_port

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.sqlite"
        built = build_store(db)
        port = free_port()
        pin = ["taskset", "-c", "0"] if (os.cpu_count() or 1) > 1 else []
        server = subprocess.Popen([*pin, sys.executable, __file__, "--server-worker", str(db), str(port)],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            time.sleep(1.0)
            if (os.cpu_count() or 1) > 1:
                os.sched_setaffinity(0, {1})
            figures = asyncio.run(load(f"http://127.0.0.1:{port}", args.rate, args.seconds,
                                       [f"/a/agency-{a}" for a in range(AGENCIES)]))
        finally:
            server.terminate()
            server.wait(30)
    print(json.dumps(figures), file=sys.stderr)
    print(f"\nStatus page: {AGENCIES * PER_AGENCY} services, {DAYS} days of history ({built['results']:,} results, "
          f"built in {built['build_s']} s), open loop at {args.rate:g} requests/s for {args.seconds:g} s\n")
    print("| requests | achieved/s | errors | p50 | p90 | p99 (target ≤ 50 ms) | max | first build of a board |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {figures['requests']:,} | {figures['achieved_rps']} | {figures['errors']} | {figures['p50_ms']} ms "
          f"| {figures['p90_ms']} ms | {figures['p99_ms']} ms | {figures['max_ms']} ms "
          f"| {figures['cold_build_max_ms']} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
