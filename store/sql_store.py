"""The system of record's results and SLA records, in SQL both backends speak.

Each collector batch is one transaction.  Services and locations are
interned to integer keys so a result row stays small: 10,000 services at a
30 s interval write ~29 M rows a day.  The schema is made and upgraded by
``store.schema``; this module only reads and writes it.
"""

from __future__ import annotations

import json
import logging
import operator
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.model import Credit, Exclusion, MaintenanceWindow, Outage, ProbeResult, ServiceState, Status
from core.tracking import new_code
from sla_calc.derive import Segment, TrackerState, derive_segments
from store.contract import AgentProgress, Batch, OutageChange
from store.database import Database, upsert

log = logging.getLogger("didban.store")

_STATUS_CODE = {Status.UP: 0, Status.DOWN: 1, Status.UNKNOWN: 2}
_CODE_STATUS = {code: status for status, code in _STATUS_CODE.items()}
_TIME = operator.attrgetter("ts_ms")
# A change of state is stored with its result; only the latest time and latency of an unchanged state wait
# this long (this process reads its own cache). Every 2 s, at 20,000 services, it was one upsert per result.
LATEST_FLUSH_SECONDS = 15.0
# Segments are materialized up to an hour ago: a result younger than this cannot be behind a horizon.
LATE_MS = 50 * 60_000

_CHUNK_BYTES = 8 << 20
_BULK_PAIRS = 64  # from this many (service, location) on, a period's stored segments are read in one query
_SEGMENTS_OF_PAIR = ("SELECT start_ms, end_ms, down FROM segments WHERE service = ? AND location = ? "
                     "AND start_ms < ? AND end_ms > ? ORDER BY start_ms")
_RAW_OF_PAIR = ("SELECT ts_ms, status FROM results WHERE service = ? AND location = ? AND ts_ms >= ? AND ts_ms < ? "
                "ORDER BY ts_ms")


_RESULT_COLUMNS = ("service", "location", "ts_ms", "status", "latency_ms", "error", "detail", "http_status",
                   "cert_days_left")
_LATEST_COLUMNS = ("service", "location", "ts_ms", "status", "since_ms", "latency_ms", "error")
_TRACKER_COLUMNS = ("service", "location", "last_ts_ms", "run_start_ms", "run_length", "run_last_ms", "open")
_PAIR = ("service", "location")
_UPSERT_HORIZON = upsert("horizons", ("service", "location", "horizon_ms"), _PAIR)
_UPSERT_CURSOR = upsert("influx_cursor", ("stream", "position"), ("stream",))
# An agent's progress only moves forward; its newest result's time too (a late batch holds older ones).
_UPSERT_PROGRESS = (
    "INSERT INTO agent_progress (location, last_seq, last_result_ms, last_ingest_ms) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (location) DO UPDATE SET last_seq = excluded.last_seq, last_ingest_ms = excluded.last_ingest_ms, "
    "last_result_ms = CASE WHEN agent_progress.last_result_ms IS NULL "
    "OR excluded.last_result_ms > agent_progress.last_result_ms THEN excluded.last_result_ms "
    "ELSE agent_progress.last_result_ms END")
RESULTS_LOCK = 0x646964_7265_73  # the advisory-lock key the transactions that add results take turns with


class SqlStore:
    """Results and SLA records over one connection, used by one thread at a time (the collector's
    writer thread, a CLI command, or one request's worker thread)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._load_caches()

    @property
    def db(self) -> Database:
        """The connection (for a copy or a raw check that goes past the store's own methods)."""
        return self._db

    def describe(self) -> str:
        return self._db.describe()

    def reload(self) -> None:
        """Read the caches again (rows were written past this object: a copy, another writer)."""
        self._load_caches()

    def _load_caches(self) -> None:
        """Interned keys, and the latest result of each (service, location) to keep "since" exact.

        Reloaded after a rollback so the caches never hold what was not committed.
        """
        keys: dict[tuple[str, str], int] = {}
        ids: dict[tuple[str, int], str] = {}
        for table in ("services", "locations"):
            for key, ident in self._db.execute(f"SELECT key, id FROM {table}").fetchall():
                keys[(table, ident)] = key
                ids[(table, key)] = ident
        rows = self._db.execute("SELECT service, location, ts_ms, status, since_ms, latency_ms, error "
                                "FROM latest").fetchall()
        latest = {(s, loc): (ts, st, since, lat, err) for s, loc, ts, st, since, lat, err in rows}
        horizons = {(s, loc): h for s, loc, h in
                    self._db.execute("SELECT service, location, horizon_ms FROM horizons").fetchall()}
        # Assigned together once all is read: a failed reload leaves the previous caches whole.
        self._keys, self._ids, self._latest, self._horizons = keys, ids, latest, horizons
        self._pairs: dict[str, dict[str, tuple[int, int]]] = {}  # service → location → their keys
        self._latest_dirty: set[tuple[int, int]] = set()
        self._latest_flushed = time.monotonic()
        self._locations: dict[int, set[int]] | None = None  # service → its locations, built when first asked
        self._stale = False

    # -- interning ---------------------------------------------------------

    def _key(self, table: str, ident: str) -> int:
        key = self._keys.get((table, ident))
        if key is None:
            self._db.execute(f"INSERT INTO {table} (id) VALUES (?) ON CONFLICT DO NOTHING", (ident,))
            (key,) = self._db.execute(f"SELECT key FROM {table} WHERE id = ?", (ident,)).fetchone()
            self._keys[(table, ident)] = key
            self._ids[(table, key)] = ident
        return key

    def _keys_of(self, result: ProbeResult) -> tuple[int, int]:
        """(service key, location key): two lookups of strings, once per result stored."""
        by_location = self._pairs.get(result.service)
        if by_location is None:
            by_location = self._pairs[result.service] = {}
        pair = by_location.get(result.location)
        if pair is None:
            pair = by_location[result.location] = (self._key("services", result.service),
                                                   self._key("locations", result.location))
        return pair

    def _ident(self, table: str, key: int) -> str:
        ident = self._ids.get((table, key))
        if ident is None:  # interned by another process (another writer) after this one loaded its caches
            (ident,) = self._db.execute(f"SELECT id FROM {table} WHERE key = ?", (key,)).fetchone()
            self._keys[(table, ident)] = key
            self._ids[(table, key)] = ident
        return ident

    def _service(self, key: int) -> str:
        return self._ident("services", key)

    def _location(self, key: int) -> str:
        return self._ident("locations", key)

    # -- writing -----------------------------------------------------------

    def write(self, batch: Batch) -> list[Outage]:
        """Raises StoreUnavailable (locked, disk full, read-only, connection lost): nothing was written."""
        if self._stale:
            self._load_caches()
        try:
            with self._db.transaction():
                if batch.results:  # a center's derivation stores no results: it never waits on an agent's batch
                    self._in_stored_order()
                return self._write(batch)
        except BaseException:
            self._stale = True  # the caches may hold what was not committed: reloaded before the next write
            raise

    def _in_stored_order(self) -> None:
        """Results commit in the order of their row numbers, so a reader of the stream (a center deriving
        outages) that has seen row N has seen every row before it.  SQLite has one writer at a time anyway;
        on PostgreSQL the transactions that add results take turns."""
        if self._db.dialect == "postgresql":
            self._db.execute("SELECT pg_advisory_xact_lock(?)", (RESULTS_LOCK,))

    def ingest(self, location: str, batch: Sequence[tuple[int, ProbeResult]], now_ms: int) -> tuple[int, int]:
        if self._stale:
            self._load_caches()
        try:
            with self._db.transaction():
                self._in_stored_order()
                row = self._db.execute("SELECT last_seq FROM agent_progress WHERE location = ?",
                                       (location,)).fetchone()
                stored = int(row[0]) if row else 0
                fresh = [result for seq, result in batch if seq > stored]
                if fresh:
                    self._write(Batch(results=fresh))
                top = max([stored, *(seq for seq, _ in batch)])
                newest = max((r.ts_ms for r in fresh), default=None)
                self._db.execute(_UPSERT_PROGRESS, (location, top, newest, now_ms))
            return top, len(fresh)
        except BaseException:
            self._stale = True
            raise

    def agents(self) -> list[AgentProgress]:
        rows = self._db.execute("SELECT location, last_seq, last_result_ms, last_ingest_ms FROM agent_progress "
                                "ORDER BY location").fetchall()
        return [AgentProgress(str(loc), int(seq), None if last is None else int(last), int(at))
                for loc, seq, last, at in rows]

    def _write(self, batch: Batch) -> list[Outage]:
        db = self._db
        changed: list[Outage] = []
        rows = []
        touched: set[tuple[int, int]] = set()
        results = sorted(batch.results, key=_TIME)
        if results and results[0].ts_ms < time.time() * 1000 - LATE_MS:
            # Results old enough to be behind a horizon: check against the database's, not a cached one.
            self._fresh_horizons([self._keys_of(result) for result in results])
        latest, horizons, dirty = self._latest, self._horizons, self._latest_dirty
        for result in results:
            pair = self._keys_of(result)
            ts_ms, code = result.ts_ms, _STATUS_CODE[result.status]
            rows.append((*pair, ts_ms, code, result.latency_ms, result.error, result.detail or None,
                         result.http_status, result.cert_days_left))
            previous = latest.get(pair)
            if previous is None:
                self._locations = None  # a new (service, location): the index is built again when asked
            if previous is None or ts_ms >= previous[0]:
                state_changed = previous is None or previous[1] != code
                since = ts_ms if state_changed else previous[2]  # type: ignore[index]
                latest[pair] = (ts_ms, code, since, result.latency_ms, result.error)
                (touched if state_changed else dirty).add(pair)
            horizon = horizons.get(pair)
            if horizon is not None and ts_ms <= horizon:
                self._roll_back_horizon(pair, ts_ms)
        db.insert_many("results", _RESULT_COLUMNS, rows)
        # A change of state is written with its result, so "since" survives a crash; the
        # last latency of an unchanged state is refreshed every LATEST_FLUSH_SECONDS.
        if time.monotonic() - self._latest_flushed > LATEST_FLUSH_SECONDS:
            touched |= self._latest_dirty
            self._latest_dirty = set()
            self._latest_flushed = time.monotonic()
        self._store_latest(touched)
        db.insert_many("trackers", _TRACKER_COLUMNS, [
            (self._key("services", svc), self._key("locations", loc), st.last_ts_ms,
             st.run_start_ms, st.run_length, st.run_last_ms, int(st.open))
            for (svc, loc), st in batch.trackers.items()
        ], update_on=_PAIR)
        for change in batch.changes:
            outage = self._apply(change)
            if outage is not None:
                changed.append(outage)
        if batch.cursor is not None:
            db.execute(_UPSERT_CURSOR, batch.cursor)
        return changed

    def record_outage(self, service: str, start_ms: int, end_ms: int, error: str | None) -> Outage:
        row = self._db.execute(
            "INSERT INTO outages (service, start_ms, end_ms, error, tracking_code) VALUES (?, ?, ?, ?, ?) RETURNING *",
            (self._key("services", service), start_ms, end_ms, error, new_code("OT"))).fetchone()
        return self._outage(row)

    def _apply(self, change: OutageChange) -> Outage | None:
        service = self._key("services", change.service)
        if change.opening:
            row = self._db.execute(
                "INSERT INTO outages (service, start_ms, end_ms, error, tracking_code) "
                "VALUES (?, ?, NULL, ?, ?) ON CONFLICT DO NOTHING RETURNING *",
                (service, change.at_ms, change.error, new_code("OT")),
            ).fetchone()
            if row is None:
                return None  # already open (a restart replayed it): never duplicate
        else:
            row = self._db.execute(
                "UPDATE outages SET end_ms = ? WHERE service = ? AND end_ms IS NULL RETURNING *",
                (change.at_ms, service),
            ).fetchone()
            if row is None:
                return None
        return self._outage(row)

    def _outage(self, row: tuple[int, int, int, int | None, str | None, str]) -> Outage:
        ident, service, start_ms, end_ms, error, code = row
        return Outage(ident, self._service(service), start_ms, end_ms, error, code)

    # -- reading -----------------------------------------------------------

    def tracker_states(self) -> dict[tuple[str, str], TrackerState]:
        return {
            (self._service(s), self._location(loc)): TrackerState(last, start, length, run_last, bool(is_open))
            for s, loc, last, start, length, run_last, is_open in self._db.execute("SELECT * FROM trackers")
        }

    def open_outages(self) -> dict[str, Outage]:
        rows = self._db.execute("SELECT * FROM outages WHERE end_ms IS NULL").fetchall()
        return {outage.service: outage for outage in map(self._outage, rows)}

    def outages(
        self, service: str | None = None, start_ms: int | None = None, end_ms: int | None = None
    ) -> list[Outage]:
        query = "SELECT * FROM outages WHERE 1=1"
        params: list[object] = []
        if service is not None:
            if ("services", service) not in self._keys:
                return []
            query += " AND service = ?"
            params.append(self._keys[("services", service)])
        if end_ms is not None:
            query += " AND start_ms < ?"
            params.append(end_ms)
        if start_ms is not None:
            query += " AND (end_ms IS NULL OR end_ms > ?)"
            params.append(start_ms)
        rows = self._db.execute(query + " ORDER BY start_ms", params).fetchall()
        return [self._outage(row) for row in rows]

    def results(self, service: str, start_ms: int, end_ms: int) -> list[ProbeResult]:
        key = self._keys.get(("services", service))
        if key is None:
            return []
        rows = self._db.execute(
            "SELECT location, ts_ms, status, latency_ms, error, detail, http_status, cert_days_left FROM results "
            "WHERE service = ? AND ts_ms >= ? AND ts_ms < ? ORDER BY ts_ms, location, status",
            (key, start_ms, end_ms),
        )
        return [
            ProbeResult(service, self._location(loc), ts, _CODE_STATUS[st], lat, err, det or "", http, cert)
            for loc, ts, st, lat, err, det, http, cert in rows
        ]

    def missing(self, results: Sequence[ProbeResult]) -> list[ProbeResult]:
        """Those of ``results`` the store does not hold yet (a journal replayed after a crash is idempotent)."""
        out = []
        for result in results:
            service = self._keys.get(("services", result.service))
            location = self._keys.get(("locations", result.location))
            if service is None or location is None or self._db.execute(
                    "SELECT 1 FROM results WHERE service = ? AND ts_ms = ? AND location = ? AND status = ? LIMIT 1",
                    (service, result.ts_ms, location, _STATUS_CODE[result.status])).fetchone() is None:
                out.append(result)
        return out

    def count_results(self) -> int:
        (count,) = self._db.execute("SELECT count(*) FROM results").fetchone()
        return int(count)

    def locations_of(self, service: str) -> Sequence[str]:
        """From the caches, not a query: every (service, location) with results has a latest row, and every one
        with segments a horizon (a month report asks this of each of 10,000 services)."""
        key = self._keys.get(("services", service))
        if key is None:
            return []
        if self._locations is None:
            self._locations = {}
            for service_key, location_key in [*self._latest, *self._horizons]:
                self._locations.setdefault(service_key, set()).add(location_key)
        return sorted(self._location(loc) for loc in self._locations.get(key, ()))

    def states(self) -> dict[str, ServiceState]:
        self._flush_latest()
        open_outages = self.open_outages()
        states: dict[str, ServiceState] = {}
        rows = self._db.execute("SELECT * FROM latest ORDER BY service, location").fetchall()
        for service_key, location_key, ts_ms, status, since_ms, latency, error in rows:
            service = self._service(service_key)
            location = self._location(location_key)
            current = states.get(service)
            verdict = _CODE_STATUS[status]
            if current is None or ts_ms > (current.last_check_ms or 0):
                locations = dict(current.locations) if current else {}
                current = ServiceState(
                    service, verdict, since_ms, ts_ms, latency, error, open_outages.get(service), locations
                )
            current.locations[location] = verdict
            states[service] = current
        return states

    def segments(self, service: str, location: str, start_ms: int, end_ms: int) -> list[Segment]:
        pair = self._pair(service, location)
        if pair is None:
            return []
        return [(start, end, bool(down)) for start, end, down in
                self._db.execute(_SEGMENTS_OF_PAIR, (*pair, end_ms, start_ms)).fetchall()]

    # -- retention -----------------------------------------------------------

    # -- materialized segments: fast month figures, and retention ------------------------------
    #
    # Derived segments are stored up to a per-(service, location) *horizon*
    # placed at a non-down result: derivation restarts exactly there (an up
    # or unknown ends any run), so stored segments plus a derivation of the
    # raw results after the horizon equal a derivation of everything.

    def _pair(self, service: str, location: str) -> tuple[int, int] | None:
        service_key = self._keys.get(("services", service))
        location_key = self._keys.get(("locations", location))
        return None if service_key is None or location_key is None else (service_key, location_key)

    def _fresh_horizons(self, pairs: Sequence[tuple[int, int]]) -> None:
        """Where the stored segments of these pairs end, as the database has it now: another process (a
        center holding the lease materializes; another one stores a late result) may have moved it."""
        wanted = set(pairs)
        if not wanted:
            return
        if len(wanted) >= _BULK_PAIRS:
            rows = [row for row in self._db.execute("SELECT service, location, horizon_ms FROM horizons").fetchall()
                    if (row[0], row[1]) in wanted]
        else:
            answers = self._db.select_many([("SELECT service, location, horizon_ms FROM horizons "
                                             "WHERE service = ? AND location = ?", pair) for pair in wanted])
            rows = [row for answer in answers for row in answer]
        for pair in wanted:
            self._horizons.pop(pair, None)
        self._horizons.update({(s, loc): h for s, loc, h in rows})

    def horizon(self, service: str, location: str) -> int | None:
        pair = self._pair(service, location)
        return self._horizons.get(pair) if pair else None

    def _last_non_down(self, pair: tuple[int, int], before_ms: int, after_ms: int | None = None) -> int | None:
        row = self._db.execute(
            "SELECT max(ts_ms) FROM results WHERE service = ? AND location = ? AND ts_ms < ? AND ts_ms > ? "
            "AND status != 1",
            (*pair, before_ms, after_ms if after_ms is not None else -(2**62)),
        ).fetchone()
        return int(row[0]) if row[0] is not None else None

    def lead_start(self, service: str, location: str, at_ms: int) -> int | None:
        """The last non-down result at or before ``at_ms``: where an exact derivation of what follows may start."""
        pair = self._pair(service, location)
        return self._last_non_down(pair, at_ms + 1) if pair else None

    def materialize(self, service: str, location: str, until_ms: int, interval_ms: int, threshold: int) -> int:
        """Store the derived segments of raw results up to the last non-down result before ``until_ms``."""
        pair = self._pair(service, location)
        if pair is None:
            return 0
        self._fresh_horizons([pair])
        horizon = self._horizons.get(pair)
        cut = self._last_non_down(pair, until_ms, horizon)
        if cut is None:
            return 0
        raw = self._db.execute(
            "SELECT ts_ms, status FROM results WHERE service = ? AND location = ? AND ts_ms >= ? AND ts_ms <= ? "
            "ORDER BY ts_ms",
            (*pair, horizon if horizon is not None else -(2**62), cut),
        ).fetchall()
        derived = derive_segments(((ts, _CODE_STATUS[st]) for ts, st in raw), interval_ms, threshold)
        kept = [(start, min(end, cut), down) for start, end, down in derived if start < cut]
        with self._db.transaction():
            self._db.executemany("INSERT INTO segments (service, location, start_ms, end_ms, down) "
                                 "VALUES (?, ?, ?, ?, ?)",
                                 [(*pair, start, end, int(down)) for start, end, down in kept])
            self._db.execute(_UPSERT_HORIZON, (*pair, cut))
        self._horizons[pair] = cut
        return len(kept)

    def _roll_back_horizon(self, pair: tuple[int, int], late_ms: int) -> None:
        """A result arrived before the horizon: forget what it may change (inside write's transaction)."""
        restart = self._last_non_down(pair, late_ms)
        if restart is None:
            log.warning("a result older than the kept raw history arrived for %s; it is stored as evidence "
                        "but the compacted figures before it stay as they were", self._ids[("services", pair[0])])
            return
        self._db.execute("DELETE FROM segments WHERE service = ? AND location = ? AND start_ms >= ?",
                         (*pair, restart))
        self._db.execute("UPDATE segments SET end_ms = ? WHERE service = ? AND location = ? AND end_ms > ?",
                         (restart, *pair, restart))
        self._db.execute(_UPSERT_HORIZON, (*pair, restart))
        self._horizons[pair] = restart

    def period_segments(self, service: str, location: str, start_ms: int, end_ms: int, interval_ms: int,
                        threshold: int) -> list[Segment]:
        """Segments of (service, location) for [start, end): stored ones, then the raw results after them."""
        pair = self._pair(service, location)
        if pair is None:
            return []
        return self.period_segments_many([(service, location, interval_ms, threshold)], start_ms, end_ms)[0]

    def period_segments_many(self, pairs: Sequence[tuple[str, str, int, int]], start_ms: int,
                             end_ms: int) -> list[list[Segment]]:
        """``period_segments`` of many (service, location, interval_ms, threshold), read together: a month report
        of 10,000 services reads the stored segments of all of them in one query, and on PostgreSQL pipelines
        the reads of the raw results after each horizon (one wait per thousand, not one each)."""
        known = [(self._pair(service, location), interval, threshold)
                 for service, location, interval, threshold in pairs]
        present = [pair for pair, _, _ in known if pair is not None]
        self._fresh_horizons(present)
        stored: dict[tuple[int, int], list[Segment]] = {}
        if len(present) >= _BULK_PAIRS:
            wanted = set(present)
            for service, location, start, end, down in self._db.execute(
                    "SELECT service, location, start_ms, end_ms, down FROM segments WHERE end_ms > ? AND start_ms < ? "
                    "ORDER BY service, location, start_ms", (start_ms, end_ms)).fetchall():
                if (service, location) in wanted:
                    stored.setdefault((service, location), []).append((start, end, bool(down)))
        else:
            answers = self._db.select_many([(_SEGMENTS_OF_PAIR, (*pair, end_ms, start_ms)) for pair in present])
            stored = {pair: [(start, end, bool(down)) for start, end, down in rows]
                      for pair, rows in zip(present, answers, strict=True)}
        # The raw results after each horizon (derivation restarts exactly there), up to the period's tail.
        tails = [(pair, interval) for pair, interval, _ in known
                 if pair is not None and (self._horizons.get(pair) is None or self._horizons[pair] < end_ms)]
        raw = dict(zip([pair for pair, _ in tails], self._db.select_many(
            [(_RAW_OF_PAIR, (*pair, self._horizons.get(pair, -(2**62)), end_ms + 2 * interval))
             for pair, interval in tails]), strict=True))
        return [[] if pair is None else stored.get(pair, []) + derive_segments(
                    ((ts, _CODE_STATUS[status]) for ts, status in raw.get(pair, ())), interval, threshold)
                for pair, interval, threshold in known]

    def compact(self, service: str, location: str, before_ms: int, interval_ms: int, threshold: int) -> int:
        """Retention: materialize up to ``before_ms``, then drop the raw results before the horizon."""
        self.materialize(service, location, before_ms, interval_ms, threshold)
        pair = self._pair(service, location)
        horizon = self._horizons.get(pair) if pair else None
        if pair is None or horizon is None:
            return 0
        removed = self._db.execute("DELETE FROM results WHERE service = ? AND location = ? AND ts_ms < ?",
                                   (*pair, horizon)).rowcount
        return int(removed)

    def _flush_latest(self) -> None:
        self._store_latest(self._latest_dirty)
        self._latest_dirty = set()

    def _store_latest(self, pairs: set[tuple[int, int]]) -> None:
        latest = self._latest
        self._db.insert_many("latest", _LATEST_COLUMNS, [(*pair, *latest[pair]) for pair in pairs], update_on=_PAIR)

    # -- all results of a time window (evidence, month figures) -----------------------------

    # -- maintenance windows and exclusions ---------------------------------------------------

    def add_maintenance(self, window: MaintenanceWindow, title: str = "") -> None:
        self._db.execute(
            "INSERT INTO maintenance (id, services, start_ms, end_ms, announced_at_ms, cancelled, title) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (window.id, json.dumps(list(window.services)), window.start_ms, window.end_ms,
             window.announced_at_ms, int(window.cancelled), title),
        )

    def update_maintenance(self, window_id: str, start_ms: int, end_ms: int, announced_at_ms: int,
                           title: str | None) -> bool:
        return self._db.execute(
            "UPDATE maintenance SET start_ms = ?, end_ms = ?, announced_at_ms = ?, title = coalesce(?, title) "
            "WHERE id = ? AND cancelled = 0",
            (start_ms, end_ms, announced_at_ms, title, window_id),
        ).rowcount == 1

    def cancel_maintenance(self, window_id: str) -> bool:
        return self._db.execute("UPDATE maintenance SET cancelled = 1 WHERE id = ?", (window_id,)).rowcount == 1

    def maintenance(self, start_ms: int | None = None, end_ms: int | None = None) -> list[MaintenanceWindow]:
        rows = self._db.execute(
            "SELECT id, services, start_ms, end_ms, announced_at_ms, cancelled FROM maintenance "
            "WHERE start_ms < ? AND end_ms > ? ORDER BY start_ms",
            (end_ms if end_ms is not None else 2**62, start_ms if start_ms is not None else -(2**62)),
        )
        return [MaintenanceWindow(i, tuple(json.loads(s)), a, b, ann, bool(c)) for i, s, a, b, ann, c in rows]

    def maintenance_titles(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT id, title FROM maintenance").fetchall())

    def add_exclusion(self, exclusion: Exclusion, recorded_ms: int) -> None:
        self._db.execute(
            "INSERT INTO exclusions (id, services, start_ms, end_ms, reason, evidence, approved_by, recorded_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (exclusion.id, json.dumps(list(exclusion.services)), exclusion.start_ms, exclusion.end_ms,
             exclusion.reason, exclusion.evidence, exclusion.approved_by, recorded_ms),
        )

    def exclusions(self, start_ms: int | None = None, end_ms: int | None = None) -> list[Exclusion]:
        rows = self._db.execute(
            "SELECT id, services, start_ms, end_ms, reason, evidence, approved_by FROM exclusions "
            "WHERE start_ms < ? AND end_ms > ? ORDER BY start_ms",
            (end_ms if end_ms is not None else 2**62, start_ms if start_ms is not None else -(2**62)),
        )
        return [Exclusion(i, tuple(json.loads(s)), a, b, r, e, by) for i, s, a, b, r, e, by in rows]

    # -- month closes and the credits ledger ------------------------------------------------------

    def month_close(self, month: str) -> tuple[int, dict[str, Any]] | None:
        row = self._db.execute("SELECT closed_ms, report FROM month_closes WHERE month = ?", (month,)).fetchone()
        return (int(row[0]), json.loads(row[1])) if row else None

    def month_pack(self, month: str) -> str | None:
        """The digest of the evidence pack archived when ``month`` was closed."""
        row = self._db.execute("SELECT pack_sha256 FROM month_closes WHERE month = ?", (month,)).fetchone()
        return row[0] if row else None

    def record_close(self, month: str, closed_ms: int, report: dict[str, Any], credits: Sequence[Credit],
                     pack_sha256: str | None = None) -> bool:
        """Close a month with its report, credits and pack digest, atomically; False if it was already closed."""
        with self._db.transaction():
            inserted = self._db.execute(
                "INSERT INTO month_closes (month, closed_ms, report, pack_sha256) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (month, closed_ms, json.dumps(report, ensure_ascii=False), pack_sha256),
            ).rowcount
            if inserted:
                for credit in credits:
                    self._insert_credit(credit)
        return bool(inserted)

    def add_ledger_entry(self, entry: Credit) -> None:
        self._insert_credit(entry)

    def _insert_credit(self, credit: Credit) -> None:
        self._db.execute(
            "INSERT INTO ledger (tracking_code, month, service, kind, credit_percent, amount, availability_percent, "
            "issued_ms, adjusts, note, pack_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (credit.tracking_code, credit.month, credit.service, credit.kind, credit.credit_percent,
             credit.amount, credit.availability_percent, credit.issued_ms, credit.adjusts, credit.note,
             credit.pack_sha256 or None),
        )

    def ledger(self, month: str | None = None, service: str | None = None) -> list[Credit]:
        query = ("SELECT tracking_code, month, service, kind, credit_percent, amount, availability_percent, "
                 "issued_ms, adjusts, note, pack_sha256 FROM ledger WHERE 1=1")
        params: list[object] = []
        if month is not None:
            query += " AND month = ?"
            params.append(month)
        if service is not None:
            query += " AND service = ?"
            params.append(service)
        rows = self._db.execute(query + " ORDER BY month, issued_ms, service", params).fetchall()
        return [
            Credit(code, m, svc, pct, amount, avail, issued, kind, adjusts, note, pack or "")
            for code, m, svc, kind, pct, amount, avail, issued, adjusts, note, pack in rows
        ]

    # -- archived evidence packs --------------------------------------------------------------

    def archive_pack(self, digest: str, month: str, created_ms: int, data: bytes) -> None:
        """Keep a pack (its archive bytes) under its digest; the same pack archived twice is kept once."""
        db = self._db
        with db.transaction():
            if db.execute("INSERT INTO evidence_packs (digest, month, created_ms, size) VALUES (?, ?, ?, ?) "
                          "ON CONFLICT DO NOTHING", (digest, month, created_ms, len(data))).rowcount:
                for seq, offset in enumerate(range(0, len(data), _CHUNK_BYTES)):
                    db.execute("INSERT INTO evidence_chunks (digest, seq, data) VALUES (?, ?, ?)",
                               (digest, seq, data[offset:offset + _CHUNK_BYTES]))

    def archived_pack(self, digest: str) -> bytes | None:
        if self._db.execute("SELECT 1 FROM evidence_packs WHERE digest = ?", (digest,)).fetchone() is None:
            return None
        rows = self._db.execute("SELECT data FROM evidence_chunks WHERE digest = ? ORDER BY seq", (digest,))
        return b"".join(bytes(data) for (data,) in rows)

    def purge_packs(self, before_ms: int) -> int:
        """Evidence retention: forget packs archived before ``before_ms``; return how many."""
        db = self._db
        with db.transaction():
            digests = [d for (d,) in db.execute("SELECT digest FROM evidence_packs WHERE created_ms < ?",
                                                (before_ms,)).fetchall()]
            for digest in digests:
                db.execute("DELETE FROM evidence_chunks WHERE digest = ?", (digest,))
                db.execute("DELETE FROM evidence_packs WHERE digest = ?", (digest,))
        return len(digests)

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._flush_latest()
        except Exception:
            log.debug("latest state not flushed at close", exc_info=True)
        self._db.close()


def SqliteStore(path: str | Path, busy_timeout_s: float = 5.0) -> SqlStore:
    """The embedded default: the store in one SQLite file (made or upgraded to the current schema)."""
    from store.schema import open_sqlite

    return SqlStore(open_sqlite(path, busy_timeout_s))

