"""The center's side of shipping: an agent's batch, read and checked before it is stored.

A batch is gzip'd JSON ``{"results": [[seq, service, ts_ms, status, latency_ms, error, detail,
http_status, cert_days_left], ...]}`` (``collector.buffer.result_row``).  Its location is the
agent token's name, never anything in the body: an agent reports for its own location only.
Bounds: 64 MiB once decompressed (aiohttp inflates a ``Content-Encoding: gzip`` body as it reads it,
and stops at the bound with a 413), 20,000 results; a result of a service this
center does not know, or from more than five minutes in the future, refuses the batch (the agent
keeps it and says so) rather than storing part of it.
"""

from __future__ import annotations

import json

from collector.buffer import row_result
from core.model import ProbeResult

MAX_BODY = 64 * 1024 * 1024
MAX_RESULTS = 20_000
FUTURE_SLACK_MS = 5 * 60_000


class BadBatch(ValueError):
    """A batch that cannot be stored, with the reason in plain words (answered as a 4xx)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def read_batch(data: bytes, location: str, services: set[str], now_ms: int) -> list[tuple[int, ProbeResult]]:
    """(sequence number, result) pairs in the agent's order; raises BadBatch naming the first fault."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise BadBatch("the body must be JSON", 400) from None
    rows = document.get("results") if isinstance(document, dict) else None
    if not isinstance(rows, list):
        raise BadBatch('the body must be an object with a "results" list')
    if len(rows) > MAX_RESULTS:
        raise BadBatch(f"at most {MAX_RESULTS} results a batch, got {len(rows)}", 413)
    batch: list[tuple[int, ProbeResult]] = []
    previous = 0
    for index, row in enumerate(rows):
        try:
            if not isinstance(row, list) or len(row) != 9 or not isinstance(row[0], int) or isinstance(row[0], bool):
                raise ValueError("expected [seq, service, ts_ms, status, latency_ms, error, detail, http_status, "
                                 "cert_days_left]")
            result = row_result(row, location)
        except (ValueError, TypeError, KeyError) as exc:
            raise BadBatch(f"results[{index}]: {exc}") from None
        seq = row[0]
        if seq <= previous:
            raise BadBatch(f"results[{index}]: sequence numbers must increase ({seq} after {previous})")
        if result.service not in services:
            raise BadBatch(f"results[{index}]: unknown service {result.service[:80]!r}")
        if result.ts_ms > now_ms + FUTURE_SLACK_MS:
            raise BadBatch(f"results[{index}]: its time is in the future (is the agent's clock right?)")
        previous = seq
        batch.append((seq, result))
    return batch
