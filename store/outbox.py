"""The persistent outbox: every notice is a row in the store before any send.

Workers claim due rows with one ``UPDATE … WHERE id IN (SELECT … FOR UPDATE
SKIP LOCKED)`` on PostgreSQL (SQLite serialises writers, so the same
statement without the lock clause is enough there), so two workers, in one
process or several, never send a notice twice.  Transient failures go back to
``pending`` with exponential backoff and jitter; permanent ones stop as
``failed`` with the reason.  A row left ``sending`` by a process that died is
returned to ``pending`` after ``stale_seconds``: that one notice may then be
sent twice, nothing is lost.  ``(event, channel, recipient)`` is unique, so
the same event never queues a second notice to the same person.
"""

from __future__ import annotations

import random

from store.contract import Notice, OutboxRow
from store.database import Database


class Outbox:
    def __init__(self, db: Database, *, base_delay_s: float = 2.0, max_delay_s: float = 300.0,
                 max_attempts: int = 50, stale_seconds: float = 120.0) -> None:
        self._db = db
        self._lock_clause = " FOR UPDATE SKIP LOCKED" if db.dialect == "postgresql" else ""
        self.base_delay_ms = base_delay_s * 1000
        self.max_delay_ms = max_delay_s * 1000
        self.max_attempts = max_attempts
        self.stale_ms = int(stale_seconds * 1000)

    def enqueue(self, notices: list[Notice], now_ms: int) -> int:
        """Queue notices; one already queued for the same (event, channel, recipient) is skipped."""
        return self._db.executemany(
            "INSERT INTO outbox (event, channel, recipient, lang, subject, body, html, next_attempt_ms, "
            "created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [(n.event, n.channel, n.recipient, n.lang, n.subject, n.body, n.html, now_ms, now_ms) for n in notices],
        )

    def recover_stale(self, now_ms: int) -> int:
        """Return rows a dead worker left 'sending' to 'pending' (at-least-once delivery)."""
        return int(self._db.execute(
            "UPDATE outbox SET state = 'pending' WHERE state = 'sending' AND claimed_ms < ?",
            (now_ms - self.stale_ms,),
        ).rowcount)

    def claim(self, now_ms: int, limit: int, channel: str | None = None) -> list[Notice]:
        """Claim due notices (of one channel, or any) in one statement; rows another worker holds are skipped."""
        due = "SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_ms <= ?"
        params: list[object] = [now_ms, now_ms]
        if channel is not None:
            due += " AND channel = ?"
            params.append(channel)
        rows = self._db.execute(
            "UPDATE outbox SET state = 'sending', claimed_ms = ?, attempts = attempts + 1 "
            f"WHERE state = 'pending' AND id IN ({due} ORDER BY next_attempt_ms, id LIMIT ?{self._lock_clause}) "
            "RETURNING id, event, channel, recipient, lang, subject, body, html, attempts, next_attempt_ms",
            (*params, limit),
        ).fetchall()
        rows.sort(key=lambda row: (row[9], row[0]))  # RETURNING keeps no order: the oldest due first
        return [Notice(event, channel_id, recipient, lang, subject, body, html, ident, attempts)
                for ident, event, channel_id, recipient, lang, subject, body, html, attempts, _ in rows]

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
        ).fetchall()
        return [
            OutboxRow(Notice(event, channel, recipient, lang, subject, body, html, ident, attempts), state, attempts,
                      error, next_ms)
            for ident, event, channel, recipient, lang, subject, body, html, attempts, state, error, next_ms in rows
        ]

    def counts(self, channels: tuple[str, ...] | None = None) -> dict[str, int]:
        if channels is None:
            rows = self._db.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall()
        else:
            marks = ",".join("?" * len(channels))
            rows = self._db.execute(f"SELECT state, count(*) FROM outbox WHERE channel IN ({marks}) GROUP BY state",
                                    channels).fetchall()
        return {state: count for state, count in rows}

    def close(self) -> None:
        self._db.close()
