"""The baseline schema: everything Didban kept before schema versions, on SQLite and PostgreSQL.

On SQLite it also adopts a store made before versions existed: every
statement is ``IF NOT EXISTS`` and the columns added in place over the first
releases are added where they are missing.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None

SQLITE = """
CREATE TABLE IF NOT EXISTS services (key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS locations (key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS results (
    service INTEGER NOT NULL, location INTEGER NOT NULL, ts_ms INTEGER NOT NULL,
    status INTEGER NOT NULL, latency_ms REAL NOT NULL,
    error TEXT, detail TEXT, http_status INTEGER, cert_days_left REAL
);
CREATE INDEX IF NOT EXISTS results_by_service_time ON results (service, ts_ms);
CREATE TABLE IF NOT EXISTS latest (
    service INTEGER NOT NULL, location INTEGER NOT NULL, ts_ms INTEGER NOT NULL,
    status INTEGER NOT NULL, since_ms INTEGER NOT NULL, latency_ms REAL NOT NULL, error TEXT,
    PRIMARY KEY (service, location)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trackers (
    service INTEGER NOT NULL, location INTEGER NOT NULL,
    last_ts_ms INTEGER, run_start_ms INTEGER, run_length INTEGER NOT NULL,
    run_last_ms INTEGER, open INTEGER NOT NULL,
    PRIMARY KEY (service, location)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outages (
    id INTEGER PRIMARY KEY, service INTEGER NOT NULL, start_ms INTEGER NOT NULL, end_ms INTEGER,
    error TEXT, tracking_code TEXT NOT NULL UNIQUE
);
CREATE UNIQUE INDEX IF NOT EXISTS one_open_outage_per_service ON outages (service) WHERE end_ms IS NULL;
CREATE TABLE IF NOT EXISTS segments (
    service INTEGER NOT NULL, location INTEGER NOT NULL,
    start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL, down INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS segments_by_service_time ON segments (service, location, start_ms);
CREATE TABLE IF NOT EXISTS horizons (
    service INTEGER NOT NULL, location INTEGER NOT NULL, horizon_ms INTEGER NOT NULL,
    PRIMARY KEY (service, location)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS maintenance (
    id TEXT PRIMARY KEY, services TEXT NOT NULL, start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL,
    announced_at_ms INTEGER NOT NULL, cancelled INTEGER NOT NULL DEFAULT 0, title TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS exclusions (
    id TEXT PRIMARY KEY, services TEXT NOT NULL, start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL,
    reason TEXT NOT NULL, evidence TEXT NOT NULL DEFAULT '', recorded_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS month_closes (
    month TEXT PRIMARY KEY, closed_ms INTEGER NOT NULL, report TEXT NOT NULL, pack_sha256 TEXT
);
CREATE TABLE IF NOT EXISTS ledger (
    tracking_code TEXT PRIMARY KEY, month TEXT NOT NULL, service TEXT NOT NULL, kind TEXT NOT NULL,
    credit_percent REAL NOT NULL, amount REAL NOT NULL, availability_percent REAL NOT NULL,
    issued_ms INTEGER NOT NULL, adjusts TEXT, note TEXT NOT NULL DEFAULT '', pack_sha256 TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_credit_per_service_month ON ledger (month, service) WHERE kind = 'credit';
CREATE TABLE IF NOT EXISTS evidence_packs (
    digest TEXT PRIMARY KEY, month TEXT NOT NULL, created_ms INTEGER NOT NULL, size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS evidence_chunks (
    digest TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (digest, seq)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS month_closes_immutable BEFORE UPDATE ON month_closes
BEGIN SELECT RAISE(ABORT, 'a closed month is immutable: record an adjustment instead'); END;
CREATE TRIGGER IF NOT EXISTS month_closes_undeletable BEFORE DELETE ON month_closes
BEGIN SELECT RAISE(ABORT, 'a closed month is immutable'); END;
CREATE TRIGGER IF NOT EXISTS ledger_immutable BEFORE UPDATE ON ledger
BEGIN SELECT RAISE(ABORT, 'ledger entries are immutable: record an adjustment instead'); END;
CREATE TRIGGER IF NOT EXISTS ledger_undeletable BEFORE DELETE ON ledger
BEGIN SELECT RAISE(ABORT, 'ledger entries are immutable'); END;
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, event TEXT NOT NULL, channel TEXT NOT NULL, recipient TEXT NOT NULL,
    lang TEXT NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL, html TEXT,
    state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL, claimed_ms INTEGER, created_ms INTEGER NOT NULL, sent_ms INTEGER,
    last_error TEXT, UNIQUE (event, channel, recipient)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_ms);
CREATE TABLE IF NOT EXISTS subscribers (
    id INTEGER PRIMARY KEY, service TEXT NOT NULL, kind TEXT NOT NULL, address TEXT NOT NULL,
    lang TEXT NOT NULL, confirmed INTEGER NOT NULL DEFAULT 0, code TEXT NOT NULL, token TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL, code_ms INTEGER NOT NULL DEFAULT 0, wrong_attempts INTEGER NOT NULL DEFAULT 0,
    UNIQUE (service, kind, address)
);
CREATE TABLE IF NOT EXISTS acks (outage_id INTEGER PRIMARY KEY, acked_ms INTEGER NOT NULL, acked_by TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS codes_sent (kind TEXT NOT NULL, address TEXT NOT NULL, sent_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS codes_sent_by_address ON codes_sent (kind, address, sent_ms);
CREATE TABLE IF NOT EXISTS receipts (
    code TEXT PRIMARY KEY, service TEXT NOT NULL, description TEXT NOT NULL, contact TEXT NOT NULL DEFAULT '',
    created_ms INTEGER NOT NULL, state TEXT NOT NULL DEFAULT 'open',
    probe_confirmed INTEGER, probe_detail TEXT, note TEXT NOT NULL DEFAULT '',
    acknowledged_ms INTEGER, resolved_ms INTEGER
);
CREATE INDEX IF NOT EXISTS receipts_by_time ON receipts (created_ms);
CREATE TABLE IF NOT EXISTS api_tokens (
    digest TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, created_ms INTEGER NOT NULL,
    expires_ms INTEGER, revoked_ms INTEGER
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, who TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL,
    status INTEGER NOT NULL, body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS influx_cursor (stream TEXT PRIMARY KEY, position INTEGER NOT NULL);
"""

# Columns added in place before schema versions existed: added to an adopted store that lacks them.
SQLITE_ADDED_COLUMNS = (
    ("results", "cert_days_left", "REAL"),
    ("month_closes", "pack_sha256", "TEXT"),
    ("ledger", "pack_sha256", "TEXT"),
    ("subscribers", "code_ms", "INTEGER NOT NULL DEFAULT 0"),
    ("subscribers", "wrong_attempts", "INTEGER NOT NULL DEFAULT 0"),
    ("api_tokens", "expires_ms", "INTEGER"),
    ("api_tokens", "revoked_ms", "INTEGER"),
)

# The same tables.  Times are BIGINT milliseconds, figures DOUBLE PRECISION (REAL is 4 bytes here),
# and the tables whose SQLite rowid is read (results for the feed, api_tokens for their ids) name it.
POSTGRESQL = """
CREATE TABLE services (key INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, id TEXT NOT NULL UNIQUE);
CREATE TABLE locations (key INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, id TEXT NOT NULL UNIQUE);
CREATE TABLE results (
    rowid BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    service INTEGER NOT NULL, location INTEGER NOT NULL, ts_ms BIGINT NOT NULL,
    status SMALLINT NOT NULL, latency_ms DOUBLE PRECISION NOT NULL,
    error TEXT, detail TEXT, http_status INTEGER, cert_days_left DOUBLE PRECISION
);
CREATE INDEX results_by_service_time ON results (service, ts_ms);
CREATE TABLE latest (
    service INTEGER NOT NULL, location INTEGER NOT NULL, ts_ms BIGINT NOT NULL,
    status SMALLINT NOT NULL, since_ms BIGINT NOT NULL, latency_ms DOUBLE PRECISION NOT NULL, error TEXT,
    PRIMARY KEY (service, location)
);
CREATE TABLE trackers (
    service INTEGER NOT NULL, location INTEGER NOT NULL,
    last_ts_ms BIGINT, run_start_ms BIGINT, run_length INTEGER NOT NULL,
    run_last_ms BIGINT, open SMALLINT NOT NULL,
    PRIMARY KEY (service, location)
);
CREATE TABLE outages (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, service INTEGER NOT NULL,
    start_ms BIGINT NOT NULL, end_ms BIGINT, error TEXT, tracking_code TEXT NOT NULL UNIQUE
);
CREATE UNIQUE INDEX one_open_outage_per_service ON outages (service) WHERE end_ms IS NULL;
CREATE TABLE segments (
    service INTEGER NOT NULL, location INTEGER NOT NULL,
    start_ms BIGINT NOT NULL, end_ms BIGINT NOT NULL, down SMALLINT NOT NULL
);
CREATE INDEX segments_by_service_time ON segments (service, location, start_ms);
CREATE TABLE horizons (
    service INTEGER NOT NULL, location INTEGER NOT NULL, horizon_ms BIGINT NOT NULL,
    PRIMARY KEY (service, location)
);
CREATE TABLE maintenance (
    id TEXT PRIMARY KEY, services TEXT NOT NULL, start_ms BIGINT NOT NULL, end_ms BIGINT NOT NULL,
    announced_at_ms BIGINT NOT NULL, cancelled SMALLINT NOT NULL DEFAULT 0, title TEXT NOT NULL DEFAULT ''
);
CREATE TABLE exclusions (
    id TEXT PRIMARY KEY, services TEXT NOT NULL, start_ms BIGINT NOT NULL, end_ms BIGINT NOT NULL,
    reason TEXT NOT NULL, evidence TEXT NOT NULL DEFAULT '', recorded_ms BIGINT NOT NULL
);
CREATE TABLE month_closes (
    month TEXT PRIMARY KEY, closed_ms BIGINT NOT NULL, report TEXT NOT NULL, pack_sha256 TEXT
);
CREATE TABLE ledger (
    tracking_code TEXT PRIMARY KEY, month TEXT NOT NULL, service TEXT NOT NULL, kind TEXT NOT NULL,
    credit_percent DOUBLE PRECISION NOT NULL, amount DOUBLE PRECISION NOT NULL,
    availability_percent DOUBLE PRECISION NOT NULL, issued_ms BIGINT NOT NULL, adjusts TEXT,
    note TEXT NOT NULL DEFAULT '', pack_sha256 TEXT
);
CREATE UNIQUE INDEX one_credit_per_service_month ON ledger (month, service) WHERE kind = 'credit';
CREATE TABLE evidence_packs (
    digest TEXT PRIMARY KEY, month TEXT NOT NULL, created_ms BIGINT NOT NULL, size BIGINT NOT NULL
);
CREATE TABLE evidence_chunks (
    digest TEXT NOT NULL, seq INTEGER NOT NULL, data BYTEA NOT NULL, PRIMARY KEY (digest, seq)
);
CREATE FUNCTION didban_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'integrity_constraint_violation'; END $$;
CREATE TRIGGER month_closes_immutable BEFORE UPDATE ON month_closes FOR EACH ROW
EXECUTE FUNCTION didban_refuse_change('a closed month is immutable: record an adjustment instead');
CREATE TRIGGER month_closes_undeletable BEFORE DELETE ON month_closes FOR EACH ROW
EXECUTE FUNCTION didban_refuse_change('a closed month is immutable');
CREATE TRIGGER month_closes_untruncatable BEFORE TRUNCATE ON month_closes FOR EACH STATEMENT
EXECUTE FUNCTION didban_refuse_change('a closed month is immutable');
CREATE TRIGGER ledger_immutable BEFORE UPDATE ON ledger FOR EACH ROW
EXECUTE FUNCTION didban_refuse_change('ledger entries are immutable: record an adjustment instead');
CREATE TRIGGER ledger_undeletable BEFORE DELETE ON ledger FOR EACH ROW
EXECUTE FUNCTION didban_refuse_change('ledger entries are immutable');
CREATE TRIGGER ledger_untruncatable BEFORE TRUNCATE ON ledger FOR EACH STATEMENT
EXECUTE FUNCTION didban_refuse_change('ledger entries are immutable');
CREATE TABLE outbox (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, event TEXT NOT NULL, channel TEXT NOT NULL,
    recipient TEXT NOT NULL, lang TEXT NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL, html TEXT,
    state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL, claimed_ms BIGINT, created_ms BIGINT NOT NULL, sent_ms BIGINT,
    last_error TEXT, UNIQUE (event, channel, recipient)
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_ms);
CREATE TABLE subscribers (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, service TEXT NOT NULL, kind TEXT NOT NULL,
    address TEXT NOT NULL, lang TEXT NOT NULL, confirmed SMALLINT NOT NULL DEFAULT 0, code TEXT NOT NULL,
    token TEXT NOT NULL UNIQUE, created_ms BIGINT NOT NULL, code_ms BIGINT NOT NULL DEFAULT 0,
    wrong_attempts INTEGER NOT NULL DEFAULT 0, UNIQUE (service, kind, address)
);
CREATE TABLE acks (outage_id BIGINT PRIMARY KEY, acked_ms BIGINT NOT NULL, acked_by TEXT NOT NULL);
CREATE TABLE codes_sent (kind TEXT NOT NULL, address TEXT NOT NULL, sent_ms BIGINT NOT NULL);
CREATE INDEX codes_sent_by_address ON codes_sent (kind, address, sent_ms);
CREATE TABLE receipts (
    code TEXT PRIMARY KEY, service TEXT NOT NULL, description TEXT NOT NULL, contact TEXT NOT NULL DEFAULT '',
    created_ms BIGINT NOT NULL, state TEXT NOT NULL DEFAULT 'open',
    probe_confirmed SMALLINT, probe_detail TEXT, note TEXT NOT NULL DEFAULT '',
    acknowledged_ms BIGINT, resolved_ms BIGINT
);
CREATE INDEX receipts_by_time ON receipts (created_ms);
CREATE TABLE api_tokens (
    rowid BIGINT GENERATED BY DEFAULT AS IDENTITY UNIQUE,
    digest TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, created_ms BIGINT NOT NULL,
    expires_ms BIGINT, revoked_ms BIGINT
);
CREATE TABLE audit (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, ts_ms BIGINT NOT NULL, who TEXT NOT NULL,
    method TEXT NOT NULL, path TEXT NOT NULL, status INTEGER NOT NULL, body TEXT NOT NULL
);
CREATE TABLE influx_cursor (stream TEXT PRIMARY KEY, position BIGINT NOT NULL);
"""


def statements(script: str) -> list[str]:
    """One statement per entry: a statement ends at a line ending in ``;`` (a trigger's body ends its line)."""
    out: list[str] = []
    current: list[str] = []
    for line in script.strip().splitlines():
        current.append(line)
        if line.rstrip().endswith(";"):
            out.append("\n".join(current).rstrip().removesuffix(";"))
            current = []
    return out


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for statement in statements(POSTGRESQL):
            op.execute(statement)
        return
    for statement in statements(SQLITE):
        op.execute(statement)
    for table, column, kind in SQLITE_ADDED_COLUMNS:
        columns = {row[1] for row in bind.exec_driver_sql(f"PRAGMA table_info({table})")}
        if column not in columns:
            op.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
