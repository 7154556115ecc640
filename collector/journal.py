"""The local journal: results that could not reach the store survive a crash.

While the store is unavailable (locked, disk full, a network store down),
the collector appends the waiting results here, fsync'd per append, in the
order they were taken.  At start, and once the store answers again, the
journal is replayed in order and idempotently (a result the store already
holds is not stored twice), then emptied.  The journal lives next to the
store (``<store>.journal``) or in ``store.journal_dir``: on another disk it
also survives the store's own disk filling up.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from core.model import ProbeResult, Status

log = logging.getLogger("didban.journal")


def _line(result: ProbeResult) -> bytes:
    return json.dumps([result.service, result.location, result.ts_ms, result.status.value, result.latency_ms,
                       result.error, result.detail, result.http_status, result.cert_days_left],
                      ensure_ascii=False).encode() + b"\n"


class Journal:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.appended = 0

    def append(self, results: Iterable[ProbeResult]) -> int:
        data = b"".join(_line(r) for r in results)
        if not data:
            return 0
        with self.path.open("ab") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        count = data.count(b"\n")
        self.appended += count
        return count

    def read(self) -> list[ProbeResult]:
        """Every journaled result in order; a torn last line (a crash mid-append) is skipped."""
        if not self.path.exists():
            return []
        results = []
        with self.path.open("rb") as handle:
            for number, raw in enumerate(handle, 1):
                try:
                    s, loc, ts, status, latency, error, detail, http, cert = json.loads(raw)
                    results.append(ProbeResult(s, loc, int(ts), Status(status), float(latency), error, detail,
                                               http, cert))
                except (ValueError, TypeError):
                    log.warning("%s:%d: an unreadable line (torn by a crash?) was skipped", self.path, number)
        return results

    def clear(self) -> None:
        if self.path.exists():
            with self.path.open("wb") as handle:
                os.fsync(handle.fileno())
        self.appended = 0
