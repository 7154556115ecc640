"""Schemathesis hooks: the two rules of a time window that JSON Schema cannot state.

A window's end must come after its start, and a maintenance window announced now must not have
ended already. Without these, a schema-valid body breaks a rule and is rightly refused (422), which
the positive-data check would count as a failure. The hooks keep everything else the generator drew
and only put the instants in order, so every other rule is still fuzzed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import schemathesis


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    """Put a positive case's window in order (``map_case`` runs in every phase, coverage included)."""
    negative = case.meta is not None and str(case.meta.generation.mode).lower().endswith("negative")
    body = case.body
    if negative or not isinstance(body, dict):
        return case
    start, end = _instant(body.get("start")), _instant(body.get("end"))
    if start is None or end is None:
        return case  # not a window
    try:
        if end <= start:
            end = start + timedelta(minutes=1)
        now = datetime.now(UTC)
        announced_now = case.operation.method.upper() == "POST" and case.operation.path == "/api/maintenance"
        if announced_now and end <= now:
            shift = now - start + timedelta(days=1)
            start, end = start + shift, end + shift
    except OverflowError:  # at the end of the calendar: a window in the near future instead
        start, end = datetime.now(UTC) + timedelta(days=1), datetime.now(UTC) + timedelta(days=1, hours=1)
    case.body = {**body, "start": start.isoformat(), "end": end.isoformat()}
    return case
