"""Moving to PostgreSQL loses nothing: ``didban store migrate``, then the service runs on the copy.

A SQLite store with a closed month, an open outage (opened by ``didban run``
itself), pending notices, subscribers, tokens and receipts is migrated to a
real PostgreSQL; the month's figures and its replayed pack are identical on
both sides, and ``didban run`` with ``DIDBAN_STORE_URL`` closes the open
outage with its own tracking code.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from didban.settlement import close_month
from store.backend import Backend
from store.contract import Notice
from store.copy import TABLES, copy_table
from tests.postgres import Cluster, postgres_cluster  # noqa: F401 - the session's PostgreSQL
from tests.test_engine import Target, wait_for
from tests.test_settlement import END, MONTH, config, fill

ROOT = Path(__file__).resolve().parent.parent


def settle_config(path: Path) -> Path:
    path.write_text(json.dumps(config().model_dump(mode="json"), ensure_ascii=False), encoding="utf-8")
    return path


def run_config(path: Path, base_url: str, web_port: int | None = None) -> Path:
    """The same services and agreement, probed every second from the location the month's results came from."""
    data = config().model_dump(mode="json")
    data["locations"] = [{"id": "tabriz"}]
    data["web"] = {"enabled": False} if web_port is None else {"host": "127.0.0.1", "port": web_port}
    for service in data["agencies"][0]["services"]:
        service.update(interval_seconds=1, timeout_seconds=1, failure_threshold=2,
                       probes=[{"type": "http", "url": f"{base_url}/{service['id']}"}])
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def didban(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "didban.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


def open_outage_code(db: Path) -> str | None:
    with sqlite3.connect(db) as connection:
        row = connection.execute("SELECT tracking_code FROM outages WHERE end_ms IS NULL").fetchone()
    return row[0] if row else None


@pytest.mark.slow
async def test_a_migrated_store_gives_the_same_figures_and_packs_and_goes_on(
        aiohttp_server: Any, tmp_path: Path, postgres_cluster: Cluster) -> None:  # noqa: F811
    sqlite_path = tmp_path / "didban.sqlite"
    settle_file = settle_config(tmp_path / "settle.json")
    target = Target()
    target.healthy["portal"] = False
    server = await aiohttp_server(target.app())
    run_file = run_config(tmp_path / "run.json", str(server.make_url("")).rstrip("/"))

    # A closed month, with its credit and archived pack; notices, a subscriber, a token, a receipt.
    backend = Backend(path=sqlite_path)
    store = backend.store()
    fill(store, "portal", downs=[(600, 900)])
    fill(store, "dispatch")
    closed = close_month(config(), store, MONTH, END + 1)
    store.close()
    outbox = backend.outbox()
    outbox.enqueue([Notice(f"event-{i}", "mail", f"c{i}@mail.ir", "fa", "قطعی", "متن") for i in range(5)], 0)
    outbox.close()
    subscribers = backend.subscribers()
    subscribers.subscribe("portal", "sms", "09121234567", "fa", 0)
    subscribers.close()
    records = backend.web_records()
    token = records.create_token("ops", "operator", 0)
    records.file_receipt("portal", "باز نمی‌شود", "", 0)
    records.close()

    # An outage opened by the running service itself.
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "didban.cli", "run", "--config",
                                                   str(run_file), "--db", str(sqlite_path), cwd=ROOT,
                                                   stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        await wait_for(lambda: open_outage_code(sqlite_path) is not None, timeout=30)
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)
    code = open_outage_code(sqlite_path)

    url = postgres_cluster.url(postgres_cluster.new_database())
    secret = {"DIDBAN_STORE_PASSWORD": postgres_cluster.password}
    migrated = await asyncio.to_thread(didban, "store", "migrate", "--config", str(settle_file),
                                       "--from", f"sqlite:{sqlite_path}", "--to", url, env=secret)
    assert migrated.returncode == 0, migrated.stderr
    assert "identical" in migrated.stdout and str(MONTH) in migrated.stdout
    assert postgres_cluster.password not in migrated.stdout + migrated.stderr
    again = await asyncio.to_thread(didban, "store", "migrate", "--config", str(settle_file),
                                    "--from", f"sqlite:{sqlite_path}", "--to", url, env=secret)
    assert again.returncode == 0 and again.stdout.startswith("0 rows copied now"), again.stdout

    # The same month, the same pack, from either side.
    months, packs = [], []
    for db in (str(sqlite_path), url):
        month = await asyncio.to_thread(didban, "sla", "month", str(MONTH), "--json", "--config", str(settle_file),
                                        "--db", db, env=secret)
        assert month.returncode == 0, month.stderr
        months.append(json.loads(month.stdout))
        out = tmp_path / f"export-{len(packs)}"
        exported = await asyncio.to_thread(didban, "sla", "export", "--month", str(MONTH), "--format", "pack",
                                           "--out", str(out), "--config", str(settle_file), "--db", db, env=secret)
        assert exported.returncode == 0, exported.stderr
        assert f"evidence pack sha256: {closed.pack_sha256}" in exported.stdout
        [pack] = out.iterdir()
        replayed = await asyncio.to_thread(didban, "sla", "replay", str(pack), "--month", str(MONTH))
        assert replayed.returncode == 0, replayed.stderr
        packs.append(replayed.stdout)
    assert months[0] == months[1] and packs[0] == packs[1]

    # The service goes on from PostgreSQL (DIDBAN_STORE_URL): the open outage closes with its own code.
    target.healthy["portal"] = True
    env = {**os.environ, **secret, "DIDBAN_STORE_URL": url}
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "didban.cli", "run", "--config",
                                                   str(run_file), cwd=tmp_path, env=env,  # where its journal goes
                                                   stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    pg = Backend(conninfo=url, password=postgres_cluster.password)

    def closed_in_postgres() -> bool:
        store = pg.store()
        try:
            return any(o.tracking_code == code and o.end_ms is not None for o in store.outages("portal"))
        finally:
            store.close()

    try:
        await wait_for(closed_in_postgres, timeout=30)
    finally:
        process.terminate()
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    assert postgres_cluster.password not in stderr.decode()
    store = pg.store()
    assert [o.tracking_code for o in store.outages("portal") if o.start_ms > END] == [code]
    store.close()
    with closing(pg.outbox()) as outbox_pg, closing(pg.web_records()) as records_pg:
        assert outbox_pg.counts()["pending"] == 5
        assert records_pg.check_token(token, 1).state == "ok"


def test_a_migration_stopped_half_way_resumes_without_copying_twice(
        tmp_path: Path, postgres_cluster: Cluster) -> None:  # noqa: F811
    source = Backend(path=tmp_path / "source.sqlite")
    store = source.store()
    fill(store, "portal", downs=[(600, 900)])
    store.close()
    target = Backend(conninfo=postgres_cluster.url(postgres_cluster.new_database()),
                     password=postgres_cluster.password)
    results = next(t for t in TABLES if t.name == "results")

    def interrupted(table: str, done: int, total: int) -> None:
        if done >= 3_000:
            raise KeyboardInterrupt  # Ctrl-C, or the connection lost, after three chunks

    src, dst = source.database(), target.database()
    with pytest.raises(KeyboardInterrupt):
        copy_table(src, dst, results, interrupted, chunk_rows=1_000)
    assert dst.execute("SELECT count(*) FROM results").fetchone()[0] == 3_000
    copied = copy_table(src, dst, results, lambda *_: None)
    total = src.execute("SELECT count(*) FROM results").fetchone()[0]
    assert copied == total - 3_000
    assert dst.execute("SELECT count(*), count(DISTINCT rowid) FROM results").fetchone() == (total, total)
    src.close()
    dst.close()


def test_commands_refuse_a_newer_schema_or_a_missing_server_in_one_line(tmp_path: Path) -> None:
    store = Backend(path=tmp_path / "newer.sqlite").store()
    store.db.execute("UPDATE alembic_version SET version_num = '0042'")
    store.close()
    config_file = settle_config(tmp_path / "settle.json")
    for args, reason in ((("status", "--db", str(tmp_path / "newer.sqlite")), "newer than this Didban knows"),
                         (("run", "--db", "postgresql://didban@127.0.0.1:9/didban", "--duration", "1"),
                          "Connection refused")):
        done = didban(*args, "--config", str(config_file), env={"DIDBAN_STORE_PASSWORD": "not-to-be-shown"})
        assert done.returncode == 1 and reason in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and "not-to-be-shown" not in done.stderr
