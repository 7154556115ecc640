"""Replicating results and outages from SQLite to InfluxDB (the feed Grafana reads).

SQLite stays the system of record: an InfluxDB outage can never change a
month's figures.  The sink reads the store in order after a persisted cursor
(the results' rowid, the outages' id), writes line protocol through
influxdb-client's async API, and advances the cursor only after InfluxDB
accepted the batch.  When InfluxDB is down or slow nothing is lost and
probing is not touched (the sink has its own connection and task); when it
returns, the backlog drains in order.  Points have the results' own
timestamps, so writing a batch twice (a retry after a timeout) overwrites
the same points: replication and ``didban influx backfill`` are idempotent.

Schema (measurement: tags; fields):
- ``check``: agency, service, location, probe; up (0/1), status, latency_ms, http_status, error,
  cert_days_left (when the check saw a TLS certificate)
- ``outage``: agency, service; start_ms, end_ms, duration_s, error, code, open (0/1), excluded_s
  (covered by maintenance announced in time or a telecom exclusion), excluded (0/1: wholly covered)
- ``sla_month``: agency, service, month; availability, downtime_minutes, target, met (0/1),
  budget_remaining_percent, credit_percent, closed (0/1), outages — at the month's start time, rewritten as the
  month goes on, so the last value is the month's figure
- ``maintenance``: agency, service; title, end_ms, notice_hours, meets_notice (0/1), cancelled (0/1) —
  at the window's start (Grafana annotations)
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from didban.config import DidbanConfig

log = logging.getLogger("didban.influx")
_STATUS = ("up", "down", "unknown")

SCHEMA = """
CREATE TABLE IF NOT EXISTS influx_cursor (stream TEXT PRIMARY KEY, position INTEGER NOT NULL);
"""


def _tag(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check_line(agency: str, service: str, location: str, probe: str, ts_ms: int, status: str, latency_ms: float,
               http_status: int | None, error: str | None, cert_days_left: float | None = None) -> str:
    tags = f"check,agency={_tag(agency)},service={_tag(service)},location={_tag(location)},probe={_tag(probe)}"
    fields = [f"up={1 if status == 'up' else 0}i", f"status={_string(status)}", f"latency_ms={float(latency_ms)}",
              f"error={_string(error or '')}"]
    if http_status is not None:
        fields.append(f"http_status={int(http_status)}i")
    if cert_days_left is not None:
        fields.append(f"cert_days_left={float(cert_days_left)}")
    return f"{tags} {','.join(fields)} {ts_ms}"


def outage_line(agency: str, service: str, start_ms: int, end_ms: int | None, error: str | None, code: str,
                now_ms: int, excluded_ms: int = 0) -> str:
    end = end_ms if end_ms is not None else now_ms
    fields = [f"start_ms={start_ms}i", f"end_ms={end}i", f"duration_s={(end - start_ms) / 1000}",
              f"error={_string(error or '')}", f"code={_string(code)}", f"open={0 if end_ms is not None else 1}i",
              f"excluded_s={excluded_ms / 1000}",
              f"excluded={1 if end > start_ms and excluded_ms >= end - start_ms else 0}i"]
    return f"outage,agency={_tag(agency)},service={_tag(service)} {','.join(fields)} {start_ms}"


def sla_line(agency: str, service: str, month: str, start_ms: int, availability: float, downtime_ms: int,
             target: float, denominator_ms: int, credit_percent: float, closed: bool, outages: int = 0) -> str:
    budget_ms = (100 - target) / 100 * denominator_ms
    remaining = 100 * (1 - downtime_ms / budget_ms) if budget_ms > 0 else 0.0
    fields = [f"availability={availability}", f"downtime_minutes={downtime_ms / 60_000}", f"target={target}",
              f"met={1 if availability >= target else 0}i", f"budget_remaining_percent={remaining}",
              f"credit_percent={credit_percent}", f"closed={1 if closed else 0}i", f"outages={outages}i"]
    return f"sla_month,agency={_tag(agency)},service={_tag(service)},month={month} {','.join(fields)} {start_ms}"


class InfluxSink:
    def __init__(self, config: DidbanConfig, store_path: str | Path, *, url: str, org: str, bucket: str,
                 token: str, batch_size: int = 5000, timeout_s: float = 10.0) -> None:
        self.url, self.org, self.bucket, self.token = url, org, bucket, token
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.written = 0
        self.failures = 0
        self.store_path = store_path
        self._client: Any = None
        self._db = sqlite3.connect(store_path, timeout=5.0, isolation_level=None, check_same_thread=False)
        self._db.executescript(SCHEMA)
        self._agency = {service.id: agency.id for agency, service in config.services()}
        self._probe = {service.id: service.probes[0].type for _, service in config.services()}
        self._notice_hours = {service.id: config.agreement(service.agreement).notice_hours
                              for _, service in config.services()}

    def position(self, stream: str) -> int:
        row = self._db.execute("SELECT position FROM influx_cursor WHERE stream = ?", (stream,)).fetchone()
        return int(row[0]) if row else 0

    def _advance(self, stream: str, position: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO influx_cursor VALUES (?, ?)", (stream, position))

    def next_results(self, after: int, since_ms: int = 0) -> tuple[list[str], int]:
        """Line protocol for the results after rowid ``after`` (in order), and the last rowid read."""
        rows = self._db.execute(
            "SELECT r.rowid, s.id, l.id, r.ts_ms, r.status, r.latency_ms, r.http_status, r.error, r.cert_days_left "
            "FROM results r JOIN services s ON s.key = r.service JOIN locations l ON l.key = r.location "
            "WHERE r.rowid > ? AND r.ts_ms >= ? ORDER BY r.rowid LIMIT ?",
            (after, since_ms, self.batch_size),
        ).fetchall()
        lines = [check_line(self._agency.get(service, ""), service, location, self._probe.get(service, ""), ts,
                            _STATUS[status], latency, http, error, cert)
                 for _, service, location, ts, status, latency, http, error, cert in rows]
        return lines, (rows[-1][0] if rows else after)

    def outage_lines(self, now_ms: int) -> list[str]:
        """Every outage of the last 400 days, with how much of it qualifying exclusions cover
        (maintenance announced in time, telecom exclusions): few rows, rewritten to update open ones."""
        from collector.sqlite_store import SqliteStore
        from sla_calc.intervals import intersection, measure, union
        from sla_calc.month import applies, qualifying_maintenance

        since = now_ms - 400 * 86_400_000
        with SqliteStore(self.store_path) as store:
            windows = store.maintenance(since, now_ms)
            exclusions = store.exclusions(since, now_ms)
        rows = self._db.execute(
            "SELECT s.id, o.start_ms, o.end_ms, o.error, o.tracking_code FROM outages o "
            "JOIN services s ON s.key = o.service WHERE o.start_ms > ?",
            (since,),
        )
        lines = []
        for service, start, end, error, code in rows:
            notice_ms = round(self._notice_hours.get(service, 72.0) * 3_600_000)
            covering = union([(w.start_ms, w.end_ms) for w in windows
                              if applies(w.services, service) and qualifying_maintenance(w, notice_ms)]
                             + [(e.start_ms, e.end_ms) for e in exclusions if applies(e.services, service)])
            excluded = measure(intersection([(start, end if end is not None else now_ms)], covering))
            lines.append(outage_line(self._agency.get(service, ""), service, start, end, error, code, now_ms,
                                     excluded))
        return lines

    def _periodic_lines(self, now_ms: int) -> list[str]:
        return self.outage_lines(now_ms) + self.maintenance_lines()

    def maintenance_lines(self, notice_hours: float = 72.0) -> list[str]:
        import json

        rows = self._db.execute("SELECT id, services, start_ms, end_ms, announced_at_ms, cancelled, title "
                                "FROM maintenance")
        lines = []
        for ident, services, start, end, announced, cancelled, title in rows:
            names = json.loads(services)
            notice = (start - announced) / 3_600_000
            for service in (list(self._agency) if "*" in names else names):
                fields = [f"title={_string(title or ident)}", f"end_ms={end}i", f"notice_hours={notice}",
                          f"meets_notice={1 if notice >= notice_hours else 0}i", f"cancelled={int(cancelled)}i"]
                lines.append(f"maintenance,agency={_tag(self._agency.get(service, ''))},service={_tag(service)},"
                             f"window={_tag(ident)} {','.join(fields)} {start}")
        return lines

    def sla_lines(self, config: DidbanConfig, now_ms: int) -> list[str]:
        """The current month so far and the previous one (closed or not), per service."""
        from collector.sqlite_store import SqliteStore
        from didban.settlement import settle
        from sla_calc.periods import JalaliMonth

        current = JalaliMonth.containing(now_ms)
        lines = []
        store = SqliteStore(self.store_path)
        try:
            for month in (current.previous(), current):
                settled = settle(config, store, month, now_ms=now_ms)
                closed = store.month_close(str(month)) is not None
                for figures in settled.report.services:
                    lines.append(sla_line(self._agency.get(figures.service, ""), figures.service, str(month),
                                          settled.report.start_ms, figures.availability_percent,
                                          figures.downtime_ms, figures.target_percent,
                                          settled.report.denominator_ms, figures.credit_percent, closed,
                                          len(figures.outages)))
        finally:
            store.close()
        return lines

    async def write(self, lines: Sequence[str]) -> None:
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
        from influxdb_client.domain.write_precision import WritePrecision

        if not lines:
            return
        if self._client is None:  # one client (and HTTP session) for the sink's life
            self._client = InfluxDBClientAsync(url=self.url, token=self.token, org=self.org,
                                               timeout=int(self.timeout_s * 1000))
        await self._client.write_api().write(bucket=self.bucket, org=self.org, record=list(lines),
                                             write_precision=WritePrecision.MS)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def replicate_once(self) -> int:
        """Write the next batch of results (and the outages); 0 when there is nothing new."""
        after = self.position("results")
        # SQLite reads run on a worker thread: the sink shares the event loop with probing.
        lines, last = await asyncio.to_thread(self.next_results, after)
        if lines:
            await self.write(lines)
            self._advance("results", last)  # only after InfluxDB accepted the batch
            self.written += len(lines)
        return len(lines)

    async def run(self, stop: asyncio.Event, poll_s: float = 1.0, outages_every_s: float = 60.0) -> None:
        delay = 1.0
        next_outages = 0.0
        while not stop.is_set():
            try:
                written = await self.replicate_once()
                if time.monotonic() >= next_outages:
                    await self.write(await asyncio.to_thread(self._periodic_lines, int(time.time() * 1000)))
                    next_outages = time.monotonic() + outages_every_s
                delay = 1.0
            except Exception as exc:  # InfluxDB down or slow: keep the cursor, try again later
                self.failures += 1
                log.warning("InfluxDB write failed (%s); the cursor waits, nothing is lost; retrying in %.0f s",
                            type(exc).__name__, delay)
                written = 0
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass
                delay = min(delay * 2, 60.0)
                continue
            if not written:
                try:
                    await asyncio.wait_for(stop.wait(), poll_s)
                except TimeoutError:
                    pass
        await self.aclose()

    async def backfill(self, since_ms: int) -> int:
        """Rewrite history from ``since_ms``: the same points with the same timestamps (idempotent)."""
        after, total = 0, 0
        while True:
            lines, last = self.next_results(after, since_ms)
            if not lines:
                break
            await self.write(lines)
            total += len(lines)
            after = last
        await self.write(self.outage_lines(int(time.time() * 1000)))
        await self.aclose()
        return total

    def close(self) -> None:
        self._db.close()
