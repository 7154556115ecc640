"""Copying a whole store to another backend (``didban store migrate``), resumably, then checking the copy.

Every table is copied with its own keys, so tracking codes, outbox ids,
token ids and the feed's cursor mean the same on both sides.  Append-only
tables are copied in chunks in key order, each chunk one transaction, and a
second run starts after the last key the target holds: a migration stopped
half-way (Ctrl-C, a lost connection) is resumed by running it again.  Rows
that already exist are left alone, so nothing is copied twice.

Run it with the service stopped: rows written to the source during the copy
may be missed (the final check says so: the counts differ).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from store.database import Database

CHUNK_ROWS = 20_000


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...] = ()  # unique: rows already in the target are skipped
    resume_by: str | None = None  # an increasing key: copying resumes after the target's largest
    identity: str | None = None  # a PostgreSQL identity column whose sequence must follow the copied keys


# In an order where nothing refers to a row not copied yet.
TABLES = (
    Table("services", ("key", "id"), ("key",), "key", "key"),
    Table("locations", ("key", "id"), ("key",), "key", "key"),
    Table("results", ("rowid", "service", "location", "ts_ms", "status", "latency_ms", "error", "detail",
                      "http_status", "cert_days_left"), ("rowid",), "rowid", "rowid"),
    Table("latest", ("service", "location", "ts_ms", "status", "since_ms", "latency_ms", "error"),
          ("service", "location")),
    Table("trackers", ("service", "location", "last_ts_ms", "run_start_ms", "run_length", "run_last_ms", "open"),
          ("service", "location")),
    Table("outages", ("id", "service", "start_ms", "end_ms", "error", "tracking_code"), ("id",), "id", "id"),
    Table("segments", ("service", "location", "start_ms", "end_ms", "down")),
    Table("horizons", ("service", "location", "horizon_ms"), ("service", "location")),
    Table("maintenance", ("id", "services", "start_ms", "end_ms", "announced_at_ms", "cancelled", "title"), ("id",)),
    Table("exclusions", ("id", "services", "start_ms", "end_ms", "reason", "evidence", "approved_by", "recorded_ms"),
          ("id",)),
    Table("month_closes", ("month", "closed_ms", "report", "pack_sha256"), ("month",)),
    Table("ledger", ("tracking_code", "month", "service", "kind", "credit_percent", "amount", "availability_percent",
                     "issued_ms", "adjusts", "note", "pack_sha256"), ("tracking_code",)),
    Table("evidence_packs", ("digest", "month", "created_ms", "size"), ("digest",)),
    Table("evidence_chunks", ("digest", "seq", "data"), ("digest", "seq")),
    Table("outbox", ("id", "event", "channel", "recipient", "lang", "subject", "body", "html", "state", "attempts",
                     "next_attempt_ms", "claimed_ms", "created_ms", "sent_ms", "last_error"), ("id",), "id", "id"),
    Table("subscribers", ("id", "service", "kind", "address", "lang", "confirmed", "code", "token", "created_ms",
                          "code_ms", "wrong_attempts"), ("id",), "id", "id"),
    Table("acks", ("outage_id", "acked_ms", "acked_by"), ("outage_id",)),
    Table("codes_sent", ("kind", "address", "sent_ms")),
    Table("receipts", ("code", "service", "description", "contact", "created_ms", "state", "probe_confirmed",
                       "probe_detail", "note", "acknowledged_ms", "resolved_ms"), ("code",)),
    Table("api_tokens", ("rowid", "digest", "name", "role", "created_ms", "expires_ms", "revoked_ms"), ("digest",),
          "rowid", "rowid"),
    Table("audit", ("id", "ts_ms", "who", "method", "path", "status", "body"), ("id",), "id", "id"),
    Table("influx_cursor", ("stream", "position"), ("stream",)),
    Table("agent_progress", ("location", "last_seq", "last_result_ms", "last_ingest_ms"), ("location",)),
)

Progress = Callable[[str, int, int], None]  # table, rows copied so far, rows in the source


def copy_table(source: Database, target: Database, table: Table, progress: Progress,
               chunk_rows: int = CHUNK_ROWS) -> int:
    """Copy what the target lacks of one table; return the rows copied now."""
    columns = ", ".join(table.columns)
    total = int(source.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0])
    insert = f"INSERT INTO {table.name} ({columns}) VALUES ({', '.join('?' * len(table.columns))})"
    if not table.key:  # no key to tell rows apart: the table is small and replaced whole, in one transaction
        rows = source.execute(f"SELECT {columns} FROM {table.name}").fetchall()
        with target.transaction():
            had = target.execute(f"DELETE FROM {table.name}").rowcount
            target.executemany(insert, rows)
        progress(table.name, len(rows), total)
        return max(len(rows) - had, 0)  # rows new to the target; the others were there already
    insert += f" ON CONFLICT ({', '.join(table.key)}) DO NOTHING"
    order = table.resume_by or ", ".join(table.key)
    after: object = None
    if table.resume_by is not None:
        after = target.execute(f"SELECT max({table.resume_by}) FROM {table.name}").fetchone()[0]
    copied, offset = 0, 0
    done = int(target.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0])
    while True:
        if table.resume_by is not None:
            rows = source.execute(
                f"SELECT {columns} FROM {table.name} WHERE {table.resume_by} > ? ORDER BY {order} LIMIT ?",
                (after if after is not None else -(2**62), chunk_rows)).fetchall()
        else:
            rows = source.execute(f"SELECT {columns} FROM {table.name} ORDER BY {order} LIMIT ? OFFSET ?",
                                  (chunk_rows, offset)).fetchall()
            offset += len(rows)
        if not rows:
            break
        with target.transaction():
            added = target.executemany(insert, rows)
        copied += added
        done += added
        if table.resume_by is not None:
            after = rows[-1][table.columns.index(table.resume_by)]
        progress(table.name, done, total)
    if table.identity is not None and target.dialect == "postgresql":
        # Keys were copied as they were: the identity's next value must come after them.
        target.execute(f"SELECT setval(pg_get_serial_sequence('{table.name}', '{table.identity}'), "
                       f"coalesce(max({table.identity}), 0) + 1, false) FROM {table.name}")
    return copied


def copy_all(source: Database, target: Database, progress: Progress) -> dict[str, int]:
    return {table.name: copy_table(source, target, table, progress) for table in TABLES}


def counts(db: Database) -> dict[str, int]:
    return {table.name: int(db.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0]) for table in TABLES}
