"""The terminal's live view of a running engine: a table at the top, an event log below it.

The table (state, latency, open outage per service) is redrawn in place on a
terminal; the event log keeps what happened — outages opened and closed with
their tracking codes and durations, blips (failed checks below the failure
threshold, which open no outage) — in Tehran time with Jalali dates, so
nothing the user needs is wiped by the next redraw.  ``summary`` is what a
demo prints when it ends.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import Any

from core.model import OutageEvent, ProbeResult, Status
from core.timefmt import jalali


def _minutes(ms: int) -> str:
    seconds = ms // 1000
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60} s"


class EventLog:
    def __init__(self, config_path: str = "config.yaml", keep: int = 12) -> None:
        self.config_path = config_path  # for the commands the summary suggests
        self.lines: deque[str] = deque(maxlen=keep)
        self.opened = self.closed = self.blips = 0
        self._failing: dict[str, int] = {}  # service → first failed check of a run not (yet) an outage
        self._in_outage: set[str] = set()

    def on_outage(self, event: OutageEvent) -> None:
        outage = event.outage
        if event.kind == "outage_opened":
            self.opened += 1
            self._in_outage.add(outage.service)
            self.lines.append(f"{jalali(outage.start_ms)} Tehran  OUTAGE OPENED  {outage.service}  "
                              f"{outage.tracking_code}  ({outage.error or 'down'})")
        else:
            self.closed += 1
            self._in_outage.discard(outage.service)
            self._failing.pop(outage.service, None)
            end = outage.end_ms or int(time.time() * 1000)
            self.lines.append(f"{jalali(end)} Tehran  outage closed  {outage.service}  {outage.tracking_code}  "
                              f"after {_minutes(end - outage.start_ms)}")

    def on_result(self, result: ProbeResult) -> None:
        if result.status is Status.DOWN:
            self._failing.setdefault(result.service, result.ts_ms)
        elif result.status is Status.UP and result.service in self._failing:
            first = self._failing.pop(result.service)
            if result.service not in self._in_outage:
                self.blips += 1
                self.lines.append(f"{jalali(first)} Tehran  blip           {result.service}  a failed check below "
                                  "the failure threshold: no outage, no downtime")

    def render(self) -> str:
        return "events:\n" + ("\n".join(f"  {line}" for line in self.lines) if self.lines else "  (none yet)")


def table(config: Any, engine: Any) -> str:
    lines = []
    for _, service in config.services():
        result = engine.latest.get(service.id)
        outage = engine.collector.open_outage(service.id)
        if result is None:
            lines.append(f"  {service.id:<26} {'…':<8}")
            continue
        note = (f"OUTAGE {outage.tracking_code} since {jalali(outage.start_ms)}" if outage
                else (result.detail or ""))
        lines.append(f"  {service.id:<26} {result.status.value:<8} {result.latency_ms:>8.0f} ms  {note[:70]}")
    stats = engine.collector.stats
    header = (f"[{jalali(int(time.time() * 1000))} Tehran] checks {engine.checks_run}, stored {stats.written}, "
              f"queued {engine.collector.pending}, p99 lag {engine.lag.percentile(99) * 1000:.0f} ms")
    return header + "\n" + "\n".join(lines)


def show(config: Any, engine: Any, events: EventLog | None) -> None:
    text = table(config, engine) + ("\n\n" + events.render() if events is not None else "")
    if sys.stdout.isatty():
        print("\x1b[H\x1b[J", end="")  # redraw in place: cursor home, clear below
    print(text, flush=True)


def summary(events: EventLog, engine: Any, store: str, web: str | None) -> str:
    lines = [
        "",
        f"Demo over: {engine.checks_run} checks, {engine.collector.stats.written} results stored in {store}; "
        f"{events.opened} outage(s) opened, {events.closed} closed, {events.blips} blip(s) (no downtime).",
        *(f"  {line}" for line in events.lines),
        "",
        "Try next:",
        f"  didban status --db {store} --config {events.config_path}",
        f"  didban sla month {_month()} --db {store} --config {events.config_path}",
        f"  didban sla export --month {_month()} --format pdf,pack --out didban-export --db {store} "
        f"--config {events.config_path}",
    ]
    if web:
        lines.insert(-4, f"The status page was at {web}")
    return "\n".join(lines)


def _month() -> str:
    from sla_calc.periods import JalaliMonth

    return str(JalaliMonth.containing(int(time.time() * 1000)))
