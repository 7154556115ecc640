"""One connection to the system of record, whichever engine holds it.

The store's SQL is written once, in the dialect SQLite and PostgreSQL share
(``?`` placeholders, ``ON CONFLICT``, ``RETURNING``, partial indexes); this
module is the only place that knows which engine is underneath: it turns
placeholders into psycopg's, opens transactions the way each engine wants,
bulk-loads with ``COPY`` on PostgreSQL, and turns "the store cannot take
this now" (locked, disk full, connection lost) into ``StoreUnavailable``.

A ``Database`` is used by one thread at a time, as a DB-API connection is.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from itertools import chain
from pathlib import Path
from typing import Any, Literal, Protocol

from store.contract import StoreUnavailable

Dialect = Literal["sqlite", "postgresql"]


class Rows(Protocol):
    """What a statement gives back: a DB-API cursor of either driver."""

    @property
    def rowcount(self) -> int: ...

    def __iter__(self) -> Iterator[Any]: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


def upsert(table: str, columns: Sequence[str], keys: Sequence[str]) -> str:
    """``INSERT … ON CONFLICT (keys) DO UPDATE`` of every other column: SQLite's and PostgreSQL's common upsert."""
    marks = ", ".join("?" * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}){_on_conflict(columns, keys)}"


def _on_conflict(columns: Sequence[str], keys: Sequence[str]) -> str:
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in keys)
    return f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"


ROWS_PER_INSERT = 100  # × 9 columns stays under SQLite's oldest limit of 999 values a statement


class Database:
    """A connection with the engine's differences taken care of."""

    dialect: Dialect

    def describe(self) -> str:
        """Where the database is, fit to print (never a password)."""
        raise NotImplementedError

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        raise NotImplementedError

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        """Run ``sql`` once per row; return the rows it changed."""
        raise NotImplementedError

    def insert_many(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                    update_on: Sequence[str] = ()) -> None:
        """Append rows (the hot path: results), ``ROWS_PER_INSERT`` to a statement: one step of the
        engine, not one per row (and on SQLite one release of the GIL, not one per row: with the loop's
        thread busy, each release is a hand-over of the GIL and the core, which made refreshing 20,000
        services' latest state row by row cost more than storing their results).

        ``update_on`` (a key): a row whose key is stored already updates it; the rows' keys must differ."""
        conflict = _on_conflict(columns, update_on) if update_on else ""
        one = "(" + ", ".join("?" * len(columns)) + ")"
        head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
        whole = len(rows) - len(rows) % ROWS_PER_INSERT
        if whole:
            statement = head + ", ".join([one] * ROWS_PER_INSERT) + conflict
            for start in range(0, whole, ROWS_PER_INSERT):
                self.execute(statement, list(chain.from_iterable(rows[start:start + ROWS_PER_INSERT])))
        if whole < len(rows):
            self.executemany(head + one + conflict, rows[whole:])

    def select_many(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        """The rows of many reads, in order (PostgreSQL pipelines them: one wait, not one per query)."""
        return [self.execute(sql, params).fetchall() for sql, params in queries]

    @property
    def in_transaction(self) -> bool:
        raise NotImplementedError

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction holding the write lock; rolled back on any exception."""
        self.execute(self._begin)
        try:
            yield
        except BaseException:
            if self.in_transaction:
                self.execute("ROLLBACK")
            raise
        self.execute("COMMIT")

    _begin = "BEGIN"

    def table_exists(self, table: str) -> bool:
        raise NotImplementedError

    sqlalchemy_url = ""  # the SQLAlchemy dialect Alembic runs the migrations with

    def new_connection(self) -> Any:
        """Another DB-API connection to the same database (schema upgrades run on their own)."""
        raise NotImplementedError

    def exclusive(self) -> AbstractContextManager[None]:
        """Held by one process at a time across every process using this database (schema upgrades)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SqliteDatabase(Database):
    """The embedded default: a file, in WAL mode (a ``kill -9`` loses nothing committed)."""

    dialect: Dialect = "sqlite"
    _begin = "BEGIN IMMEDIATE"

    def __init__(self, path: str | Path, busy_timeout_s: float = 5.0) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                       check_same_thread=False)
        except sqlite3.OperationalError as exc:  # no such folder, no permission
            raise StoreUnavailable(f"{self.path}: {exc}") from exc
        # Switching a new file to WAL takes an exclusive lock, and when another connection switches it at
        # the same moment SQLite answers "database is locked" at once, without its busy handler: so the
        # mode is read first (once it is WAL nobody needs the lock) and the switch is retried for a while.
        deadline = time.monotonic() + busy_timeout_s
        while True:
            try:
                if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    self._db.close()
                    raise StoreUnavailable(f"{self.path}: {exc}") from exc
                time.sleep(0.05)

    def describe(self) -> str:
        return f"sqlite:{self.path}"

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        try:
            return self._db.execute(sql, params)
        except sqlite3.OperationalError as exc:  # locked, disk full, read-only, I/O error
            raise StoreUnavailable(str(exc)) from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        try:
            return int(self._db.executemany(sql, rows).rowcount)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc

    sqlalchemy_url = "sqlite://"

    def new_connection(self) -> Any:
        return sqlite3.connect(self.path, timeout=30.0)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        # The folder's flock, not the file's: closing any descriptor of the database file would drop the
        # POSIX locks SQLite holds on it in this process.
        folder = os.open(self.path.resolve().parent, os.O_RDONLY)
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)
            yield
        finally:
            os.close(folder)

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    def table_exists(self, table: str) -> bool:
        return self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                (table,)).fetchone() is not None

    def close(self) -> None:
        self._db.close()


class PostgresDatabase(Database):
    """A PostgreSQL server, through psycopg 3, in autocommit mode with explicit transactions.

    A lost connection is reopened at the next statement outside a transaction,
    so a restarted or failed-over server delays writes and loses none of them.
    """

    dialect: Dialect = "postgresql"

    def __init__(self, conninfo: str, password: str | None = None, connect_timeout_s: int = 10) -> None:
        self._conninfo = conninfo
        self._password = password
        self._connect_timeout_s = connect_timeout_s
        self._marks: dict[str, str] = {}
        self._db: Any = None
        self._connect()

    def new_connection(self) -> Any:
        """A psycopg connection to the same database (the schema upgrade runs on its own)."""
        import psycopg

        extra: dict[str, Any] = {"connect_timeout": self._connect_timeout_s, "application_name": "didban"}
        if self._password is not None:
            extra["password"] = self._password
        try:
            return psycopg.connect(self._conninfo, autocommit=True, **extra)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"{self.describe()}: {_first_line(exc)}") from exc

    def _connect(self) -> None:
        self._db = self.new_connection()

    def describe(self) -> str:
        return describe_conninfo(self._conninfo)

    def _sql(self, sql: str) -> str:
        marked = self._marks.get(sql)
        if marked is None:  # the store's SQL has no literal ? or %: placeholders are the only ones
            marked = self._marks[sql] = sql.replace("%", "%%").replace("?", "%s")
        return marked

    def _live(self) -> Any:
        if self._db is None or self._db.closed or self._db.broken:
            self._connect()
        return self._db

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        return StoreUnavailable(f"{self.describe()}: {_first_line(exc)}")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        import psycopg

        try:
            return self._live().execute(self._sql(sql), params)  # type: ignore[no-any-return]
        except psycopg.OperationalError as exc:
            if not (self._db.broken and sql.lstrip().upper().startswith("SELECT")):
                raise self._unavailable(exc) from exc
        # The connection died while idle (a server restart, a failover): a read is asked again, once, on a
        # new one.  Writes are not: the server may have done one before the connection broke.
        try:
            return self._live().execute(self._sql(sql), params)  # type: ignore[no-any-return]
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        import psycopg

        rows = list(rows)
        if not rows:
            return 0
        try:
            with self._live().cursor() as cursor:
                cursor.executemany(self._sql(sql), rows)
                return max(int(cursor.rowcount), 0)
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from exc

    def select_many(self, queries: Sequence[tuple[str, Sequence[Any]]], chunk: int = 1_000) -> list[list[Any]]:
        import psycopg

        out: list[list[Any]] = []
        try:
            connection = self._live()
            for offset in range(0, len(queries), chunk):
                with connection.pipeline():
                    cursors = [connection.execute(self._sql(sql), params) for sql, params in
                               queries[offset:offset + chunk]]
                    out += [cursor.fetchall() for cursor in cursors]
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from exc
        return out

    def insert_many(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                    update_on: Sequence[str] = ()) -> None:
        import psycopg

        if not rows:
            return
        if update_on:  # COPY cannot update: the upsert, pipelined (one round trip for all the rows)
            self.executemany(upsert(table, columns, update_on), rows)
            return
        try:
            statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
            with self._live().cursor() as cursor, cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from exc

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self._db is not None and not self._db.closed and not self._db.broken and \
            self._db.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        try:
            with super().transaction():
                yield
        except BaseException:
            if self._db is not None and self._db.broken:
                self._db = None  # reopened at the next statement
            raise

    def table_exists(self, table: str) -> bool:
        return bool(self.execute("SELECT to_regclass(?) IS NOT NULL", (table,)).fetchone()[0])

    sqlalchemy_url = "postgresql+psycopg://"
    _EXCLUSIVE_KEY = 0x646964_6261_6E  # "didban": the advisory-lock key of schema upgrades

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        self.execute("SELECT pg_advisory_lock(?)", (self._EXCLUSIVE_KEY,))
        try:
            yield
        finally:
            self.execute("SELECT pg_advisory_unlock(?)", (self._EXCLUSIVE_KEY,))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


def describe_conninfo(conninfo: str) -> str:
    """The server and database of a PostgreSQL DSN, never its password."""
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(conninfo)
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', 'localhost')}{port}/{parts.get('dbname', '')}"


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
