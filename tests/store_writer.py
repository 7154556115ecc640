"""A writer the contract tests kill with SIGKILL: one committed batch per line printed.

Usage: python -m tests.store_writer STORE_URL (the password, if any, in DIDBAN_STORE_PASSWORD)
Batch i holds one result of portal at tabriz (up for i < 5, down after) and the tracker the collector
would keep; batch 5 opens an outage.
"""

from __future__ import annotations

import os
import sys
import time

from core.model import ProbeResult, Status
from sla_calc.derive import TrackerState
from store.backend import from_url
from store.contract import Batch, OutageChange

START, INTERVAL = 1_000_000, 30_000


def main(url: str) -> None:
    store = from_url(url, os.environ.get("DIDBAN_STORE_PASSWORD") or None).store()
    i = 0
    while True:
        ts = START + i * INTERVAL
        down = i >= 5
        tracker = TrackerState(ts, START + 5 * INTERVAL if down else None, i - 4 if down else 0,
                               ts if down else None, down)
        store.write(Batch(results=[ProbeResult("portal", "tabriz", ts, Status.DOWN if down else Status.UP, 5.0)],
                          trackers={("portal", "tabriz"): tracker},
                          changes=[OutageChange("portal", ts, True, "timeout")] if i == 5 else []))
        print(f"committed {i + 1}", flush=True)
        i += 1
        time.sleep(0.005)


if __name__ == "__main__":
    main(sys.argv[1])
