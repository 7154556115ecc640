#!/usr/bin/env python3
"""Probe throughput, CPU and scale: Didban's whole path against bare aiohttp.

Runs, against one local target farm (``../shared/bench/targetfarm.py``):

1. the bare-aiohttp baseline (``../shared/bench/baseline_aiohttp.py``) and
   Didban's whole path (probe + conditions + canary guard + collector + SQLite
   + outage derivation), with keep-alive off and on, measured the same way:
   C concurrent workers cycling over N endpoints for D seconds;
2. the scale scenario: 10,000 services at a 30 s interval on the real
   engine (its dispatcher), in process: schedule lag percentiles, RSS, and a
   count proving no result was lost (checks run = results stored = requests
   the farm saw). ``bench/engine_run.py`` measures ``didban run`` itself.

The farm is pinned to core 0 and everything measured to core 1 (taskset), as
``../shared/bench/README.md`` recommends; results are reported as ratios.

    python bench/probe_throughput.py              # full run (~3 min)
    python bench/probe_throughput.py --quick      # smoke run (~40 s)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED_BENCH = ROOT.parent / "shared" / "bench"
sys.path.insert(0, str(ROOT))


def pinned(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


def rss_kb(field: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start_farm(endpoints: int, engine: str, lifetime: float) -> tuple[subprocess.Popen[str], int]:
    command = [*pinned(0), sys.executable, str(SHARED_BENCH / "targetfarm.py"), "-n", str(endpoints),
               "--frac-down", "0.1", "--engine", engine, "--lifetime", str(int(lifetime))]
    farm = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert farm.stdout is not None
    port = int(farm.stdout.readline().strip())
    return farm, port


_stats_calls = 0


def farm_requests(port: int) -> int:
    """Probe requests the farm has answered (aiohttp engine: JSON; nginx: stub_status)."""
    import urllib.request

    global _stats_calls
    _stats_calls += 1
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/__stats", timeout=5) as response:
        text = response.read().decode()
    try:
        stats = json.loads(text)
        return int(stats["ok"] + stats["down"] + stats["slow"] + stats["keyword"])
    except json.JSONDecodeError:
        numbers = text.split("\n")[2].split()
        return int(numbers[2]) - _stats_calls  # nginx counts our /__stats requests too


# -- Didban, in a worker process ------------------------------------------------------


def bench_config(port: int, endpoints: int, interval: float, jitter: float, concurrency: int) -> Any:
    from core.config import DidbanConfig

    services = [
        {"id": f"svc-{i}", "name": {"fa": f"خدمت {i}", "en": f"Service {i}"}, "agreement": "sla",
         "interval_seconds": interval, "timeout_seconds": min(10.0, interval),
         "probes": [{"type": "http", "url": f"http://127.0.0.1:{port}/svc/{i}", "keyword_absent": "maintenance"}],
         "conditions": ["[STATUS] == 200", "[RESPONSE_TIME] < 5000"]}
        for i in range(endpoints)
    ]
    return DidbanConfig.model_validate({
        "agreements": [{"id": "sla", "title": "bench", "valid_from": "1400-01-01", "valid_until": "1410-12-29",
                        "target_percent": 99.5}],
        "agencies": [{"id": "bench", "name": {"fa": "آزمون", "en": "Bench"}, "services": services}],
        "scheduler": {"max_concurrency": concurrency, "jitter_seconds": jitter},
        "store": {"queue_size": 200_000},
    })


async def didban_throughput(port: int, endpoints: int, concurrency: int, duration: float, warmup: float,
                            keepalive: bool, db: str) -> dict[str, Any]:
    """C workers cycling over N services through Engine.check → collector → SQLite."""
    from didban.engine import Engine
    from probes.runner import compile_service
    from store.sql_store import SqliteStore

    config = bench_config(port, endpoints, 60, 0, concurrency)
    store = SqliteStore(db)
    engine = Engine(config, store, "bench", keepalive=keepalive)
    await engine.open()
    checks = [compile_service(s) for _, s in config.services()]
    state = {"measuring": False, "stop": False, "done": 0}
    latencies: list[float] = []

    async def worker(index: int) -> None:
        i = index
        while not state["stop"]:
            result = await engine.check(checks[i % endpoints])
            engine.collector.submit(result)
            i += concurrency
            if state["measuring"]:
                state["done"] += 1
                latencies.append(result.latency_ms)

    tasks = [asyncio.create_task(worker(w)) for w in range(concurrency)]
    await asyncio.sleep(warmup)
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    state["measuring"] = True
    await asyncio.sleep(duration)
    state["measuring"] = False
    cpu1, t1 = cpu_seconds(), time.perf_counter()
    state["stop"] = True
    await asyncio.gather(*tasks)
    await engine.stop()
    stored = store.count_results()
    store.close()
    latencies.sort()
    done = int(state["done"])
    return {
        "rps": round(done / (t1 - t0), 1),
        "cpu_s_per_1000": round((cpu1 - cpu0) / done * 1000, 4) if done else None,
        "p50_ms": round(latencies[len(latencies) // 2], 2) if latencies else None,
        "p99_ms": round(latencies[int(len(latencies) * 0.99)], 2) if latencies else None,
        "checks": engine.checks_run,
        "stored": stored,
        "dropped": engine.collector.stats.dropped,
        "rss_kb": rss_kb(),
    }


async def didban_scale(port: int, services: int, interval: float, seconds: float, db: str) -> dict[str, Any]:
    """The real engine with ``services`` checks at ``interval`` for ``seconds``."""
    from didban.engine import Engine
    from store.sql_store import SqliteStore

    config = bench_config(port, services, interval, interval, 256)
    store = SqliteStore(db)
    engine = Engine(config, store, "bench", keepalive=False, seed=1)
    requests_before = farm_requests(port)
    cpu0 = cpu_seconds()
    await engine.start()
    await asyncio.sleep(seconds)
    await engine.stop()
    cpu = cpu_seconds() - cpu0
    stored = store.count_results()
    store.close()
    requests_after = farm_requests(port)
    return {
        "services": services,
        "interval_s": interval,
        "seconds": seconds,
        "checks": engine.checks_run,
        "stored": stored,
        "farm_requests": requests_after - requests_before,
        "dropped": engine.collector.stats.dropped,
        "lag_p50_ms": round(engine.lag.percentile(50) * 1000, 1),
        "lag_p99_ms": round(engine.lag.percentile(99) * 1000, 1),
        "lag_max_ms": round(engine.lag.worst * 1000, 1),
        "cpu_s_per_1000": round(cpu / engine.checks_run * 1000, 4) if engine.checks_run else None,
        "rss_mib": round(rss_kb() / 1024, 1),
        "rss_peak_mib": round(rss_kb("VmHWM") / 1024, 1),
    }


def worker_main(args: argparse.Namespace) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "bench.sqlite")
        if args.worker == "throughput":
            result = asyncio.run(didban_throughput(args.port, args.endpoints, args.concurrency, args.duration,
                                                   args.warmup, args.keepalive == "on", db))
        else:
            result = asyncio.run(didban_scale(args.port, args.scale_services, 30.0, args.scale_seconds, db))
    print(json.dumps(result), flush=True)


# -- the driver -----------------------------------------------------------------------------


def median_run(runs: list[tuple[dict[str, Any], dict[str, Any]]], side: int) -> dict[str, Any]:
    """The median run of one side by checks/s (its other figures come from that same run)."""
    ordered = sorted((run[side] for run in runs), key=lambda r: float(r["rps"]))
    return ordered[len(ordered) // 2]


def run_json(command: list[str], timeout: float) -> dict[str, Any]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", choices=["throughput", "scale"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--endpoints", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--keepalive", choices=["on", "off"], default="off")
    parser.add_argument("--engine", choices=["aiohttp", "nginx"], default=None,
                        help="target farm engine (default: nginx when installed)")
    parser.add_argument("--scale-services", type=int, default=10_000)
    parser.add_argument("--scale-seconds", type=float, default=95)
    parser.add_argument("--repeats", type=int, default=3, help="throughput runs per mode; medians reported")
    parser.add_argument("--quick", action="store_true", help="short windows, for a smoke run")
    parser.add_argument("--json-out", help="also write the figures to this file")
    args = parser.parse_args()
    if args.worker:
        worker_main(args)
        return 0
    if args.quick:
        args.duration, args.scale_seconds, args.endpoints, args.repeats = 5, 35, 2000, 1
    engine = args.engine or ("nginx" if shutil.which("nginx") else "aiohttp")
    farm, port = start_farm(max(args.endpoints, args.scale_services), engine, 1800)
    rows = []
    try:
        for keepalive in ("off", "on"):
            runs = []
            for _ in range(args.repeats):  # alternate the two so drift hits both alike
                baseline = run_json([*pinned(1), sys.executable, str(SHARED_BENCH / "baseline_aiohttp.py"),
                                     "--port", str(port), "-n", str(args.endpoints), "-c", str(args.concurrency),
                                     "--keepalive", keepalive, "-d", str(args.duration), "--json"], 600)
                didban = run_json([*pinned(1), sys.executable, __file__, "--worker", "throughput",
                                   "--port", str(port), "--endpoints", str(args.endpoints),
                                   "--concurrency", str(args.concurrency), "--duration", str(args.duration),
                                   "--warmup", str(args.warmup), "--keepalive", keepalive], 600)
                runs.append((baseline, didban))
            rows.append((keepalive, median_run(runs, 0), median_run(runs, 1),
                         statistics.median(d["rps"] / b["rps"] for b, d in runs)))
        scale = run_json([*pinned(1), sys.executable, __file__, "--worker", "scale", "--port", str(port),
                          "--scale-services", str(args.scale_services), "--scale-seconds", str(args.scale_seconds)],
                         args.scale_seconds + 300)
    finally:
        farm.terminate()
        farm.wait(10)

    print(f"\nProbe throughput: farm engine {engine}, {args.endpoints} endpoints (10% answer 503), "
          f"{args.concurrency} concurrent, medians of {args.repeats} × {args.duration:g} s, farm on core 0, "
          "client on core 1\n")
    print("| keep-alive | bare aiohttp checks/s | Didban checks/s | ratio (target ≥ 0.80) "
          "| bare CPU-s/1000 | Didban CPU-s/1000 (target ≤ 0.55) | Didban p99 ms | stored / checked |")
    print("|---|---|---|---|---|---|---|---|")
    for keepalive, baseline, didban, ratio in rows:
        print(f"| {keepalive} | {baseline['rps']:.0f} | {didban['rps']:.0f} | {ratio:.2f} "
              f"| {baseline['cpu_s_per_1000']} | {didban['cpu_s_per_1000']} | {didban['p99_ms']} "
              f"| {didban['stored']} / {didban['checks']} |")
    print(f"\nScale: {scale['services']} services every {scale['interval_s']:g} s on one core, "
          f"real engine, {scale['seconds']:g} s\n")
    print("| schedule lag p50 | p99 (target ≤ 1 s) | max | RSS (target ≤ 300 MiB) | peak RSS "
          "| checks run | results stored | farm requests | dropped | CPU-s/1000 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {scale['lag_p50_ms']} ms | {scale['lag_p99_ms']} ms | {scale['lag_max_ms']} ms "
          f"| {scale['rss_mib']} MiB | {scale['rss_peak_mib']} MiB | {scale['checks']} | {scale['stored']} "
          f"| {scale['farm_requests']} | {scale['dropped']} | {scale['cpu_s_per_1000']} |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"throughput": rows, "scale": scale}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
