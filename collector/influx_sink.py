"""Replicating results and outages from the store to InfluxDB (the feed Grafana reads).

The store stays the system of record: an InfluxDB outage can never change a
month's figures.  The sink reads the store in order after a persisted cursor
(the results' stored position), writes line protocol through
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
- ``sla_month``: agency, service, month; availability, downtime_minutes, target, met (0/1: met *with*
  sufficient evidence), verdict, coverage_percent, budget_remaining_percent, credit_percent, closed (0/1),
  outages — at the month's start time, rewritten every 5 minutes and whenever an outage opens or closes, so
  the last value is the month's figure.  Availability and budget are truncated to two decimals: Grafana
  rounds what it displays, and a rounded-up figure must never look compliant.  The figures are the
  settlement's own (the ``settle`` function the composition root hands over), never a copy.
- ``maintenance``: agency, service; title, end_ms, notice_hours, meets_notice (0/1), cancelled (0/1) —
  at the window's start (Grafana annotations)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from core.config import DidbanConfig
from core.model import ServiceMonth
from core.waiting import set_within
from sla_calc.month import truncate_percent
from sla_calc.periods import JalaliMonth
from store.contract import FeedSource, Store

log = logging.getLogger("didban.influx")

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


def sla_line(agency: str, month: str, start_ms: int, denominator_ms: int, figures: ServiceMonth, closed: bool) -> str:
    budget_ms = (100 - figures.target_percent) / 100 * denominator_ms
    remaining = max(-100.0, 100 * (1 - figures.downtime_ms / budget_ms)) if budget_ms > 0 else 0.0
    fields = [f"availability={truncate_percent(figures.availability_percent)}",
              f"downtime_minutes={figures.downtime_ms / 60_000}", f"target={figures.target_percent}",
              f"met={1 if figures.verdict == 'met' else 0}i", f"verdict={_string(figures.verdict)}",
              f"coverage_percent={truncate_percent(figures.coverage_percent)}",
              f"budget_remaining_percent={_truncate_signed(remaining)}",
              f"credit_percent={figures.credit_percent}", f"closed={1 if closed else 0}i",
              f"outages={len(figures.outages)}i"]
    return (f"sla_month,agency={_tag(agency)},service={_tag(figures.service)},month={month} "
            f"{','.join(fields)} {start_ms}")


def _truncate_signed(value: float) -> str:
    return truncate_percent(value) if value >= 0 else "-" + truncate_percent(-value)


class InfluxSink:
    """``feed`` reads results in stored order; ``open_store`` gives a store for a worker thread's reads;
    ``settle(config, store, month, now_ms)`` is the settlement's one computation of a month."""

    def __init__(self, config: DidbanConfig, feed: FeedSource, open_store: Callable[[], Store],
                 settle: Callable[..., Any], *, url: str, org: str, bucket: str, token: str,
                 batch_size: int = 5000, timeout_s: float = 10.0) -> None:
        self.url, self.org, self.bucket, self.token = url, org, bucket, token
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.written = 0
        self.failures = 0
        self._feed = feed
        self._open_store = open_store
        self._settle = settle
        self._client: Any = None
        self._session: Any = None  # aiohttp, for InfluxDB 1.x's own /write
        self._agency = {service.id: agency.id for agency, service in config.services()}
        self._probe = {service.id: service.probes[0].type for _, service in config.services()}
        self._notice_hours = {service.id: config.agreement(service.agreement).notice_hours
                              for _, service in config.services()}
        self._config = config
        self._sla_due = True
        self._v1: bool | None = None  # None: not known yet whether the server speaks the v2 write API

    def position(self, stream: str) -> int:
        return self._feed.position(stream)

    def next_results(self, after: int, since_ms: int = 0) -> tuple[list[str], int]:
        """Line protocol for the results stored after position ``after`` (in order), and the last position read."""
        rows = self._feed.results_after(after, since_ms, self.batch_size)
        lines = [check_line(self._agency.get(r.service, ""), r.service, r.location, self._probe.get(r.service, ""),
                            r.ts_ms, r.status.value, r.latency_ms, r.http_status, r.error, r.cert_days_left)
                 for _, r in rows]
        return lines, (rows[-1][0] if rows else after)

    def outage_lines(self, now_ms: int) -> list[str]:
        """Every outage of the last 400 days, with how much of it qualifying exclusions cover
        (maintenance announced in time, telecom exclusions): few rows, rewritten to update open ones."""
        from sla_calc.intervals import intersection, measure
        from sla_calc.month import exclusions_for

        since = now_ms - 400 * 86_400_000
        store = self._open_store()
        try:
            windows = store.maintenance(since, now_ms)
            exclusions = store.exclusions(since, now_ms)
            outages = store.outages(start_ms=since)
        finally:
            store.close()
        lines = []
        for outage in outages:
            span = (outage.start_ms, outage.end_ms if outage.end_ms is not None else now_ms)
            covering = exclusions_for(outage.service, windows, exclusions,
                                      self._notice_hours.get(outage.service, 72.0), span).intervals
            excluded = measure(intersection([span], covering))
            lines.append(outage_line(self._agency.get(outage.service, ""), outage.service, outage.start_ms,
                                     outage.end_ms, outage.error, outage.tracking_code, now_ms, excluded))
        return lines

    def _periodic_lines(self, now_ms: int) -> list[str]:
        return self.outage_lines(now_ms) + self.maintenance_lines()

    def maintenance_lines(self) -> list[str]:
        from sla_calc.month import notice_verdict

        store = self._open_store()
        try:
            windows = store.maintenance()
            titles = store.maintenance_titles()
        finally:
            store.close()
        lines = []
        for window in windows:
            for service in (list(self._agency) if "*" in window.services else window.services):
                notice = notice_verdict(window.start_ms, window.announced_at_ms, self._notice_hours.get(service, 72.0))
                fields = [f"title={_string(titles.get(window.id) or window.id)}", f"end_ms={window.end_ms}i",
                          f"notice_hours={notice.given_hours}", f"meets_notice={1 if notice.meets else 0}i",
                          f"cancelled={int(window.cancelled)}i"]
                lines.append(f"maintenance,agency={_tag(self._agency.get(service, ''))},service={_tag(service)},"
                             f"window={_tag(window.id)} {','.join(fields)} {window.start_ms}")
        return lines

    def sla_lines(self, config: DidbanConfig, now_ms: int, months: Sequence[JalaliMonth] | None = None) -> list[str]:
        """Per service, the settlement's figures of ``months`` (default: the previous month and this one so far)."""
        current = JalaliMonth.containing(now_ms)
        lines = []
        store = self._open_store()
        try:
            for month in months or (current.previous(), current):
                settled = self._settle(config, store, month, now_ms=now_ms)
                closed = store.month_close(str(month)) is not None
                for figures in settled.report.services:
                    lines.append(sla_line(self._agency.get(figures.service, ""), str(month),
                                          settled.report.start_ms, settled.report.denominator_ms, figures, closed))
        finally:
            store.close()
        return lines

    def request_sla(self) -> None:
        """An outage opened or closed, or a month closed: rewrite the month figures at the next round."""
        self._sla_due = True

    async def write(self, lines: Sequence[str]) -> None:
        from influxdb_client.client.exceptions import InfluxDBError
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
        from influxdb_client.domain.write_precision import WritePrecision

        if not lines:
            return
        if self._v1:
            await self._write_v1(lines)
            return
        if self._client is None:  # one client (and HTTP session) for the sink's life
            self._client = InfluxDBClientAsync(url=self.url, token=self.token, org=self.org,
                                               timeout=int(self.timeout_s * 1000))
        try:
            await self._client.write_api().write(bucket=self.bucket, org=self.org, record=list(lines),
                                                 write_precision=WritePrecision.MS)
            self._v1 = False
        except InfluxDBError as exc:
            # InfluxDB before 1.8 has no v2 write endpoint (404); speak its own /write instead, from now on.
            if self._v1 is None and exc.response is not None and getattr(exc.response, "status", None) == 404:
                log.info("InfluxDB at %s has no v2 write API; writing through its 1.x /write", self.url)
                self._v1 = True
                await self._write_v1(lines)
                return
            raise

    async def _write_v1(self, lines: Sequence[str]) -> None:
        import aiohttp

        database, _, retention = self.bucket.partition("/")
        params = {"db": database, "precision": "ms", **({"rp": retention} if retention else {})}
        user, sep, password = self.token.partition(":")
        auth = aiohttp.BasicAuth(user, password) if sep else None
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        async with self._session.post(f"{self.url.rstrip('/')}/write", params=params, auth=auth,
                                      data="\n".join(lines).encode()) as response:
            if response.status >= 300:
                raise OSError(f"InfluxDB /write answered {response.status}: {(await response.text())[:200]}")

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def replicate_once(self) -> int:
        """Write the next batch of results (and the outages); 0 when there is nothing new."""
        after = self.position("results")
        # Store reads run on a worker thread: the sink shares the event loop with probing.
        lines, last = await asyncio.to_thread(self.next_results, after)
        if lines:
            await self.write(lines)
            self._feed.advance("results", last)  # only after InfluxDB accepted the batch
            self.written += len(lines)
        return len(lines)

    async def run(self, stop: asyncio.Event, poll_s: float = 1.0, outages_every_s: float = 60.0,
                  sla_every_s: float = 300.0) -> None:
        delay = 1.0
        next_outages = next_sla = 0.0
        while not stop.is_set():
            try:
                written = await self.replicate_once()
                now = time.monotonic()
                if now >= next_outages or self._sla_due:
                    await self.write(await asyncio.to_thread(self._periodic_lines, int(time.time() * 1000)))
                    next_outages = now + outages_every_s
                if now >= next_sla or self._sla_due:
                    self._sla_due = False  # cleared first: a request during the write is served next round
                    # Settlement reads a month of evidence: a worker thread, never the probing loop.
                    await self.write(await asyncio.to_thread(self.sla_lines, self._config, int(time.time() * 1000)))
                    next_sla = now + sla_every_s
                delay = 1.0
            except Exception as exc:  # InfluxDB down or slow: keep the cursor, try again later
                self.failures += 1
                self._sla_due = True
                log.warning("InfluxDB write failed (%s); the cursor waits, nothing is lost; retrying in %.0f s",
                            type(exc).__name__, delay)
                written = 0
                await set_within(stop, delay)
                delay = min(delay * 2, 60.0)
                continue
            if not written:
                await set_within(stop, poll_s)
        await self.aclose()

    async def backfill(self, since_ms: int, progress: Callable[[int], None] = lambda written: None) -> int:
        """Rewrite history from ``since_ms``: the same points with the same timestamps (idempotent);
        ``progress`` hears the count after each batch."""
        after, total = 0, 0
        try:
            while True:
                lines, last = self.next_results(after, since_ms)
                if not lines:
                    break
                await self.write(lines)
                total += len(lines)
                after = last
                progress(total)
            await self.write(self.outage_lines(int(time.time() * 1000)))
        finally:
            await self.aclose()
        return total

    def close(self) -> None:
        self._feed.close()
