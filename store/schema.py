"""The versioned schema: Alembic migrations for both engines, applied when a store is opened.

Opening a store costs one query when its schema is current (the revision is
compared with ``SCHEMA_HEAD``); Alembic and SQLAlchemy are imported only to
upgrade.  Two processes opening the same old store at once upgrade it once:
the upgrade holds a lock (``flock`` on the SQLite file's folder, an advisory lock on
PostgreSQL).  A store whose schema is newer than this code knows is refused:
running old code on it could write what the newer schema forbids.
"""

from __future__ import annotations

import logging
from pathlib import Path

from store.database import Database, SqliteDatabase

SCHEMA_HEAD = "0004"
MIGRATIONS = Path(__file__).with_name("migrations")
log = logging.getLogger("didban.store")
logging.getLogger("alembic").setLevel(logging.WARNING)  # an upgrade logs one line of ours, not Alembic's dozens


class SchemaTooNew(Exception):
    """The store was upgraded by a newer Didban than this one."""


class SchemaBehind(Exception):
    """The store's schema is older than this code and was not to be upgraded."""


def current_revision(db: Database) -> str | None:
    if not db.table_exists("alembic_version"):
        return None
    row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    return str(row[0]) if row else None


def known_revisions() -> list[str]:
    """Every revision of the migrations, oldest first."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(MIGRATIONS))
    return [script.revision for script in reversed(list(scripts.walk_revisions()))]


def check(db: Database, *, upgrade: bool = True) -> list[str]:
    """Make the schema current (or say why not); return the revisions applied."""
    revision = current_revision(db)
    if revision == SCHEMA_HEAD:
        return []
    if revision is not None and revision not in known_revisions():
        raise SchemaTooNew(f"{db.describe()}: the store's schema is at revision {revision}, newer than this "
                           f"Didban knows (up to {SCHEMA_HEAD}); run a newer Didban, or point this one at "
                           "another store")
    if not upgrade:
        raise SchemaBehind(f"{db.describe()}: the store's schema is at revision {revision or 'none'}, older "
                           f"than this Didban's {SCHEMA_HEAD}; run `didban store upgrade`")
    return _upgrade(db)


def _upgrade(db: Database) -> list[str]:
    import sqlalchemy
    from alembic import command
    from alembic.config import Config

    with db.exclusive():
        before = current_revision(db)  # another process may have upgraded while this one waited
        if before == SCHEMA_HEAD:
            return []
        engine = sqlalchemy.create_engine(db.sqlalchemy_url, creator=db.new_connection,
                                          poolclass=sqlalchemy.pool.NullPool)
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        try:
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        finally:
            engine.dispose()
    revisions = known_revisions()
    applied = revisions[revisions.index(before) + 1:] if before in revisions else revisions
    log.info("store schema of %s upgraded from %s to %s", db.describe(), before or "nothing", SCHEMA_HEAD)
    return applied


def checked(db: Database, *, upgrade: bool = True) -> Database:
    """``db`` with its schema made current, or closed and refused (newer than this code, or behind and not to
    be upgraded)."""
    try:
        check(db, upgrade=upgrade)
    except BaseException:
        db.close()
        raise
    return db


def open_sqlite(path: str | Path, busy_timeout_s: float = 5.0, *, upgrade: bool = True) -> SqliteDatabase:
    db = SqliteDatabase(path, busy_timeout_s)
    checked(db, upgrade=upgrade)
    return db
