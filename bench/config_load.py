#!/usr/bin/env python3
"""Config loading: `didban validate` on real configs up to the 8 MiB cap and on hostile files.

Each file is checked three times by `didban validate` in its own process, as a user runs it; the time is
the whole command (interpreter start included: median and range) and the memory that process's peak RSS.
Targets (issue: faults and hostile input): no input takes more than 5 s or 300 MiB, or prints a traceback.

    python bench/config_load.py
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CAP = 8 << 20


def services_config(count: int) -> bytes:
    services = [
        {"id": f"svc-{i}", "name": {"fa": f"خدمت {i}", "en": f"Service {i}"}, "agreement": "sla",
         "interval_seconds": 30, "timeout_seconds": 10,
         "probes": [{"type": "http", "url": f"http://127.0.0.1:8080/svc/{i}", "keyword_absent": "maintenance"}],
         "conditions": ["[STATUS] == 200", "[RESPONSE_TIME] < 5000"]}
        for i in range(count)]
    document = {
        "agreements": [{"id": "sla", "title": "bench", "valid_from": "1400-01-01", "valid_until": "1410-12-29",
                        "target_percent": 99.5}],
        "agencies": [{"id": "bench", "name": {"fa": "آزمون", "en": "Bench"}, "services": services}]}
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False).encode()


def largest_under_cap() -> tuple[int, bytes]:
    """The most services (in steps of 500) whose config stays under the 8 MiB cap."""
    count = 24_000
    while len(services_config(count + 500)) <= CAP:
        count += 500
    return count, services_config(count)


def hostile_files() -> list[tuple[str, bytes]]:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]\n" for i in range(9))
    return [
        ("a billion laughs", bomb.encode()),
        ("100,000 nested brackets", b"a: " + b"[" * 100_000 + b"]" * 100_000 + b"\n"),
        ("100,000 nested block lists", b"a:\n" + b"- " * 100_000 + b"x\n"),
        ("a NUL byte", b"a: 1\n\x00\n"),
        ("8 MiB of one value", b"retention_days: " + b"9x" * (CAP // 2 - 20) + b"\n"),
        ("8 MiB of unknown keys", b"".join(b"k%d: 1\n" % i for i in range(CAP // 12))),
        ("900,000 unknown keys", b"".join(b"k%d: 1\n" % i for i in range(450_000))),
        ("4 million tiny values", b"a: [" + b"1," * (CAP // 2 - 8) + b"1]\n"),
        ("a 9 MiB file", b"# " + b"x" * (9 << 20) + b"\n"),
    ]


def validate(path: Path) -> tuple[float, float, int, bool]:
    """(seconds, peak MiB, exit code, traceback printed) for one `didban validate`."""
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", MEASURED, str(path)], cwd=ROOT, capture_output=True, check=False)
    seconds = time.perf_counter() - began
    peak_kib = int(done.stderr.rsplit(b"peak-kib ", 1)[1])
    return seconds, peak_kib / 1024, done.returncode, b"Traceback" in done.stderr


# `didban validate`, reporting its own high-water mark at exit: the RSS a forked child inherits from this
# (larger) process would otherwise count, as rusage keeps the peak across exec.
MEASURED = """
import atexit, runpy, sys
def peak():
    status = open("/proc/self/status").read()
    print("peak-kib", status.split("VmHWM:")[1].split()[0], file=sys.stderr)
atexit.register(peak)
sys.argv = ["didban", "validate", sys.argv[1]]
runpy.run_module("didban.cli", run_name="__main__")
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args()
    count, biggest = largest_under_cap()
    files = [("the shipped config.yaml", (ROOT / "config.yaml").read_bytes()),
             ("1,000 services", services_config(1000)), ("10,000 services", services_config(10_000)),
             (f"{count:,} services (under the 8 MiB cap)", biggest), *hostile_files()]
    print("\n`didban validate`, each in its own process (targets: ≤ 5 s, ≤ 300 MiB, no traceback)\n")
    print("| file | size | time: median (range of 3) | peak RSS | exit | traceback |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name, content in files:
            path = Path(folder) / "config.yaml"
            path.write_bytes(content)
            runs = [validate(path) for _ in range(3)]
            times = sorted(seconds for seconds, _, _, _ in runs)
            mib = max(peak for _, peak, _, _ in runs)
            codes = sorted({code for _, _, code, _ in runs})
            traceback = any(said for _, _, _, said in runs)
            print(f"| {name} | {len(content) / (1 << 20):.2f} MiB | {times[1]:.2f} s ({times[0]:.2f}–{times[2]:.2f}) "
                  f"| {mib:.0f} MiB | {', '.join(map(str, codes))} | {'yes' if traceback else 'no'} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
