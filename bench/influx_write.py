#!/usr/bin/env python3
"""InfluxDB feed: a backlog of 1,000,000 results drained into local VictoriaMetrics, then sustained
replication of 10,000 services at 30 s (≈ 333 results/s).

VictoriaMetrics (Debian's package, influxdb-client's v2 write endpoint) runs on core 0, the sink on
core 1.  Reported: drain rate, CPU per 10,000 points, and how far the sustained feed lags.

    python bench/influx_write.py            # 1 M backlog, 30 s sustained
    python bench/influx_write.py --quick    # 100 k backlog, 10 s
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SERVICES = 10_000


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def config():  # type: ignore[no-untyped-def]
    from core.config import DidbanConfig

    return DidbanConfig.model_validate({
        "agreements": [{"id": "sla", "title": "t", "valid_from": "1400-01-01", "valid_until": "1410-12-29",
                        "target_percent": 99.5}],
        "agencies": [{"id": f"agency-{a}", "name": {"fa": "د", "en": "A"}, "services": [
            {"id": f"svc-{a}-{i}", "name": {"fa": "خ", "en": "S"}, "agreement": "sla", "interval_seconds": 30,
             "timeout_seconds": 10, "probes": [{"type": "http", "url": "http://127.0.0.1:9/"}]}
            for i in range(100)]} for a in range(SERVICES // 100)],
    })


def results(start: int, count: int, offset: int) -> list:  # type: ignore[type-arg]
    from core.model import ProbeResult, Status

    return [ProbeResult(f"svc-{(offset + i) // 100 % 100}-{(offset + i) % 100}", "tabriz", start + offset + i,
                        Status.UP if i % 50 else Status.DOWN, 25.0, None if i % 50 else "timeout")
            for i in range(count)]


async def run(backlog: int, sustained_s: float, vm_url: str, db: Path) -> dict[str, float]:
    from collector.influx_sink import InfluxSink
    from didban.settlement import settle
    from store.backend import Backend
    from store.contract import Batch
    from store.sql_store import SqliteStore

    store = SqliteStore(db)
    start = int(time.time() * 1000) - 86_400_000
    for offset in range(0, backlog, 50_000):
        store.write(Batch(results=results(start, min(50_000, backlog - offset), offset)))
    backend = Backend(path=db)
    sink = InfluxSink(config(), backend.feed(), backend.store, settle, url=vm_url, org="didban", bucket="didban",
                      token="", batch_size=10_000)
    c0, t0 = cpu(), time.perf_counter()
    drained = 0
    while written := await sink.replicate_once():
        drained += written
    drain_s, drain_cpu = time.perf_counter() - t0, cpu() - c0

    stop = asyncio.Event()
    feed = asyncio.create_task(sink.run(stop, poll_s=0.2))
    c1 = cpu()
    added, worst_lag = 0, 0
    begin = time.perf_counter()
    while time.perf_counter() - begin < sustained_s:
        store.write(Batch(results=results(start + 10**9, 333, backlog + added)))
        added += 333
        await asyncio.sleep(1.0)
        worst_lag = max(worst_lag, store.count_results() - sink.written)
    await asyncio.sleep(1.0)
    stop.set()
    await feed
    sustained_cpu = cpu() - c1
    behind = store.count_results() - sink.written
    store.close()
    return {"backlog": drained, "drain_s": drain_s, "drain_rate": drained / drain_s,
            "drain_cpu_per_10k": drain_cpu / drained * 10_000, "sustained": added,
            "sustained_cpu_per_10k": sustained_cpu / max(added, 1) * 10_000, "worst_lag": worst_lag,
            "behind_at_end": behind}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    backlog, sustained = (100_000, 10.0) if args.quick else (1_000_000, 30.0)
    from tests.conftest import free_port, wait_http

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        pin = ["taskset", "-c", "0"] if (os.cpu_count() or 1) > 1 else []
        vm = subprocess.Popen([*pin, "victoria-metrics", f"-storageDataPath={tmp}/vm",
                               f"-httpListenAddr=127.0.0.1:{port}", "-loggerLevel=ERROR", "-retentionPeriod=100y"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_http(f"http://127.0.0.1:{port}/health")
            if (os.cpu_count() or 1) > 1:
                os.sched_setaffinity(0, {1})
            figures = asyncio.run(run(backlog, sustained, f"http://127.0.0.1:{port}", Path(tmp) / "bench.sqlite"))
        finally:
            vm.terminate()
            vm.wait(30)
    print(f"\nInfluxDB feed into VictoriaMetrics: a backlog of {figures['backlog']:,.0f} results, then "
          f"{figures['sustained']:,.0f} results at 333/s\n")
    print("| backlog drained | drain time | drain rate | CPU-s per 10,000 points (drain) "
          "| CPU-s per 10,000 points (sustained) | worst lag (sustained) | behind at the end |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {figures['backlog']:,.0f} | {figures['drain_s']:.1f} s | {figures['drain_rate']:,.0f} points/s "
          f"| {figures['drain_cpu_per_10k']:.3f} | {figures['sustained_cpu_per_10k']:.3f} "
          f"| {figures['worst_lag']:,.0f} results | {figures['behind_at_end']:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
