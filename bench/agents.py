#!/usr/bin/env python3
"""Probe agents and the center, measured from outside.

1. Ingest: `didban server` on a real PostgreSQL (fsync on), pinned to core 1, takes synthetic agents'
   batches (5,000 results each, gzip'd, three locations posting at once from core 0) through
   `POST /api/ingest` and derives their outages from the stream: results per second until every one
   is stored and derived, and the center's CPU per 1,000 results (from /proc).
2. Partition: one agent with 10,000 services every 30 s against the target farm while its center is
   unreachable for 10 minutes: its schedule lag (p99, from its /metrics), then the center starts and
   the time until the agent's buffer is drained.

    python bench/agents.py            # full run (about 14 minutes)
    python bench/agents.py --quick    # smoke run (about 2 minutes)
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.engine_run import CLOCK_TICKS, lag_p99, write_config  # noqa: E402
from bench.probe_throughput import pinned, start_farm  # noqa: E402
from tests.conftest import free_port  # noqa: E402

LOCATIONS = ("shiraz", "tabriz", "mashhad")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def with_locations(config: Path) -> None:
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("agencies:", "locations: [{id: shiraz}, {id: tabriz}, {id: mashhad}]\n"
                                                "agent: {silent_after_seconds: 3600}\nagencies:", 1),
                      encoding="utf-8")


def start(*args: str, env: dict[str, str], core: int, log: Path) -> subprocess.Popen[str]:
    """A `didban` process as an operator starts it, pinned to a core, its log in a file (a pipe nobody
    reads would fill and stop it)."""
    with log.open("a", encoding="utf-8") as handle:
        return subprocess.Popen([*pinned(core), sys.executable, "-m", "didban.cli", *args], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=handle, text=True)


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=120)


def wait_http(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return str(answer.read().decode())


def gauge(text: str, name: str) -> float:
    return float(next(line.split()[1] for line in text.splitlines() if line.startswith(name + " ")))


def buckets(text: str) -> dict[float, float]:
    found = {}
    for line in text.splitlines():
        if line.startswith("didban_schedule_lag_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            found[float("inf") if bound == "+Inf" else float(bound)] = float(line.rsplit(" ", 1)[1])
    return found


def tokens(config: Path, env: dict[str, str]) -> dict[str, str]:
    made = {}
    for location in LOCATIONS:
        done = subprocess.run([sys.executable, "-m", "didban.cli", "token", "create", "--role", "agent", "--name",
                               location, "--config", str(config)], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120, check=True)
        made[location] = done.stdout.strip()
    return made


async def post_batches(base: str, token: str, location: str, batches: int, services: int,
                       batch_size: int) -> None:
    import aiohttp

    from collector.buffer import result_row
    from core.model import ProbeResult, Status

    now = int(time.time() * 1000) - batches * batch_size  # distinct times, in the past
    async with aiohttp.ClientSession() as session:
        seq = 0
        for _ in range(batches):
            rows = []
            for _ in range(batch_size):
                seq += 1
                status = Status.DOWN if seq % 97 == 0 else Status.UP
                rows.append(result_row(seq, ProbeResult(f"s{seq % services}", location, now + seq, status, 12.0,
                                                        None if status is Status.UP else "http_status")))
            body = gzip.compress(json.dumps({"results": rows}, separators=(",", ":")).encode(), 5)
            async with session.post(f"{base}/api/ingest", data=body, headers={
                    "Authorization": f"Bearer {token}", "Content-Encoding": "gzip",
                    "Content-Type": "application/json"}) as answer:
                if answer.status != 200:
                    raise RuntimeError(await answer.text())


def ingest_bench(url: str, password: str, folder: Path, batches: int) -> dict[str, float]:
    services, batch_size = 1_000, 5_000
    config, port = folder / "ingest.yaml", free_port()
    write_config(config, 9, services, 30.0, 64, port)
    with_locations(config)
    env = {**os.environ, "DIDBAN_STORE_URL": url, "DIDBAN_STORE_PASSWORD": password, "PYTHONPATH": str(ROOT)}
    keys = tokens(config, env)
    center = start("server", "--config", str(config), env=env, core=1, log=folder / "ingest-center.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 60)
        base = f"http://127.0.0.1:{port}"
        cpu_before, began = cpu_seconds(center.pid), time.monotonic()

        async def all_agents() -> None:
            await asyncio.gather(*(post_batches(base, keys[loc], loc, batches, services, batch_size)
                                   for loc in LOCATIONS))

        asyncio.run(all_agents())
        acknowledged = time.monotonic() - began
        from store.backend import Backend

        feed = Backend(conninfo=url, password=password).feed()
        while feed.position("derive") < feed.newest():  # and the outages derived from all of it
            time.sleep(0.05)
        feed.close()
        elapsed = time.monotonic() - began
        cpu = cpu_seconds(center.pid) - cpu_before
    finally:
        stop(center)
    stored = batches * batch_size * len(LOCATIONS)
    return {"results": stored, "acknowledged": acknowledged, "seconds": elapsed, "per_second": stored / elapsed,
            "cpu_ms_per_1000": 1000 * cpu / (stored / 1000)}


def partition_bench(url: str, password: str, folder: Path, services: int, partition_s: float) -> dict[str, Any]:
    farm, farm_port = start_farm(services, "nginx" if shutil.which("nginx") else "aiohttp", partition_s + 600)
    config, port, listen = folder / "partition.yaml", free_port(), free_port()
    write_config(config, farm_port, services, 30.0, 256, port)
    with_locations(config)
    env = {**os.environ, "DIDBAN_STORE_URL": url, "DIDBAN_STORE_PASSWORD": password, "PYTHONPATH": str(ROOT)}
    token = tokens(config, env)["shiraz"]
    (folder / "agent.token").write_text(token, encoding="utf-8")
    # The agent ships to a center that is not there yet: everything waits in its buffer.
    agent = start("agent", "--config", str(config), "--location", "shiraz", "--center", f"http://127.0.0.1:{port}",
                  "--token-file", str(folder / "agent.token"), "--buffer", str(folder / "shiraz.buffer"),
                  "--listen", f"127.0.0.1:{listen}", env=env, core=1, log=folder / "agent.log")
    center = None
    try:
        metrics = f"http://127.0.0.1:{listen}/metrics"
        wait_http(metrics, 60)
        time.sleep(35)  # the first interval: every check has run once
        first = buckets(scrape(metrics))
        time.sleep(max(0.0, partition_s - 35))
        during = scrape(metrics)
        buffered = gauge(during, "didban_agent_buffered_results")
        lag = lag_p99(first, buckets(during))
        center = start("server", "--config", str(config), env=env, core=0, log=folder / "center.log")
        wait_http(f"http://127.0.0.1:{port}/healthz", 60)  # the center is back: from here the drain is timed
        began = time.monotonic()
        while gauge(scrape(metrics), "didban_agent_buffered_results") > services:  # the backlog, not the new
            if time.monotonic() - began > 900:
                raise RuntimeError("the buffer did not drain in 15 minutes")
            time.sleep(2)  # /metrics of 10,000 services costs the agent a little: not scraped too often
        drained = time.monotonic() - began
    finally:
        stop(agent)
        if center is not None:
            stop(center)
        farm.terminate()
    return {"buffered": buffered, "lag_p99": lag, "drain_seconds": drained, "partition_seconds": partition_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["ingest", "partition"], help="run one of the two")
    args = parser.parse_args()
    from tests.postgres import Cluster

    folder = Path(tempfile.mkdtemp(prefix="didban-bench-agents-"))
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="didban-bench-postgres-")), fsync=True).start()
    try:
        ingest = partition = None
        if args.only != "partition":
            ingest = ingest_bench(cluster.url(cluster.new_database()), cluster.password, folder,
                                  batches=4 if args.quick else 20)
        if args.only != "ingest":
            partition = partition_bench(cluster.url(cluster.new_database()), cluster.password, folder,
                                        services=2_000 if args.quick else 10_000,
                                        partition_s=60 if args.quick else 600)
    finally:
        cluster.stop("fast")
        shutil.rmtree(cluster.root, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
    if ingest is not None:
        print("\nIngest: `didban server` on PostgreSQL (fsync on, core 1), three agents posting 5,000-result "
              "batches\n")
        print("| results | all acknowledged after | all stored and derived after | results/s (target ≥ 5,000) | "
              "center CPU per 1,000 results |")
        print("|---|---|---|---|---|")
        print(f"| {ingest['results']:,.0f} | {ingest['acknowledged']:.1f} s | {ingest['seconds']:.1f} s | "
              f"{ingest['per_second']:,.0f} | {ingest['cpu_ms_per_1000']:.0f} ms |")
    if partition is not None:
        services = 2_000 if args.quick else 10_000
        print(f"\nPartition: one agent, {services:,} services every 30 s, its center unreachable for "
              f"{partition['partition_seconds']:.0f} s, then started\n")
        print("| buffered | schedule lag p99 while partitioned (target ≤ 1 s) | drain once the center answers "
              "(target ≤ 60 s) |")
        print("|---|---|---|")
        print(f"| {partition['buffered']:,.0f} | {partition['lag_p99']} | {partition['drain_seconds']:.1f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
