"""An agent's durable buffer: every result, numbered, on disk before it is shipped.

A SQLite file in WAL mode with ``synchronous=FULL``: an append is on disk when
it returns.  Each result gets the next sequence number of this agent
(``AUTOINCREMENT`` never reuses one, even after the oldest are acknowledged and
deleted), so the center can store a batch once however often it is sent.
The buffer is bounded by age (``max_age_days``): what is older than that
while the center stays unreachable is dropped, oldest first, counted and
logged — the only way a result is ever lost, and a loud one.
"""

from __future__ import annotations

import gzip
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

from core.model import ProbeResult, Status

log = logging.getLogger("didban.agent")
_STATUS = {s.value: s for s in Status}


def result_row(seq: int, result: ProbeResult) -> list[object]:
    """The wire form of a result (compact: a batch is thousands of them)."""
    return [seq, result.service, result.ts_ms, result.status.value, round(result.latency_ms, 3), result.error,
            result.detail or "", result.http_status, result.cert_days_left]


def row_result(row: list[Any], location: str) -> ProbeResult:
    """A wire row back to a result; the location is the sender's, never the row's."""
    _, service, ts_ms, status, latency, error, detail, http_status, cert = row
    return ProbeResult(str(service), location, int(ts_ms), _STATUS[str(status)], float(latency),
                       None if error is None else str(error), str(detail or ""),
                       None if http_status is None else int(http_status), None if cert is None else float(cert))


class Buffer:
    def __init__(self, path: Path, max_age_days: float = 7.0) -> None:
        self.path = path
        self.max_age_ms = int(max_age_days * 86_400_000)
        self.dropped = 0  # results older than the bound, dropped while the center was unreachable
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS buffered (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                         "ts_ms INTEGER NOT NULL, row TEXT NOT NULL)")
        # Counted once here and then kept by hand: count(*) reads the whole table, and a 200,000-result
        # backlog would be read every group commit, on the thread that also reads the batches to ship.
        self._depth = int(self._db.execute("SELECT count(*) FROM buffered").fetchone()[0])

    def append(self, results: list[ProbeResult]) -> int:
        """Store results durably (one transaction, fsync'd); returns the last sequence number given."""
        if not results:
            return self.last_seq()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            base = self.last_seq()  # explicit numbers advance AUTOINCREMENT's counter too
            self._db.executemany("INSERT INTO buffered (seq, ts_ms, row) VALUES (?, ?, ?)", [
                (base + k, result.ts_ms, json.dumps(result_row(base + k, result), ensure_ascii=False))
                for k, result in enumerate(results, start=1)])
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._depth += len(results)
        return base + len(results)

    def oldest(self, limit: int) -> list[list[Any]]:
        """Up to ``limit`` buffered rows, oldest first (each starts with its sequence number)."""
        rows = self._db.execute("SELECT row FROM buffered ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [json.loads(row) for (row,) in rows]

    def batch(self, limit: int, after: int = 0) -> tuple[int, int, bytes]:
        """The oldest ``limit`` rows (numbered above ``after``) as a gzip'd ingest body: (their last sequence
        number, how many, body).

        The rows are kept as the JSON the wire carries, so a batch is joined, not parsed and written again.
        """
        rows = self._db.execute("SELECT seq, row FROM buffered WHERE seq > ? ORDER BY seq LIMIT ?",
                                (after, limit)).fetchall()
        if not rows:
            return 0, 0, b""
        body = '{"results":[' + ",".join(row for _, row in rows) + "]}"
        return int(rows[-1][0]), len(rows), gzip.compress(body.encode(), 1)

    def acknowledge(self, seq: int) -> int:
        """The center stored everything up to ``seq``: forget it. Returns how many were removed."""
        removed = int(self._db.execute("DELETE FROM buffered WHERE seq <= ?", (seq,)).rowcount)
        self._depth -= removed
        return removed

    def trim(self, now_ms: int) -> int:
        """Drop what is older than the bound (the center has been unreachable that long)."""
        removed = int(self._db.execute("DELETE FROM buffered WHERE ts_ms < ?",
                                       (now_ms - self.max_age_ms,)).rowcount)
        self._depth -= removed
        if removed:
            self.dropped += removed
            log.error("agent buffer full: %d results older than %g days dropped (%d in all); the center has been "
                      "unreachable that long", removed, self.max_age_ms / 86_400_000, self.dropped)
        return removed

    def depth(self) -> int:
        return self._depth

    def oldest_ms(self) -> int | None:
        """The time of the first result waiting (by sequence: one index step, not a scan of the backlog)."""
        row = self._db.execute("SELECT ts_ms FROM buffered ORDER BY seq LIMIT 1").fetchone()
        return None if row is None else int(row[0])

    def last_seq(self) -> int:
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'buffered'").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._db.close()
