"""Holds a SQLite file's write lock for a while, as another process would (a backup tool, a stuck admin).

Usage: python -m tests.lock_holder DB SECONDS; prints "locked" once it holds the lock.
"""

from __future__ import annotations

import sqlite3
import sys
import time

if __name__ == "__main__":
    connection = sqlite3.connect(sys.argv[1], isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    connection.execute("ROLLBACK")
