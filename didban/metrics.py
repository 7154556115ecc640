"""Prometheus metrics (prometheus-client), in a registry of Didban's own."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from core.model import ProbeResult

_VERDICT = {"up": 1, "down": 0, "unknown": -1}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.checks = Counter("didban_checks_total", "Checks run, by result", ["status", "error"],
                              registry=self.registry)
        self.latency = Histogram("didban_check_latency_seconds", "Check latency",
                                 buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=self.registry)
        self.lag = Histogram("didban_schedule_lag_seconds", "Delay between a check's due time and its start",
                             buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5), registry=self.registry)
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

        # One series per service (bounded cardinality: the configured services, no location or error label).
        self.service_state = Gauge("didban_service_up", "Latest verdict per service: 1 up, 0 down, -1 unknown",
                                   ["service"], registry=self.registry)
        self.service_last_check = Gauge("didban_service_last_check_timestamp_seconds",
                                        "When the latest check of a service ran (Unix time)", ["service"],
                                        registry=self.registry)
        self.service_month = Gauge("didban_service_month_availability_percent",
                                   "Month-to-date availability per service, as the settlement computes it "
                                   "(truncated to 2 decimals)", ["service"], registry=self.registry)

        self._check_counters: dict[tuple[str, str], Any] = {}
        self._service_gauges: dict[str, tuple[Any, Any]] = {}

    def observe_check(self, result: ProbeResult, lag_seconds: float | None = None) -> None:
        # Once per check: the labelled children are looked up once each, not per call (labels() locks and hashes).
        outcome = (result.status.value, result.error or "")
        counter = self._check_counters.get(outcome)
        if counter is None:
            counter = self._check_counters[outcome] = self.checks.labels(*outcome)
        counter.inc()
        self.latency.observe(result.latency_ms / 1000)
        gauges = self._service_gauges.get(result.service)
        if gauges is None:
            gauges = self._service_gauges[result.service] = (self.service_state.labels(result.service),
                                                             self.service_last_check.labels(result.service))
        gauges[0].set(_VERDICT[outcome[0]])
        gauges[1].set(result.ts_ms / 1000)
        if lag_seconds is not None:
            self.lag.observe(lag_seconds)
