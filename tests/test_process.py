"""Didban as a process: kill -9 loses at most an interval and no outage state;
the CLI's check, status and demo commands."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from store.sql_store import SqliteStore
from tests.conftest import RawServer
from tests.test_engine import Target, wait_for

SERVICES = ("portal", "payments")


def write_config(path: Path, base_url: str) -> None:
    services = "\n".join(
        f"""      - id: {name}
        name: {{fa: "خدمت {name}", en: "{name}"}}
        agreement: sla
        interval_seconds: 1
        timeout_seconds: 1
        probes:
          - type: http
            url: {base_url}/{name}"""
        for name in SERVICES
    )
    path.write_text(
        f"""agreements:
  - id: sla
    title: "توافقنامه"
    valid_from: "1400-01-01"
    valid_until: "1410-12-29"
    target_percent: 99.5
scheduler:
  jitter_seconds: 1
agencies:
  - id: agency
    name: {{fa: "اداره", en: "Agency"}}
    services:
{services}
""",
        encoding="utf-8",
    )


STARTED: list[asyncio.subprocess.Process] = []


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test() -> Any:
    yield
    while STARTED:
        process = STARTED.pop()
        if process.returncode is None:
            process.kill()


async def start(*args: str) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "didban.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    STARTED.append(process)
    return process


async def run(*args: str, timeout: float = 60) -> tuple[int, str, str]:
    process = await start(*args)
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def count(db: Path, query: str) -> int:
    """A count from the store; 0 while the process has not created its schema yet."""
    try:
        with sqlite3.connect(db) as connection:
            return int(connection.execute(query).fetchone()[0])
    except sqlite3.OperationalError:
        return 0


@pytest.fixture
async def site(aiohttp_server: Any, tmp_path: Path) -> tuple[Target, Path, Path]:
    """A target whose 'payments' service is down, a config pointing at it, and a store path."""
    target = Target()
    target.healthy["payments"] = False
    server = await aiohttp_server(target.app())
    config = tmp_path / "config.yaml"
    write_config(config, str(server.make_url("")).rstrip("/"))
    return target, config, tmp_path / "didban.sqlite"


async def test_kill_9_loses_at_most_one_interval_and_no_outage_state(site: tuple[Target, Path, Path]) -> None:
    target, config, db = site

    process = await start("run", "--config", str(config), "--db", str(db))
    await wait_for(lambda: db.exists() and count(db, "SELECT count(*) FROM outages") == 1, timeout=20)
    await asyncio.sleep(1.5)
    process.send_signal(signal.SIGKILL)
    await asyncio.wait_for(process.wait(), 10)

    checked = sum(target.requests.get(name, 0) for name in SERVICES)
    stored = count(db, "SELECT count(*) FROM results")
    # At most one interval of results (one per service) may be lost, plus
    # one request per service that was in flight when the process died.
    assert checked - stored <= 2 * len(SERVICES), (checked, stored)
    with sqlite3.connect(db) as connection:
        (code,) = connection.execute("SELECT tracking_code FROM outages WHERE end_ms IS NULL").fetchone()

    # Restart: the open outage resumes, it is not lost or duplicated...
    process = await start("run", "--config", str(config), "--db", str(db))
    await wait_for(lambda: count(db, "SELECT count(*) FROM results") >= stored + 4, timeout=20)
    assert count(db, "SELECT count(*) FROM outages") == 1
    # ...and closes, with the same tracking code, when the service recovers.
    target.healthy["payments"] = True
    await wait_for(lambda: count(db, "SELECT count(*) FROM outages WHERE end_ms IS NOT NULL") == 1, timeout=20)
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 20) == 0
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT tracking_code FROM outages").fetchall()
    assert rows == [(code,)]


async def test_check_command_runs_an_adhoc_probe_with_conditions(aiohttp_server: Any) -> None:
    async def api(request: web.Request) -> web.Response:
        return web.json_response({"state": "ok"})

    app = web.Application()
    app.router.add_get("/", api)
    server = await aiohttp_server(app)
    code, out, err = await run("check", "--type", "http", "--target", str(server.make_url("/")),
                               "--condition", "[STATUS] == 200", "--condition", "[BODY].state == degraded",
                               "--timeout", "5", "--json")
    data = json.loads(out)
    assert code == 1, err
    assert data["status"] == "down" and data["error"] == "condition"
    assert data["conditions"] == [
        {"condition": "[STATUS] == 200", "success": True, "description": "[STATUS] == 200"},
        {"condition": "[BODY].state == degraded", "success": False,
         "description": "[BODY].state (ok) == degraded"},
    ]
    assert data["latency_ms"] > 0


async def test_check_command_cuts_a_target_that_never_answers_at_its_timeout() -> None:
    """The checks' shared deadline timer, in the real process: a server that accepts and says nothing."""
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # the connection stays open, the request unanswered

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        code, out, err = await run("check", "--type", "http", "--target", f"http://127.0.0.1:{port}/",
                                   "--timeout", "0.5", "--json")
    finally:
        server.close()
        for writer in held:
            writer.close()
    data = json.loads(out)
    assert code == 1, err
    assert (data["status"], data["error"]) == ("down", "timeout")
    assert 450 <= data["latency_ms"] < 3000


async def test_check_command_rejects_a_bad_target() -> None:
    code, _, err = await run("check", "--type", "tcp", "--target", "no-port-here", "--json")
    assert code != 0
    assert "HOST:PORT" in err


async def test_check_and_status_of_configured_services(site: tuple[Target, Path, Path]) -> None:
    _, config, db = site

    code, out, _ = await run("check", "payments", "--config", str(config), "--json")
    assert code == 1 and json.loads(out)["error"] == "http_status"

    code, out, err = await run("run", "--config", str(config), "--db", str(db), "--duration", "4")
    assert code == 0, err
    code, out, err = await run("status", "--config", str(config), "--db", str(db), "--json")
    assert code == 0, err
    rows = {row["service"]: row for row in json.loads(out)}
    assert rows["portal"]["state"] == "up" and rows["portal"]["open_outage"] is None
    assert rows["payments"]["state"] == "down" and rows["payments"]["open_outage"].startswith("OT-")
    assert rows["payments"]["since"].startswith("14")  # a Jalali date
    assert rows["portal"]["last_check"].startswith("14") and rows["portal"]["stale"] is False
    code, table, _ = await run("status", "--config", str(config), "--db", str(db))
    assert "payments" in table and "outage OT-" in table


async def test_kept_alive_connections_a_server_closes_and_a_redirect_charge_nothing(tmp_path: Path) -> None:
    """`didban run --keepalive` against a server that closes each connection 0.3 s after its answer (an
    idle timeout shorter than the interval), one service behind a redirect: every stored result is `up`."""
    answered = {"/portal": 0, "/payments": 0}

    async def idle_timeout(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 0.3)
            except (TimeoutError, asyncio.IncompleteReadError):
                return  # idle too long (closed by the server) or closed by Didban
            path = head.split(b" ")[1].decode()
            answered[path] += 1
            if path == "/payments":
                writer.write(b"HTTP/1.1 302 Found\r\nLocation: /portal\r\nContent-Length: 0\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")  # keep-alive: HTTP/1.1's default
            await writer.drain()

    config, db = tmp_path / "config.yaml", tmp_path / "didban.sqlite"
    async with RawServer(idle_timeout) as server:
        write_config(config, f"http://127.0.0.1:{server.port}")
        code, _, err = await run("run", "--config", str(config), "--db", str(db), "--keepalive", "--duration", "5")
    assert code == 0, err
    stored = {service: count(db, "SELECT count(*) FROM results r JOIN services s ON s.key = r.service "
                                 f"WHERE s.id = '{service}'") for service in SERVICES}
    assert min(stored.values()) >= 3, stored
    # The redirect is followed: /portal is asked by its own checks and by each of payments' (the last may be
    # cut by the stop).
    assert answered["/portal"] >= stored["portal"] + stored["payments"] - 1, (answered, stored)
    assert count(db, "SELECT count(*) FROM results WHERE status != 0") == 0  # 0: up


async def test_demo_monitors_the_seed_agencies_with_the_production_engine(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    db = tmp_path / "demo.sqlite"
    code, out, err = await run("demo", "--config", str(root / "config.yaml"), "--db", str(db),
                               "--interval", "1", "--duration", "6", timeout=60)
    assert code == 0, err
    assert "eaz-debt-instalment" in out and "p99 lag" in out
    # The event log keeps the scripted blip (dispatch's 4th check), and the demo ends with a summary.
    assert "blip           eaz-document-dispatch" in out
    assert "Demo over:" in out and "Try next:" in out and "didban sla month" in out
    store = SqliteStore(db)
    states = store.states()
    store.close()
    assert set(states) == {"eaz-portal", "eaz-dedicated-revenue", "eaz-document-dispatch",
                           "eaz-debt-instalment", "eaz-vehicle-scrapping", "sko-portal"}
    # The scripted blip (the 4th request of document-dispatch) never opens an outage.
    assert all(o.service != "eaz-document-dispatch" for o in SqliteStore(db).outages())



async def test_the_cli_is_friendly_from_any_directory(tmp_path: Path) -> None:
    import os

    code, out, _ = await run("--version")
    assert code == 0 and out.startswith("didban ")
    # The demo runs anywhere: the seed config ships inside the package.
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "didban.cli", "demo", "--duration", "2", "--interval", "1", "--web-port", "0",
        "--db", str(tmp_path / "demo.sqlite"), cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(demo.communicate(), 60)
    assert demo.returncode == 0, err.decode()
    # A closed pipe (`| head`) ends quietly.
    reader, writer = os.pipe()
    os.close(reader)
    piped = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "didban.cli", "validate", str(Path(__file__).resolve().parent.parent / "config.yaml"),
        stdout=writer, stderr=asyncio.subprocess.PIPE)
    os.close(writer)
    _, err = await asyncio.wait_for(piped.communicate(), 60)
    assert b"Traceback" not in err and piped.returncode == 0, err.decode()


async def test_backfill_with_influxdb_unreachable_says_so_in_one_line(tmp_path: Path) -> None:
    from tests.conftest import free_port

    root = Path(__file__).resolve().parent.parent
    config = tmp_path / "config.yaml"
    text = (root / "config.yaml").read_text(encoding="utf-8")
    config.write_text(text.replace("  retention_days: 90", f"  retention_days: 90\n  influxdb: {{url: "
                                   f"\"http://127.0.0.1:{free_port()}\"}}"), encoding="utf-8")
    from core.model import ProbeResult, Status
    from store.contract import Batch

    with SqliteStore(tmp_path / "d.sqlite") as store:
        store.write(Batch(results=[ProbeResult("eaz-portal", "tabriz-dc", 1_727_000_000_000, Status.UP, 5.0)]))
    code, _, err = await run("influx", "backfill", "--since", "2024-09-22", "--config", str(config),
                             "--db", str(tmp_path / "d.sqlite"))
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("rewriting")]
    assert len(lines) == 1 and "did not take the points" in lines[0] and "Traceback" not in err, err


async def test_the_status_page_listens_where_the_environment_says(site: tuple[Target, Path, Path]) -> None:
    import os

    from tests.conftest import free_port, wait_http

    _, config, db = site
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "didban.cli", "run", "--config", str(config), "--db", str(db), "--duration", "6",
        env={**os.environ, "DIDBAN_WEB_HOST": "127.0.0.2", "DIDBAN_WEB_PORT": str(port)},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    await asyncio.to_thread(wait_http, f"http://127.0.0.2:{port}/healthz", 20)
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()


async def test_init_writes_a_starter_config_that_validates_as_written(tmp_path: Path) -> None:
    code, out, err = await run("init", str(tmp_path / "site"))
    assert code == 0, err
    written = (tmp_path / "site" / "config.yaml").read_text(encoding="utf-8")
    assert "alerting:" in written and "type: email" in written and "type: kavenegar" in written
    code, out, err = await run("validate", str(tmp_path / "site" / "config.yaml"))
    assert code == 0 and "valid (1 agency, 1 service, 1 agreement)" in out, err
    code, _, err = await run("init", str(tmp_path / "site"))
    assert code == 2 and "exists" in err  # never overwritten by accident


@pytest.mark.parametrize(("argv", "expected"), [
    (["--config", "c.yaml", "--db", "d.sqlite", "status", "--json"],
     ["status", "--config", "c.yaml", "--db", "d.sqlite", "--json"]),
    (["-v", "--db=d.sqlite", "sla", "month", "1403-07"], ["sla", "month", "1403-07", "-v", "--db=d.sqlite"]),
    (["status", "--config", "c.yaml"], ["status", "--config", "c.yaml"]),
    (["maintenance", "--db", "d.sqlite", "add", "--title", "t"], ["maintenance", "add", "--title", "t", "--db",
                                                                   "d.sqlite"]),
    (["--version"], ["--version"]),
    (["--config"], ["--config"]),  # no value: left for argparse to explain
])
def test_global_options_are_taken_before_or_after_the_command(argv: list[str], expected: list[str]) -> None:
    from didban.cli import hoist_global_options

    assert hoist_global_options(argv) == expected


async def test_global_options_before_the_command_give_the_same_answer(site: tuple[Target, Path, Path]) -> None:
    _, config, db = site
    code, _, err = await run("run", "--config", str(config), "--db", str(db), "--duration", "2")
    assert code == 0, err
    before = await run("--config", str(config), "--db", str(db), "--json", "-v", "status")
    after = await run("status", "--json", "-v", "--config", str(config), "--db", str(db))
    assert before[0] == after[0] == 0, before[2] + after[2]
    assert [row["service"] for row in json.loads(before[1])] == [row["service"] for row in json.loads(after[1])]
