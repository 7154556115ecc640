#!/usr/bin/env python3
"""Store benchmarks, SQLite and a local PostgreSQL side by side.

1. Sustained result writes through the collector's own path (``SqlStore.write``:
   one transaction per batch of 2,000 results with their trackers, as the
   collector commits them), three locations × 10,000 services round-robin.
   Target on PostgreSQL: ≥ 5,000 results/s (three locations × 10,000 services
   at 30 s is 1,000/s).
2. Opening a store whose schema is current (what every CLI command and
   request worker pays): the schema check is one query.
3. The month report for 10,000 services on PostgreSQL (target ≤ 5 s), the
   same generator as ``bench/sla_month.py``.
4. Retention on PostgreSQL: compacting a month of one service's raw results
   (an indexed DELETE; no table rewrite, autovacuum reclaims the space).

The PostgreSQL server is Debian's, started for the run in a temporary folder
on a free loopback port (as ``nobody`` when run as root), fsync on.

    python bench/store_write.py           # ~3 minutes
    python bench/store_write.py --quick   # 1,000 services, 10 s of writes
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def sustained_writes(store: Any, services: int, seconds: float, batch_size: int = 2_000) -> float:
    from core.model import ProbeResult, Status
    from sla_calc.derive import TrackerState
    from store.contract import Batch

    locations = ("tabriz", "tehran", "mashhad")
    pairs = [(f"svc-{i}", location) for location in locations for i in range(services)]
    ts, written, cursor = 1_700_000_000_000, 0, 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        results, trackers = [], {}
        for _ in range(batch_size):
            service, location = pairs[cursor % len(pairs)]
            cursor += 1
            ts += 1
            results.append(ProbeResult(service, location, ts, Status.UP, 12.5, None, "", 200))
            trackers[(service, location)] = TrackerState(ts)
        store.write(Batch(results=results, trackers=trackers))
        written += len(results)
    return written / (time.perf_counter() - started)


def open_cost(backend: Any, times: int = 50) -> float:
    backend.store().close()
    started = time.perf_counter()
    for _ in range(times):
        backend.database().close()
    return (time.perf_counter() - started) / times * 1000


def retention(store: Any) -> tuple[int, float]:
    from core.model import ProbeResult, Status
    from store.contract import Batch

    start, interval = 1_600_000_000_000, 30_000
    results = [ProbeResult("retained", "tabriz", start + i * interval, Status.UP if i % 500 else Status.DOWN, 9.0)
               for i in range(86_400)]  # a month at 30 s
    for offset in range(0, len(results), 5_000):
        store.write(Batch(results=results[offset:offset + 5_000]))
    started = time.perf_counter()
    removed = store.compact("retained", "tabriz", start + 86_000 * interval, interval, 2)
    return removed, time.perf_counter() - started


def main() -> int:
    from bench.sla_month import month_report
    from store.backend import Backend
    from tests.postgres import Cluster

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    services, seconds = (1_000, 10.0) if args.quick else (10_000, 30.0)
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="didban-bench-postgres-")), fsync=True).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            backends = {"SQLite (WAL)": Backend(path=Path(tmp) / "bench.sqlite"),
                        "PostgreSQL 15": Backend(conninfo=cluster.url(cluster.new_database()),
                                                 password=cluster.password)}
            rows = []
            for name, backend in backends.items():
                store = backend.store()
                rate = sustained_writes(store, services, seconds)
                store.close()
                rows.append((name, rate, open_cost(backend)))
            print(f"\nSustained result writes ({services:,} services × 3 locations, batches of 2,000, "
                  f"{seconds:g} s each)\n")
            print("| store | results/s (target on PostgreSQL ≥ 5,000) | opening a current store |")
            print("|---|---|---|")
            for name, rate, cost in rows:
                print(f"| {name} | {rate:,.0f} | {cost:.1f} ms |")
            month_backend = Backend(conninfo=cluster.url(cluster.new_database()), password=cluster.password)
            store = month_backend.store()
            report = month_report(services, 1800, store)
            removed, seconds_taken = retention(store)
            store.close()
            print(f"\nMonth report on PostgreSQL: {report['results']:,} results written in {report['generate_s']} s, "
                  f"materialized in {report['materialize_s']} s\n")
            print("| services | month report (target ≤ 5 s) | services that missed the target |")
            print("|---|---|---|")
            print(f"| {report['services']:,} | {report['report_s']} s | {report['missed']} |")
            print("\nRetention on PostgreSQL: a month of one service's 30 s results compacted\n")
            print("| raw results removed | time |")
            print("|---|---|")
            print(f"| {removed:,} | {seconds_taken:.2f} s |")
    finally:
        cluster.stop("fast")
        shutil.rmtree(cluster.root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
