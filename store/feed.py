"""The time-series feed's reading of the store: results in stored order, and the feed's cursor."""

from __future__ import annotations

from core.model import ProbeResult, Status
from store.database import Database, upsert

_STATUSES = (Status.UP, Status.DOWN, Status.UNKNOWN)
_UPSERT_CURSOR = upsert("influx_cursor", ("stream", "position"), ("stream",))


class FeedCursor:
    def __init__(self, db: Database) -> None:
        self._db = db

    def position(self, stream: str) -> int:
        row = self._db.execute("SELECT position FROM influx_cursor WHERE stream = ?", (stream,)).fetchone()
        return int(row[0]) if row else 0

    def advance(self, stream: str, position: int) -> None:
        self._db.execute(_UPSERT_CURSOR, (stream, position))

    def newest(self) -> int:
        """The position of the newest stored result (0: none)."""
        row = self._db.execute("SELECT max(rowid) FROM results").fetchone()
        return int(row[0] or 0)

    def results_after(self, after: int, since_ms: int, limit: int) -> list[tuple[int, ProbeResult]]:
        rows = self._db.execute(
            "SELECT r.rowid, s.id, l.id, r.ts_ms, r.status, r.latency_ms, r.error, r.detail, r.http_status, "
            "r.cert_days_left FROM results r JOIN services s ON s.key = r.service "
            "JOIN locations l ON l.key = r.location WHERE r.rowid > ? AND r.ts_ms >= ? ORDER BY r.rowid LIMIT ?",
            (after, since_ms, limit),
        ).fetchall()
        return [(rowid, ProbeResult(service, location, ts, _STATUSES[status], latency, error, detail or "", http,
                                    cert))
                for rowid, service, location, ts, status, latency, error, detail, http, cert in rows]

    def close(self) -> None:
        self._db.close()
