#!/usr/bin/env python3
"""SLA month benchmarks.

1. Month report for 10,000 services from the store: a month of results with
   realistic outages (0–4 per service, 2–90 minutes), maintenance windows
   (some announced late) and an infrastructure exclusion, written through the
   store, materialized the way the running engine does every 30 minutes, then
   ``settle()`` timed.  The report reads materialized segments plus the raw
   results after the horizon, so its cost does not depend on the check
   interval; results are generated every 30 minutes to keep the set-up short.
2. Replay of an evidence pack holding one service checked every second for a
   30-day month (2,592,000 results), in a fresh process: time and peak RSS.

    python bench/sla_month.py            # both (~3 minutes)
    python bench/sla_month.py --quick    # 1,000 services, 3 days of 1 s results
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MONTH_TEXT = "1403-07"


def month_report(services: int, interval_s: int, store: Any) -> dict[str, Any]:
    """Fill ``store`` (any backend) with a month of 10,000 services' results, materialize, then time the report."""
    from core.config import DidbanConfig
    from core.model import Exclusion, MaintenanceWindow, ProbeResult, Status
    from didban.settlement import settle
    from sla_calc.periods import JalaliMonth
    from store.contract import Batch

    month = JalaliMonth.parse(MONTH_TEXT)
    start, end = month.bounds()
    interval_ms = interval_s * 1000
    config = DidbanConfig.model_validate({
        "agreements": [{"id": "sla", "title": "bench", "valid_from": "1400-01-01", "valid_until": "1410-12-29",
                        "target_percent": 99.5, "monthly_base": 1_000_000,
                        "credit_tiers": [{"below": 99.5, "credit_percent": 10}, {"below": 99, "credit_percent": 25}]}],
        "agencies": [{"id": f"agency-{a}", "name": {"fa": f"دستگاه {a}", "en": f"Agency {a}"},
                      "services": [{"id": f"svc-{a}-{i}", "name": {"fa": "خدمت", "en": "Service"}, "agreement": "sla",
                                    "interval_seconds": interval_s, "timeout_seconds": 10,
                                    "probes": [{"type": "tcp", "target": "127.0.0.1:9"}]}
                                   for i in range(50)]}
                     for a in range(services // 50)],
    })
    rng = random.Random(1)
    t0 = time.perf_counter()
    written = 0
    for _, service in config.services():
        outages = []
        for _ in range(rng.randint(0, 4)):
            at = start + rng.randrange(0, end - start)
            outages.append((at, at + rng.randint(2, 90) * 60_000))
        batch = []
        for ts in range(start - 3 * interval_ms, end + 3 * interval_ms, interval_ms):
            down = any(a <= ts < b for a, b in outages)
            batch.append(ProbeResult(service.id, "tabriz", ts, Status.DOWN if down else Status.UP, 10.0,
                                     "timeout" if down else None))
        # an outage shorter than the interval still shows as two failed checks, as in life
        for a, _ in outages:
            batch.extend(ProbeResult(service.id, "tabriz", a + k * 1000, Status.DOWN, 10.0, "timeout") for k in (1, 2))
        store.write(Batch(results=batch))
        written += len(batch)
        if rng.random() < 0.1:  # a tenth of the services announce maintenance; a third of those too late
            at = start + rng.randrange(0, end - start - 3 * 3_600_000)
            notice_h = rng.choice([100, 80, 24])
            store.add_maintenance(MaintenanceWindow(f"mw-{service.id}", (service.id,), at, at + 2 * 3_600_000,
                                                    at - notice_h * 3_600_000))
    store.add_exclusion(Exclusion("ex-telecom", ("*",), start + 86_400_000, start + 86_400_000 + 1_800_000,
                                  "national link outage"), start)
    generated = time.perf_counter() - t0
    t1 = time.perf_counter()
    for _, service in config.services():
        store.materialize(service.id, "tabriz", end + 3 * interval_ms, interval_ms, service.failure_threshold)
    materialized = time.perf_counter() - t1
    t2 = time.perf_counter()
    settled = settle(config, store, month)
    elapsed = time.perf_counter() - t2
    missed = sum(not s.met for s in settled.report.services)
    return {"services": len(settled.report.services), "results": written, "generate_s": round(generated, 1),
            "materialize_s": round(materialized, 1), "report_s": round(elapsed, 2), "missed": missed}


def write_pack(folder: Path, days: int) -> int:
    """One service checked every second, with an outage every day."""
    from core.model import iso_utc
    from sla_calc.periods import JalaliMonth

    start = JalaliMonth.parse(MONTH_TEXT).start_ms()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "agreement.json").write_text(json.dumps({
        "timezone": "Asia/Tehran", "calendar": "jalali", "month_basis": "nominal_30d", "notice_hours": 72,
        "services": [{"id": "portal", "name": "پورتال", "interval_seconds": 1, "failure_threshold": 2,
                      "target_percent": 99.5, "monthly_base": 0,
                      "credit_tiers": [{"below": 99.5, "credit_percent": 10}]}]}), encoding="utf-8")
    count = 0
    with (folder / "results.jsonl").open("w", encoding="utf-8") as out:
        for second in range(days * 86_400):
            ts = start + second * 1000
            down = second % 86_400 < 120  # two minutes down a day
            out.write(f'{{"service": "portal", "location": "tabriz", "ts": "{iso_utc(ts)}", '
                      f'"status": "{"down" if down else "up"}", "latency_ms": 12.5, '
                      f'"error": {json.dumps("timeout" if down else None)}}}\n')
            count += 1
    for name in ("maintenance.jsonl", "exclusions.jsonl"):
        (folder / name).write_text("", encoding="utf-8")
    return count


def replay_worker(pack: str) -> None:
    from didban.pack_reader import replay

    t0 = time.perf_counter()
    result = replay(pack, MONTH_TEXT)
    elapsed = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": round(elapsed, 2), "peak_rss_mib": round(peak_kib / 1024, 1),
                      "downtime_minutes": result["services"][0]["downtime_minutes"]}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--replay-worker")
    args = parser.parse_args()
    if args.replay_worker:
        replay_worker(args.replay_worker)
        return 0
    services, days = (1000, 3) if args.quick else (10_000, 30)
    with tempfile.TemporaryDirectory() as tmp:
        from store.sql_store import SqliteStore

        store = SqliteStore(Path(tmp) / "bench.sqlite")
        report = month_report(services, 1800, store)
        store.close()
        pack = Path(tmp) / "pack"
        results = write_pack(pack, days)
        done = subprocess.run([sys.executable, __file__, "--replay-worker", str(pack)], capture_output=True,
                              text=True, timeout=600, check=True)
        replayed = json.loads(done.stdout)
    print(f"\nMonth report from the store: {report['services']} services, {report['results']:,} results "
          f"written in {report['generate_s']} s, materialized in {report['materialize_s']} s\n")
    print("| services | month report (target ≤ 5 s) | services that missed the target |")
    print("|---|---|---|")
    print(f"| {report['services']} | {report['report_s']} s | {report['missed']} |")
    print(f"\nReplay of an evidence pack: one service checked every second for {days} days\n")
    print("| results | replay time (target ≤ 15 s) | peak RSS (target ≤ 1 GiB) | downtime found |")
    print("|---|---|---|---|")
    print(f"| {results:,} | {replayed['seconds']} s | {replayed['peak_rss_mib']} MiB "
          f"| {replayed['downtime_minutes']:g} min (expected {2 * days} min) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
