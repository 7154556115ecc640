"""Console sessions: a person signs in with an API token and gets a cookie naming a session.

Why tokens and not accounts: a token already has a role, an expiry, revocation
and an audit name, and admins already hand them out (``didban token create``,
the console's tokens page).  Accounts would be a second identity system with
its own passwords to reset.

The cookie holds only a random session id.  The session (kept in this
process's memory) holds the token itself, so every request checks the token
again: a revoked or expired token ends its sessions at once.  A restart signs
everyone out, which for staff pages is the safe side.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

COOKIE = "didban_session"
LIFETIME_S = 8 * 3600  # a working day; then sign in again
IDLE_S = 3600  # an unattended browser is signed out after an hour
MAX_SESSIONS = 10_000


@dataclass
class Session:
    id: str
    token: str = field(repr=False)
    name: str
    role: str
    csrf: str = field(repr=False)  # every form post carries it
    expires: float
    last_seen: float
    flash: str = ""  # a message for the next page (after a redirect)

    def take_flash(self) -> str:
        message, self.flash = self.flash, ""
        return message


class Sessions:
    def __init__(self, lifetime_s: float = LIFETIME_S, idle_s: float = IDLE_S) -> None:
        self.lifetime_s = lifetime_s
        self.idle_s = idle_s
        self._open: dict[str, Session] = {}

    def open(self, token: str, name: str, role: str) -> Session:
        now = time.time()
        if len(self._open) >= MAX_SESSIONS:
            self._forget_stale(now)
        session = Session(secrets.token_urlsafe(32), token, name, role, secrets.token_urlsafe(32),
                          now + self.lifetime_s, now)
        self._open[session.id] = session
        return session

    def get(self, session_id: str) -> Session | None:
        session = self._open.get(session_id)
        now = time.time()
        if session is None:
            return None
        if now >= session.expires or now - session.last_seen >= self.idle_s:
            del self._open[session_id]
            return None
        session.last_seen = now
        return session

    def close(self, session_id: str) -> None:
        self._open.pop(session_id, None)

    def _forget_stale(self, now: float) -> None:
        self._open = {k: s for k, s in self._open.items() if now < s.expires and now - s.last_seen < self.idle_s}
        while len(self._open) >= MAX_SESSIONS:  # still full: the least recently used go first
            del self._open[min(self._open.values(), key=lambda s: s.last_seen).id]
