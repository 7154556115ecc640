"""The lease: which of several centers on one store runs the jobs that must run once.

Deriving outages from the stream of results, closing months, materializing,
retention, the notifier's escalations and reminders, the watch over probe
locations: one center at a time does them, the holder of the lease.  Every
center serves the web, the API and agents' batches, and delivers notices
(the outbox is claimed with ``SKIP LOCKED``).

On PostgreSQL the lease is a session advisory lock on a connection of its
own: when the holder dies (even ``kill -9``) its connection closes and the
server releases the lock at once, so another center's next try takes it.
A holder checks each round that its connection still holds the lock, and
gives up its jobs the moment it does not.  On SQLite (one machine) it is a
``flock`` on a file beside the store, released by the kernel when the
process dies.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

LEASE_KEY = 0x646964_6c65_6173  # the advisory-lock key of the center's lease


class Lease:
    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self._db: Any = None
        self._fd: int | None = None
        self.held = False

    def renew(self) -> bool:
        """Take the lease if it is free, or check that it is still ours; whether we hold it now."""
        try:
            self.held = self._check() if self.held else self._take()
        except Exception:  # the store unreachable: whoever holds a lease cannot be sure of it
            self._drop()
            self.held = False
        return self.held

    def _take(self) -> bool:
        if self._backend.path is not None:
            path = Path(f"{self._backend.path}.lease")
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._drop()
                return False
            return True
        if self._db is None:
            self._db = self._backend.database(upgrade=False)
        return bool(self._db.execute("SELECT pg_try_advisory_lock(?)", (LEASE_KEY,)).fetchone()[0])

    def _check(self) -> bool:
        if self._backend.path is not None:
            return self._fd is not None
        # The connection may have been reopened under us (it reconnects by itself): then the lock is gone.
        row = self._db.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid() "
            "AND ((classid::bigint << 32) | objid::bigint) = ?", (LEASE_KEY,)).fetchone()
        if int(row[0]) == 0:
            self._drop()
            return False
        return True

    def _drop(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file releases the flock
            self._fd = None
        if self._db is not None:
            try:
                self._db.close()  # closing the session releases the advisory lock
            except Exception:
                pass
            self._db = None

    def release(self) -> None:
        self._drop()
        self.held = False
