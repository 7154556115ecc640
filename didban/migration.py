"""Moving the system of record to another backend, and proving nothing was lost (``didban store migrate``).

The copy is ``store.copy``'s; the proof is ours: every table holds as many
rows on both sides, and every closed month has the same stored report, the
same pack digest and the same figures when settled again on each side.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from core.config import DidbanConfig
from didban.settlement import settle
from sla_calc.periods import JalaliMonth
from store.backend import Backend
from store.copy import Progress, copy_all, counts
from store.sql_store import SqlStore


@dataclass
class MigrationReport:
    copied: dict[str, int]
    counts: dict[str, int]
    differences: list[str] = field(default_factory=list)
    months_checked: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.differences


def _figures(config: DidbanConfig, store: SqlStore, month: str) -> str:
    settled = settle(config, store, JalaliMonth.parse(month))
    return json.dumps([(s.service, s.availability_percent, s.downtime_ms, s.excluded_ms, s.covered_ms,
                        s.credit_percent, s.credit_amount) for s in settled.report.services])


def migrate(config: DidbanConfig, source: Backend, target: Backend, progress: Progress,
            checking: Callable[[str], None] = lambda month: None) -> MigrationReport:
    """Copy ``source`` into ``target`` (resumable: run again to go on), then compare the two."""
    source_store, target_store = source.store(), target.store()
    try:
        copied = copy_all(source_store.db, target_store.db, progress)
        target_store.reload()  # the copy went past the store object: its caches must see the new rows
        theirs, ours = counts(source_store.db), counts(target_store.db)
        report = MigrationReport(copied, ours)
        report.differences += [f"{table}: {theirs[table]} rows in the source, {ours[table]} in the target"
                               for table in theirs if theirs[table] != ours[table]]
        for month in sorted(row[0] for row in source_store.db.execute("SELECT month FROM month_closes").fetchall()):
            checking(month)
            if source_store.month_close(month) != target_store.month_close(month):
                report.differences.append(f"{month}: the stored report differs")
            if source_store.month_pack(month) != target_store.month_pack(month):
                report.differences.append(f"{month}: the evidence pack digest differs")
            if _figures(config, source_store, month) != _figures(config, target_store, month):
                report.differences.append(f"{month}: the figures settled again differ")
            report.months_checked.append(month)
        return report
    finally:
        source_store.close()
        target_store.close()
