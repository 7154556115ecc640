"""Citizens who subscribe to a service's notices by email or SMS.

A subscription is created unconfirmed with a 6-digit code sent to the
address; it receives notices only once confirmed.  Each subscription has an
unsubscribe token (for the one-click link) and can also be ended by replying
with a keyword (``لغو``, ``STOP``).  Addresses are validated and normalised
before anything is stored.

A confirmation code cannot be turned against a citizen: at most
``CODES_PER_HOUR`` codes are sent to one address in an hour (counted per
address, whoever asks), a code expires after ``CODE_LIFETIME_MS`` and is
locked after ``MAX_WRONG_ATTEMPTS`` wrong tries.
"""

from __future__ import annotations

import secrets
import time

from core.addresses import BadAddress, normalise
from store.contract import Subscriber, TooManyCodes
from store.database import Database

STOP_WORDS = {"لغو", "stop", "unsubscribe", "۱۱", "11"}
CODES_PER_HOUR = 3
CODE_LIFETIME_MS = 15 * 60_000
MAX_WRONG_ATTEMPTS = 5


class Subscribers:
    def __init__(self, db: Database) -> None:
        self._db = db

    def subscribe(self, service: str, kind: str, address: str, lang: str, now_ms: int) -> Subscriber:
        """Create (or renew the code of) an unconfirmed subscription; BadAddress with a reason if invalid,
        TooManyCodes when the address already got as many codes as an hour allows."""
        normalised = normalise(kind, address)
        if lang not in ("fa", "en"):
            raise BadAddress(f"language must be fa or en, got {lang!r}")
        (sent,) = self._db.execute("SELECT count(*) FROM codes_sent WHERE kind = ? AND address = ? AND sent_ms > ?",
                                   (kind, normalised, now_ms - 3_600_000)).fetchone()
        if sent >= CODES_PER_HOUR:
            raise TooManyCodes(normalised)
        code = f"{secrets.randbelow(10**6):06d}"
        self._db.execute("INSERT INTO codes_sent (kind, address, sent_ms) VALUES (?, ?, ?)", (kind, normalised, now_ms))
        self._db.execute("DELETE FROM codes_sent WHERE sent_ms < ?", (now_ms - 3_600_000,))
        self._db.execute(
            "INSERT INTO subscribers (service, kind, address, lang, code, token, created_ms, code_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (service, kind, address) DO UPDATE SET code = excluded.code, lang = excluded.lang, "
            "code_ms = excluded.code_ms, wrong_attempts = 0",
            (service, kind, normalised, lang, code, secrets.token_urlsafe(18), now_ms, now_ms),
        )
        found = self.find(service, kind, normalised)
        assert found is not None
        return found

    def find(self, service: str, kind: str, address: str) -> Subscriber | None:
        row = self._db.execute("SELECT id, service, kind, address, lang, confirmed, code, token FROM subscribers "
                               "WHERE service = ? AND kind = ? AND address = ?",
                               (service, kind, normalise(kind, address))).fetchone()
        return self._row(row) if row else None

    def confirm(self, service: str, kind: str, address: str, code: str, now_ms: int | None = None) -> bool:
        return self.confirm_outcome(service, kind, address, code, now_ms) == "confirmed"

    def confirm_outcome(self, service: str, kind: str, address: str, code: str, now_ms: int | None = None) -> str:
        """``confirmed``, ``wrong``, ``expired`` (15 minutes passed) or ``locked`` (5 wrong tries)."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        row = self._db.execute("SELECT id, code, code_ms, wrong_attempts, confirmed FROM subscribers "
                               "WHERE service = ? AND kind = ? AND address = ?",
                               (service, kind, normalise(kind, address))).fetchone()
        if row is None:
            return "wrong"
        ident, expected, code_ms, wrong, confirmed = row
        if confirmed:
            return "confirmed" if secrets.compare_digest(str(expected), code.strip()) else "wrong"
        if wrong >= MAX_WRONG_ATTEMPTS:
            return "locked"
        if code_ms and now_ms - code_ms > CODE_LIFETIME_MS:
            return "expired"
        if not secrets.compare_digest(str(expected), code.strip()):
            self._db.execute("UPDATE subscribers SET wrong_attempts = wrong_attempts + 1 WHERE id = ?", (ident,))
            return "wrong"
        self._db.execute("UPDATE subscribers SET confirmed = 1 WHERE id = ?", (ident,))
        return "confirmed"

    def unsubscribe(self, token: str) -> bool:
        return self._db.execute("DELETE FROM subscribers WHERE token = ?", (token,)).rowcount == 1

    def reply(self, kind: str, address: str, text: str) -> int:
        """A reply with a stop keyword ends every subscription of that address."""
        if text.strip().lower() not in STOP_WORDS:
            return 0
        return int(self._db.execute("DELETE FROM subscribers WHERE kind = ? AND address = ?",
                                    (kind, normalise(kind, address))).rowcount)

    def of_service(self, service: str) -> list[Subscriber]:
        rows = self._db.execute("SELECT id, service, kind, address, lang, confirmed, code, token FROM subscribers "
                                "WHERE service = ? AND confirmed = 1 ORDER BY id", (service,)).fetchall()
        return [self._row(row) for row in rows]

    def acknowledge(self, outage_id: int, who: str, now_ms: int) -> bool:
        return self._db.execute("INSERT INTO acks (outage_id, acked_ms, acked_by) VALUES (?, ?, ?) "
                                "ON CONFLICT DO NOTHING", (outage_id, now_ms, who)).rowcount == 1

    def acknowledged(self, outage_id: int) -> bool:
        return self._db.execute("SELECT 1 FROM acks WHERE outage_id = ?", (outage_id,)).fetchone() is not None

    def acknowledgement(self, outage_id: int) -> tuple[str, int] | None:
        row = self._db.execute("SELECT acked_by, acked_ms FROM acks WHERE outage_id = ?", (outage_id,)).fetchone()
        return (str(row[0]), int(row[1])) if row else None

    @staticmethod
    def _row(row: tuple[object, ...]) -> Subscriber:
        ident, service, kind, address, lang, confirmed, code, token = row[:8]
        return Subscriber(int(str(ident)), str(service), str(kind), str(address), str(lang), bool(confirmed),
                          str(code), str(token))

    def close(self) -> None:
        self._db.close()
