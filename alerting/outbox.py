"""The persistent outbox: every notice is a row in SQLite before any send.

A worker claims a row with a conditional ``UPDATE … WHERE state = 'pending'``
so two workers never send it twice.  Transient failures go back to
``pending`` with exponential backoff and jitter; permanent ones stop as
``failed`` with the reason.  A row left ``sending`` by a process that died is
returned to ``pending`` after ``stale_seconds``: that one notice may then be
sent twice, nothing is lost.  ``(event, channel, recipient)`` is unique, so
the same event never queues a second notice to the same person.
"""

from __future__ import annotations

import random
import sqlite3
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    event TEXT NOT NULL,             -- de-duplication: the event this notice announces
    channel TEXT NOT NULL,
    recipient TEXT NOT NULL,
    lang TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    html TEXT,
    state TEXT NOT NULL DEFAULT 'pending',   -- pending | sending | sent | failed
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    claimed_ms INTEGER,
    created_ms INTEGER NOT NULL,
    sent_ms INTEGER,
    last_error TEXT,
    UNIQUE (event, channel, recipient)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_ms);
"""


@dataclass(frozen=True, slots=True)
class Notice:
    """One message to one recipient through one channel."""

    event: str
    channel: str
    recipient: str
    lang: str
    subject: str
    body: str
    html: str | None = None
    id: int = 0
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class OutboxRow:
    notice: Notice
    state: str
    attempts: int
    last_error: str | None
    next_attempt_ms: int


class Outbox:
    def __init__(self, path: str | Path, *, base_delay_s: float = 2.0, max_delay_s: float = 300.0,
                 max_attempts: int = 50, stale_seconds: float = 120.0) -> None:
        self._db = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self.base_delay_ms = base_delay_s * 1000
        self.max_delay_ms = max_delay_s * 1000
        self.max_attempts = max_attempts
        self.stale_ms = int(stale_seconds * 1000)

    def enqueue(self, notices: list[Notice], now_ms: int) -> int:
        """Queue notices; one already queued for the same (event, channel, recipient) is skipped."""
        cursor = self._db.executemany(
            "INSERT OR IGNORE INTO outbox (event, channel, recipient, lang, subject, body, html, next_attempt_ms, "
            "created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(n.event, n.channel, n.recipient, n.lang, n.subject, n.body, n.html, now_ms, now_ms) for n in notices],
        )
        return int(cursor.rowcount)

    def recover_stale(self, now_ms: int) -> int:
        """Return rows a dead worker left 'sending' to 'pending' (at-least-once delivery)."""
        return int(self._db.execute(
            "UPDATE outbox SET state = 'pending' WHERE state = 'sending' AND claimed_ms < ?",
            (now_ms - self.stale_ms,),
        ).rowcount)

    def claim(self, now_ms: int, limit: int, channel: str | None = None) -> list[Notice]:
        """Claim due notices (of one channel, or any): one conditional UPDATE each."""
        query = "SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_ms <= ?"
        params: list[object] = [now_ms]
        if channel is not None:
            query += " AND channel = ?"
            params.append(channel)
        ids = [row[0] for row in self._db.execute(query + " ORDER BY next_attempt_ms, id LIMIT ?", (*params, limit))]
        claimed: list[Notice] = []
        for ident in ids:
            row = self._db.execute(
                "UPDATE outbox SET state = 'sending', claimed_ms = ?, attempts = attempts + 1 "
                "WHERE id = ? AND state = 'pending' "
                "RETURNING id, event, channel, recipient, lang, subject, body, html, attempts",
                (now_ms, ident),
            ).fetchone()
            if row is not None:  # another worker may have taken it between the SELECT and here
                ident, event, channel_id, recipient, lang, subject, body, html, attempts = row
                claimed.append(Notice(event, channel_id, recipient, lang, subject, body, html, ident, attempts))
        return claimed

    def sent(self, notice: Notice, now_ms: int) -> None:
        self._db.execute("UPDATE outbox SET state = 'sent', sent_ms = ?, last_error = NULL WHERE id = ?",
                         (now_ms, notice.id))

    def failed(self, notice: Notice, reason: str, permanent: bool, now_ms: int) -> None:
        if permanent or notice.attempts >= self.max_attempts:
            self._db.execute("UPDATE outbox SET state = 'failed', last_error = ? WHERE id = ?",
                             (reason[:500], notice.id))
            return
        delay = min(self.max_delay_ms, self.base_delay_ms * 2 ** (notice.attempts - 1))
        delay *= random.uniform(0.5, 1.0)  # jitter: a recovered server is not hit by every retry at once
        self._db.execute(
            "UPDATE outbox SET state = 'pending', next_attempt_ms = ?, last_error = ? WHERE id = ?",
            (now_ms + int(delay), reason[:500], notice.id),
        )

    def rows(self, states: tuple[str, ...] = ("pending", "sending", "failed"), limit: int = 1000) -> list[OutboxRow]:
        marks = ",".join("?" * len(states))
        rows = self._db.execute(
            f"SELECT id, event, channel, recipient, lang, subject, body, html, attempts, state, last_error, "
            f"next_attempt_ms FROM outbox WHERE state IN ({marks}) ORDER BY id LIMIT ?",
            (*states, limit),
        )
        return [
            OutboxRow(Notice(event, channel, recipient, lang, subject, body, html, ident, attempts), state, attempts,
                      error, next_ms)
            for ident, event, channel, recipient, lang, subject, body, html, attempts, state, error, next_ms in rows
        ]

    def counts(self, channels: tuple[str, ...] | None = None) -> dict[str, int]:
        if channels is None:
            rows = self._db.execute("SELECT state, count(*) FROM outbox GROUP BY state")
        else:
            marks = ",".join("?" * len(channels))
            rows = self._db.execute(f"SELECT state, count(*) FROM outbox WHERE channel IN ({marks}) GROUP BY state",
                                    channels)
        return {state: count for state, count in rows}

    def close(self) -> None:
        self._db.close()
