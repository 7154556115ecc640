"""Prometheus metrics (prometheus-client), in a registry of Didban's own.

What every check updates is kept in plain dicts and lists and turned into metric families only when
``/metrics`` is scraped (``CheckSeries``): prometheus-client's instruments take a lock for every
update, and a labelled child per service costs about a kilobyte — 100 MB for two series of 50,000
services.  Only the event loop writes them; a scrape, on another thread, reads a copy.
"""

from __future__ import annotations

import io
from bisect import bisect_left
from collections.abc import Iterator
from itertools import islice

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from core.model import ProbeResult

_VERDICT = {"up": 1.0, "down": 0.0, "unknown": -1.0}
_LINES_PER_CHUNK = 1000
LATENCY_BOUNDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LAG_BOUNDS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5)


class Buckets:
    """A histogram's counts: one list slot per bucket (the last is +Inf) and the sum."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # a value on a bound belongs to that bucket (le)
        self.total += value

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        running, cumulative = 0, []
        for bound, count in zip((*(str(float(b)) for b in self.bounds), "+Inf"), list(self.counts), strict=True):
            running += count
            cumulative.append((bound, running))
        return HistogramMetricFamily(name, documentation, buckets=cumulative, sum_value=self.total)


class CheckSeries(Collector):
    """The per-check series: checks by result, latency, schedule lag, and one series per service
    (bounded cardinality: the configured services, no location or error label)."""

    def __init__(self) -> None:
        self.checks: dict[tuple[str, str], int] = {}  # (status, error) → checks
        self.latency = Buckets(LATENCY_BOUNDS)
        self.lag = Buckets(LAG_BOUNDS)
        self.latest: dict[str, ProbeResult] = {}  # service → its latest result (read at a scrape, not per check)
        self.month: dict[str, float] = {}  # service → month-to-date availability, from the settlement

    def observe(self, result: ProbeResult, lag_seconds: float | None) -> None:
        outcome = (result.status.value, result.error or "")
        self.checks[outcome] = self.checks.get(outcome, 0) + 1
        self.latency.observe(result.latency_ms / 1000)
        self.latest[result.service] = result
        if lag_seconds is not None:
            self.lag.observe(lag_seconds)

    def collect(self) -> Iterator[Metric]:
        checks = CounterMetricFamily("didban_checks_total", "Checks run, by result", labels=["status", "error"])
        for (status, error), count in list(self.checks.items()):
            checks.add_metric([status, error], count)
        yield checks
        yield self.latency.family("didban_check_latency_seconds", "Check latency")
        yield self.lag.family("didban_schedule_lag_seconds", "Delay between a check's due time and its start")

    def per_service_text(self) -> bytes:
        """The per-service gauges in the text format, written directly: prometheus-client builds a sample
        object per series, and 150,000 of them (50,000 services) took a second of the core and 60 MB.
        Lines are encoded a thousand at a time, not held as 50,000 small strings at once."""
        latest, month = dict(self.latest), dict(self.month)  # a copy, one block each: the loop keeps writing
        families = (
            ("didban_service_up", "Latest verdict per service: 1 up, 0 down, -1 unknown",
             ((service, _VERDICT[result.status.value]) for service, result in latest.items())),
            ("didban_service_last_check_timestamp_seconds", "When the latest check of a service ran (Unix time)",
             ((service, result.ts_ms / 1000) for service, result in latest.items())),
            ("didban_service_month_availability_percent", "Month-to-date availability per service, as the "
             "settlement computes it (truncated to 2 decimals)", month.items()),
        )
        text = io.BytesIO()
        for name, documentation, values in families:
            text.write(f"# HELP {name} {documentation}\n# TYPE {name} gauge\n".encode())
            head = name + '{service="'
            lines = (f'{head}{_label(service)}"}} {value!r}\n' for service, value in values)
            while chunk := "".join(islice(lines, _LINES_PER_CHUNK)):
                text.write(chunk.encode())
        return text.getvalue()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.series = CheckSeries()
        self.registry.register(self.series)
        self.queue_depth = Gauge("didban_result_queue_depth", "Results waiting to be stored", registry=self.registry)
        self.outbox_depth = Gauge("didban_outbox_depth", "Notices pending or being sent", registry=self.registry)
        self.store_errors = Gauge("didban_store_errors", "Failed store writes since start (retried)",
                                  registry=self.registry)
        self.dropped = Gauge("didban_results_dropped", "Results dropped because the queue was full",
                             registry=self.registry)
        self.checks_waiting = Gauge("didban_checks_due_waiting", "Checks due and not yet started (overload when it "
                                    "stays above zero)", registry=self.registry)
        self.oldest_wait = Gauge("didban_checks_oldest_wait_seconds", "How late the oldest due check not yet started "
                                 "is", registry=self.registry)
        self.open_outages = Gauge("didban_open_outages", "Outages open now", registry=self.registry)
        self.task_restarts = Counter("didban_task_restarts", "Failures of supervised background tasks and jobs "
                                     "(each restarted with backoff)", ["task"], registry=self.registry)
        self.overload = Counter("didban_probe_overload", "Failed checks recorded as unknown because the monitor "
                                "itself stalled or ran late (probe_overload)", registry=self.registry)

        # An agent's buffer (didban agent): what waits for the center, how old the oldest is, what was dropped.
        self.agent_buffered = Gauge("didban_agent_buffered_results", "Results buffered and not yet acknowledged by a "
                                    "center", registry=self.registry)
        self.agent_buffer_age = Gauge("didban_agent_buffer_oldest_seconds", "Age of the oldest buffered result",
                                      registry=self.registry)
        self.agent_buffer_dropped = Gauge("didban_agent_buffer_dropped_results", "Results dropped because they "
                                          "outlived agent.buffer_max_days in the buffer", registry=self.registry)
        self.agent_shipped = Gauge("didban_agent_shipped_results", "Results a center acknowledged since start",
                                   registry=self.registry)

        self.lease_held = Gauge("didban_lease_held", "1 while this center holds the lease (it derives outages, "
                                "closes months, sends escalations)", registry=self.registry)
        # A center's probe locations (bounded: the configured ones).
        self.location_age = Gauge("didban_location_last_result_age_seconds", "Age of the newest result stored "
                                  "for a probe location", ["location"], registry=self.registry)
        self.location_silent = Gauge("didban_location_silent", "1 while a probe location has shipped nothing for "
                                     "longer than agent.silent_after_seconds", ["location"], registry=self.registry)

    def exposition(self) -> bytes:
        """What /metrics serves (the web server's and an agent's)."""
        return generate_latest(self.registry) + self.series.per_service_text()

    def observe_check(self, result: ProbeResult, lag_seconds: float | None = None) -> None:
        self.series.observe(result, lag_seconds)


def _label(value: str) -> str:
    """A label value escaped as the text format wants (service ids are slugs: nothing to do, in practice)."""
    if "\\" not in value and '"' not in value and "\n" not in value:
        return value  # a scrape asks 150,000 times: a look costs less than three replacements
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
