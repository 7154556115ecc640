"""Citizens who subscribe to a service's notices by email or SMS.

A subscription is created unconfirmed with a 6-digit code sent to the
address; it receives notices only once confirmed.  Each subscription has an
unsubscribe token (for the one-click link) and can also be ended by replying
with a keyword (``لغو``, ``STOP``).  Addresses are validated and normalised
before anything is stored.
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from alerting.addresses import BadAddress, normalise

SCHEMA = """
CREATE TABLE IF NOT EXISTS subscribers (
    id INTEGER PRIMARY KEY, service TEXT NOT NULL, kind TEXT NOT NULL, address TEXT NOT NULL,
    lang TEXT NOT NULL, confirmed INTEGER NOT NULL DEFAULT 0, code TEXT NOT NULL, token TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL, UNIQUE (service, kind, address)
);
CREATE TABLE IF NOT EXISTS acks (outage_id INTEGER PRIMARY KEY, acked_ms INTEGER NOT NULL, acked_by TEXT NOT NULL);
"""
STOP_WORDS = {"لغو", "stop", "unsubscribe", "۱۱", "11"}


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: int
    service: str
    kind: str  # "email" | "sms"
    address: str
    lang: str
    confirmed: bool
    code: str
    token: str


class Subscribers:
    def __init__(self, path: str | Path) -> None:
        self._db = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def subscribe(self, service: str, kind: str, address: str, lang: str, now_ms: int) -> Subscriber:
        """Create (or renew the code of) an unconfirmed subscription; BadAddress with a reason if invalid."""
        normalised = normalise(kind, address)
        if lang not in ("fa", "en"):
            raise BadAddress(f"language must be fa or en, got {lang!r}")
        code = f"{secrets.randbelow(10**6):06d}"
        self._db.execute(
            "INSERT INTO subscribers (service, kind, address, lang, code, token, created_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (service, kind, address) DO UPDATE SET code = excluded.code, lang = excluded.lang",
            (service, kind, normalised, lang, code, secrets.token_urlsafe(18), now_ms),
        )
        found = self.find(service, kind, normalised)
        assert found is not None
        return found

    def find(self, service: str, kind: str, address: str) -> Subscriber | None:
        row = self._db.execute("SELECT * FROM subscribers WHERE service = ? AND kind = ? AND address = ?",
                               (service, kind, normalise(kind, address))).fetchone()
        return self._row(row) if row else None

    def confirm(self, service: str, kind: str, address: str, code: str) -> bool:
        found = self.find(service, kind, address)
        if found is None or not secrets.compare_digest(found.code, code.strip()):
            return False
        self._db.execute("UPDATE subscribers SET confirmed = 1 WHERE id = ?", (found.id,))
        return True

    def unsubscribe(self, token: str) -> bool:
        return self._db.execute("DELETE FROM subscribers WHERE token = ?", (token,)).rowcount == 1

    def reply(self, kind: str, address: str, text: str) -> int:
        """A reply with a stop keyword ends every subscription of that address."""
        if text.strip().lower() not in STOP_WORDS:
            return 0
        return int(self._db.execute("DELETE FROM subscribers WHERE kind = ? AND address = ?",
                                    (kind, normalise(kind, address))).rowcount)

    def of_service(self, service: str) -> list[Subscriber]:
        rows = self._db.execute("SELECT * FROM subscribers WHERE service = ? AND confirmed = 1 ORDER BY id",
                                (service,))
        return [self._row(row) for row in rows]

    def acknowledge(self, outage_id: int, who: str, now_ms: int) -> bool:
        return self._db.execute("INSERT OR IGNORE INTO acks VALUES (?, ?, ?)", (outage_id, now_ms, who)).rowcount == 1

    def acknowledged(self, outage_id: int) -> bool:
        return self._db.execute("SELECT 1 FROM acks WHERE outage_id = ?", (outage_id,)).fetchone() is not None

    @staticmethod
    def _row(row: tuple[object, ...]) -> Subscriber:
        ident, service, kind, address, lang, confirmed, code, token, _ = row
        return Subscriber(int(str(ident)), str(service), str(kind), str(address), str(lang), bool(confirmed),
                          str(code), str(token))

    def close(self) -> None:
        self._db.close()
