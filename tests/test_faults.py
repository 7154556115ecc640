"""Faults on a real ``didban run``: a locked store, a full disk, kill -9 while results wait.

Nothing is lost and nothing spins: notices are delivered once the lock is gone, without a restart;
the collector backs off instead of retrying at once; waiting results survive a crash in the journal.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from store.contract import Notice
from store.outbox import Outbox
from store.schema import open_sqlite
from store.sql_store import SqliteStore
from tests.conftest import free_port
from tests.test_alerting import Inbox
from tests.test_engine import Target, closed_port, wait_for

pytestmark = pytest.mark.slow


def write_config(path: Path, services: dict[str, str], **sections: Any) -> None:
    data = {
        "agreements": [{"id": "sla", "title": "t", "valid_from": "1400-01-01", "valid_until": "1410-12-29",
                        "target_percent": 99.5}],
        "scheduler": {"jitter_seconds": 1},
        "agencies": [{"id": "agency", "name": {"fa": "اداره", "en": "Agency"}, "services": [
            {"id": name, "name": {"fa": f"خدمت {name}", "en": name}, "agreement": "sla", "interval_seconds": 1,
             "timeout_seconds": 1, "probes": [probe]} for name, probe in services.items()]}],
        **sections,
    }
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")  # JSON is YAML


async def didban(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "didban.cli", *args,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)


async def hold_lock(db: Path, seconds: float) -> asyncio.subprocess.Process:
    holder = await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.lock_holder", str(db), str(seconds),
                                                  stdout=asyncio.subprocess.PIPE)
    assert holder.stdout is not None
    assert (await asyncio.wait_for(holder.stdout.readline(), 10)).strip() == b"locked"
    return holder


def count(db: Path, query: str) -> int:
    with sqlite3.connect(db, timeout=30) as connection:
        return int(connection.execute(query).fetchone()[0])


def stored(db: Path) -> int:
    """Results stored so far (0 before the store exists)."""
    try:
        return count(db, "SELECT count(*) FROM results")
    except sqlite3.OperationalError:
        return 0


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def test_a_30_second_write_lock_delays_notices_and_loses_none(tmp_path: Path) -> None:
    db, config, web, smtp = tmp_path / "didban.sqlite", tmp_path / "config.yaml", free_port(), free_port()
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp)
    controller.start()
    write_config(config, {"payments": {"type": "tcp", "target": f"127.0.0.1:{closed_port()}"}},
                 web={"port": web},
                 alerting={"channels": [{"type": "email", "id": "mail", "host": "127.0.0.1", "port": smtp,
                                         "security": "none", "sender": "Didban <noreply@didban.ir>"}],
                           "staff": [{"agency": "agency", "levels": [[{"channel": "mail", "to": "it@eaz.ir"}]]}]})
    first = await didban("run", "--config", str(config), "--db", str(db), "--duration", "0.5")  # makes the schema
    assert await asyncio.wait_for(first.wait(), 30) == 0
    before = [Notice(f"queued-{i}", "mail", f"citizen{i}@mail.ir", "fa", f"اطلاعیه {i}", "متن") for i in range(2)]
    Outbox(open_sqlite(db)).enqueue(before, 0)  # queued before the lock
    holder = await hold_lock(db, 30)
    process = await didban("run", "--config", str(config), "--db", str(db))
    try:
        await asyncio.sleep(8)  # the lock holds: payments fails meanwhile, its outage waits to be stored
        assert process.returncode is None, (await process.communicate())[1].decode()
        assert not inbox.messages
        assert await asyncio.wait_for(holder.wait(), 40) == 0
        # After the lock: the two queued notices and the outage opened during the lock, each delivered once.
        await wait_for(lambda: len(inbox.messages) >= 3, timeout=45)
        assert process.returncode is None  # no restart of the process was needed
        ready: list[int] = []

        async def poll_ready() -> bool:
            ready.append((await asyncio.to_thread(get, f"http://127.0.0.1:{web}/readyz"))[0])
            return ready[-1] == 200

        deadline = time.monotonic() + 30  # a restarted task is healthy again after it ran 10 s
        while not await poll_ready() and time.monotonic() < deadline:
            await asyncio.sleep(1)
        assert ready[-1] == 200
        _, metrics = await asyncio.to_thread(get, f"http://127.0.0.1:{web}/metrics")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
        controller.stop()
    assert process.returncode == 0, stderr.decode()
    recipients = sorted(str(m["To"]) for m in inbox.messages)
    assert recipients == ["citizen0@mail.ir", "citizen1@mail.ir", "it@eaz.ir"]
    assert count(db, "SELECT count(*) FROM outbox WHERE state = 'sent'") == 3
    assert "didban_task_restarts_total" in metrics


async def test_kill_9_while_the_store_is_locked_loses_no_waiting_result(aiohttp_server: Any, tmp_path: Path) -> None:
    target = Target()
    server = await aiohttp_server(target.app())
    names = ("portal", "payments", "licences")
    db, config = tmp_path / "didban.sqlite", tmp_path / "config.yaml"
    write_config(config, {n: {"type": "http", "url": str(server.make_url(f"/{n}"))} for n in names},
                 web={"enabled": False})
    SqliteStore(db).close()
    holder = await hold_lock(db, 120)
    process = await didban("run", "--config", str(config), "--db", str(db))
    await asyncio.sleep(30)  # 30 s of results wait for the store
    killed_at_ms = int(time.time() * 1000)  # every check before this one is the first process's
    process.send_signal(signal.SIGKILL)
    await process.wait()
    checked_before_kill = sum(target.requests.values())
    holder.kill()
    await holder.wait()
    journal = tmp_path / "didban.sqlite.journal"
    assert journal.exists() and journal.stat().st_size > 0
    restarted = await didban("run", "--config", str(config), "--db", str(db), "--duration", "3")
    _, stderr = await asyncio.wait_for(restarted.communicate(), 60)
    assert restarted.returncode == 0, stderr.decode()
    stored_before_restart = count(db, f"SELECT count(*) FROM results WHERE ts_ms < {killed_at_ms}")
    # Every result the targets answered is stored but the checks in flight: while a write waits on the lock,
    # what arrives is journaled within a quarter second (it was held in memory for the write's 5 s wait).
    assert checked_before_kill - stored_before_restart <= len(names), (checked_before_kill, stored_before_restart)
    assert count(db, "SELECT count(*) FROM (SELECT service, location, ts_ms FROM results "
                     "GROUP BY service, location, ts_ms HAVING count(*) > 1)") == 0  # replayed once, not twice
    assert journal.stat().st_size == 0


async def test_a_full_disk_backs_off_and_loses_nothing_once_space_returns(aiohttp_server: Any, tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(small)], capture_output=True,
                             check=False)
    if mounted.returncode != 0:
        pytest.skip(f"a small filesystem needs mount (root): {mounted.stderr.decode().strip()}")
    process: asyncio.subprocess.Process | None = None
    try:
        target = Target()
        server = await aiohttp_server(target.app())
        names = [f"svc-{i}" for i in range(20)]
        db, config, web = small / "didban.sqlite", tmp_path / "config.yaml", free_port()
        (tmp_path / "journal").mkdir()
        write_config(config, {n: {"type": "http", "url": str(server.make_url(f"/{n}"))} for n in names},
                     web={"port": web},
                     store={"journal_dir": str(tmp_path / "journal"), "unavailable_grace_seconds": 3})
        process = await didban("run", "--config", str(config), "--db", str(db))
        assert process.stderr is not None
        filler = small / "filler"
        await asyncio.sleep(3)
        # Fill the disk: the store cannot grow any more.
        try:
            with filler.open("wb") as handle:
                while True:
                    handle.write(b"\0" * 4096)
                    handle.flush()
        except OSError:
            pass  # no space left on the device: that is the point
        await asyncio.sleep(20)
        status, body = await asyncio.to_thread(get, f"http://127.0.0.1:{web}/readyz")
        assert status == 503 and "store unavailable" in body
        filler.unlink()
        subprocess.run(["mount", "-o", "remount,size=64m", str(small)], check=True)
        await asyncio.sleep(5)
        status, _ = await asyncio.to_thread(get, f"http://127.0.0.1:{web}/readyz")
        assert status == 200
        process.send_signal(signal.SIGTERM)
        _, stderr_bytes = await asyncio.wait_for(process.communicate(), 60)
        stderr = stderr_bytes.decode()
        assert process.returncode == 0, stderr
        # Backoff, one warning per cause per minute: a handful of lines, not one per retry.
        assert 1 <= stderr.count("store unavailable (") <= 4, stderr[-2000:]
        checked = sum(target.requests.values())
        stored = count(db, "SELECT count(*) FROM results")
        assert checked - stored <= len(names), (checked, stored)
    finally:
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()
        subprocess.run(["umount", "-l", str(small)], check=False)


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "--duration"])
async def test_a_stop_mid_check_exits_0_without_a_traceback(how: str, tmp_path: Path) -> None:
    slow = await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.always_up", "--lifetime", "60",
                                                "--delay", "0.8", stdout=asyncio.subprocess.PIPE)
    assert slow.stdout is not None
    port = int(await asyncio.wait_for(slow.stdout.readline(), 10))
    db, config = tmp_path / "didban.sqlite", tmp_path / "config.yaml"
    write_config(config, {f"s{i}": {"type": "http", "url": f"http://127.0.0.1:{port}/s{i}"} for i in range(5)},
                 web={"enabled": False})
    try:
        extra = ("--duration", "3.4") if how == "--duration" else ()
        process = await didban("run", "--config", str(config), "--db", str(db), *extra)
        if how != "--duration":  # --duration counts from the engine's start; a signal waits for it too
            deadline = time.monotonic() + 30
            while not stored(db) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await asyncio.sleep(2.4)  # checks of 0.8 s every second: some are always in flight
            process.send_signal(getattr(signal, how))
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        slow.kill()
        await slow.wait()
    assert process.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr and b"CancelledError" not in stderr, stderr.decode()
    assert count(db, "SELECT count(*) FROM results") >= 5


async def test_a_stop_while_the_store_is_locked_journals_and_exits(aiohttp_server: Any, tmp_path: Path) -> None:
    target = Target()
    server = await aiohttp_server(target.app())
    db, config = tmp_path / "didban.sqlite", tmp_path / "config.yaml"
    write_config(config, {"portal": {"type": "http", "url": str(server.make_url("/portal"))}}, web={"enabled": False})
    SqliteStore(db).close()
    holder = await hold_lock(db, 120)
    try:
        process = await didban("run", "--config", str(config), "--db", str(db))
        await asyncio.sleep(4)
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 40)
    finally:
        holder.kill()
        await holder.wait()
    assert process.returncode == 0, stderr.decode()
    assert (tmp_path / "didban.sqlite.journal").stat().st_size > 0
    assert "wait in the journal" in stderr.decode()
