"""Which system of record, and the objects each part is given to use it.

The composition root builds one ``Backend`` and passes what it opens to the
engine, collector, settlement, alerting, web and feed; nothing else opens a
path or a connection.  Each object holds its own connection, because each is
used from its own thread (the collector's writer, a request's worker, the
feed's reader).

Where the store is, first found wins: ``--db`` (a path or a URL), the
``DIDBAN_STORE_URL`` environment variable, ``store.postgresql.dsn``, then
``store.sqlite.path``.  URLs are ``sqlite:PATH`` (``sqlite:///abs/path``
too) and ``postgresql://user@host:port/db``; the PostgreSQL password comes
from ``DIDBAN_STORE_PASSWORD`` or the secrets file and is never shown.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import DidbanConfig, Secrets
from store.database import Database, PostgresDatabase, SqliteDatabase, describe_conninfo
from store.feed import FeedCursor
from store.outbox import Outbox
from store.sql_store import SqlStore
from store.subscribers import Subscribers
from store.web_records import WebRecords

STORE_URL_ENV = "DIDBAN_STORE_URL"


class BadStoreUrl(ValueError):
    pass


@dataclass(frozen=True)
class Backend:
    """A system of record: a SQLite file (``path``) or a PostgreSQL database (``conninfo``)."""

    path: Path | None = None
    conninfo: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def engine(self) -> str:
        return "sqlite" if self.path is not None else "postgresql"

    def describe(self) -> str:
        """Where the store is, fit to print: never the password."""
        return f"sqlite:{self.path}" if self.path is not None else describe_conninfo(self.conninfo or "")

    def exists(self) -> bool:
        """False only for a SQLite file not made yet (a server is always there to ask)."""
        return self.path is None or self.path.exists()

    def connect(self) -> Database:
        """A new connection, its schema not looked at (``didban store upgrade`` looks at it itself)."""
        if self.path is not None:
            return SqliteDatabase(self.path)
        assert self.conninfo is not None
        return PostgresDatabase(self.conninfo, self.password)

    def database(self, *, upgrade: bool = True) -> Database:
        """A new connection, its schema made current (or refused: newer than this code)."""
        from store.schema import checked

        return checked(self.connect(), upgrade=upgrade)

    def store(self) -> SqlStore:
        return SqlStore(self.database())

    def outbox(self, **policy: Any) -> Outbox:
        return Outbox(self.database(), **policy)

    def subscribers(self) -> Subscribers:
        return Subscribers(self.database())

    def web_records(self) -> WebRecords:
        return WebRecords(self.database())

    def feed(self) -> FeedCursor:
        return FeedCursor(self.database())

    def journal_path(self, journal_dir: str | None) -> Path:
        """Where results wait, fsync'd, while the store cannot take them: next to a SQLite file by default."""
        if self.path is not None:
            return Path(journal_dir or self.path.parent) / f"{self.path.name}.journal"
        from psycopg.conninfo import conninfo_to_dict

        name = conninfo_to_dict(self.conninfo or "").get("dbname") or "postgresql"
        return Path(journal_dir or ".") / f"didban-{name}.journal"


def from_url(url: str, password: str | None = None) -> Backend:
    """``sqlite:PATH``, ``sqlite:///abs/path``, ``postgresql://…`` (``postgres://`` too), or a bare SQLite path."""
    if url.startswith(("postgresql://", "postgres://")):
        return Backend(conninfo=url, password=password)
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:")
        path = path[2:] if path.startswith("//") else path
        if not path:
            raise BadStoreUrl("a sqlite: URL needs a file path, as in sqlite:didban.sqlite")
        return Backend(path=Path(path))
    if "://" in url:
        raise BadStoreUrl(f"{url.split('://')[0]}: not a store Didban knows; use sqlite:PATH or postgresql://…")
    return Backend(path=Path(url))


def locate(config: DidbanConfig, db: str | None = None, *, secrets_file: str | None = None,
           environ: Mapping[str, str] = os.environ) -> Backend:
    """The store this invocation uses (see the module's order)."""
    secrets = Secrets.load(secrets_file)
    password = secrets.store_password.get_secret_value() if secrets.store_password else None
    if db:
        return from_url(db, password)
    if environ.get(STORE_URL_ENV):
        return from_url(environ[STORE_URL_ENV], password)
    if config.store.postgresql is not None:
        return Backend(conninfo=config.store.postgresql.dsn, password=password)
    return Backend(path=Path(config.store.sqlite.path))
