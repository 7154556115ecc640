"""The web side's own records: citizens' fault receipts, API tokens, and the audit log.

Tokens are stored as SHA-256 hashes: the token itself is shown once, when
created, and never again.  Every write through the admin API is audited
(who, when, what).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from core.tracking import new_code
from store.contract import ROLES, Receipt, TokenCheck, TokenInfo, token_digest
from store.database import Database

AUDIT_BODY_CHARS = 2000  # an audit row keeps the start of a long answer


class WebRecords:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- receipts ------------------------------------------------------------------

    def file_receipt(self, service: str, description: str, contact: str, now_ms: int) -> Receipt:
        code = new_code("RC")
        self._db.execute(
            "INSERT INTO receipts (code, service, description, contact, created_ms) VALUES (?, ?, ?, ?, ?)",
            (code, service, description, contact, now_ms),
        )
        receipt = self.receipt(code)
        assert receipt is not None
        return receipt

    def record_probe(self, code: str, confirmed: bool, detail: str) -> None:
        self._db.execute("UPDATE receipts SET probe_confirmed = ?, probe_detail = ? WHERE code = ?",
                         (int(confirmed), detail[:300], code))

    def receipt(self, code: str) -> Receipt | None:
        row = self._db.execute("SELECT code, service, description, contact, created_ms, state, probe_confirmed, "
                               "probe_detail, note FROM receipts WHERE code = ?", (code.upper(),)).fetchone()
        if row is None:
            return None
        code, service, description, contact, created, state, confirmed, detail, note = row
        return Receipt(code, service, description, contact, created, state,
                       None if confirmed is None else bool(confirmed), detail, note)

    def receipts(self, start_ms: int = 0, end_ms: int = 2**62, service: str | None = None) -> list[Receipt]:
        query = "SELECT code FROM receipts WHERE created_ms >= ? AND created_ms < ?"
        params: list[object] = [start_ms, end_ms]
        if service is not None:
            query += " AND service = ?"
            params.append(service)
        codes = [row[0] for row in self._db.execute(query + " ORDER BY created_ms", params).fetchall()]
        return [r for code in codes if (r := self.receipt(code)) is not None]

    def set_receipt_state(self, code: str, state: str, note: str, now_ms: int) -> bool:
        column = {"acknowledged": "acknowledged_ms", "resolved": "resolved_ms"}[state]
        return self._db.execute(
            f"UPDATE receipts SET state = ?, note = ?, {column} = ? WHERE code = ?",
            (state, note, now_ms, code.upper()),
        ).rowcount == 1

    # -- tokens and audit --------------------------------------------------------------

    def create_token(self, name: str, role: str, now_ms: int, expires_ms: int | None = None) -> str:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if expires_ms is not None and expires_ms <= now_ms:
            raise ValueError("the expiry must be in the future")
        token = "dbn_" + secrets.token_urlsafe(32)
        self._db.execute("INSERT INTO api_tokens (digest, name, role, created_ms, expires_ms) VALUES (?, ?, ?, ?, ?)",
                         (token_digest(token), name, role, now_ms, expires_ms))
        return token

    def token(self, token: str) -> tuple[str, str] | None:
        """(name, role) of a token that may be used now, or None."""
        found = self.check_token(token, int(time.time() * 1000))
        return (found.name, found.role) if found.state == "ok" else None

    def check_token(self, token: str, now_ms: int) -> TokenCheck:
        row = self._db.execute("SELECT name, role, expires_ms, revoked_ms FROM api_tokens WHERE digest = ?",
                               (token_digest(token),)).fetchone()
        if row is None:
            return TokenCheck("unknown")
        name, role, expires, revoked = row
        if revoked is not None:
            return TokenCheck("revoked", name, role)
        if expires is not None and now_ms >= expires:
            return TokenCheck("expired", name, role)
        return TokenCheck("ok", name, role)

    def tokens(self) -> list[TokenInfo]:
        rows = self._db.execute("SELECT rowid, name, role, created_ms, expires_ms, revoked_ms FROM api_tokens "
                                "ORDER BY rowid").fetchall()
        return [TokenInfo(*row) for row in rows]

    def revoke_token(self, token_id: int, now_ms: int) -> bool:
        """Revoke at once; False when there is no such token or it was revoked already."""
        return self._db.execute("UPDATE api_tokens SET revoked_ms = ? WHERE rowid = ? AND revoked_ms IS NULL",
                                (now_ms, token_id)).rowcount == 1

    def audit(self, who: str, method: str, path: str, status: int, body: Any, now_ms: int) -> None:
        text = json.dumps(body, ensure_ascii=False)
        if len(text) > AUDIT_BODY_CHARS:  # still JSON, so that the log reads back: what was cut is said
            text = json.dumps({"cut_to_chars": AUDIT_BODY_CHARS, "start": text[:AUDIT_BODY_CHARS]}, ensure_ascii=False)
        self._db.execute("INSERT INTO audit (ts_ms, who, method, path, status, body) VALUES (?, ?, ?, ?, ?, ?)",
                         (now_ms, who, method, path, status, text))

    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT ts_ms, who, method, path, status, body FROM audit ORDER BY id DESC LIMIT ?",
                                (limit,)).fetchall()
        return [{"ts_ms": ts, "who": who, "method": m, "path": p, "status": s, "body": json.loads(b)}
                for ts, who, m, p, s, b in rows]

    def close(self) -> None:
        self._db.close()
