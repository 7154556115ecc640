"""The monitor's own trouble is never the agency's downtime — tested on a real ``didban run``.

- heavy exports through the API while 20 always-up targets are checked every second with a 1 s timeout;
- the monitor's own process frozen (SIGSTOP) in the middle of checks;
- the probes' resolver not answering while the network canary still connects.

Each asserts what the agency would be charged with: no ``down`` result and no outage.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.model import ProbeResult, Status
from sla_calc.periods import JalaliMonth
from store.contract import Batch
from store.schema import open_sqlite
from store.sql_store import SqliteStore
from store.web_records import WebRecords
from tests.conftest import free_port, wait_http

AGREEMENT = """agreements:
  - id: sla
    title: "توافقنامه"
    valid_from: "1400-01-01"
    valid_until: "1410-12-29"
    target_percent: 99.5
"""


def live_services(count: int, base: str, extra: str = "") -> str:
    return "".join(f"""      - id: live-{i}
        name: {{fa: "خدمت {i}", en: "Service {i}"}}
        agreement: sla
        interval_seconds: 1
        timeout_seconds: 1
        probes: [{{type: http, url: "{base}/live-{i}"}}]
{extra}""" for i in range(count))


def write_live_config(config: Path, web_port: int, scheduler: str, services: str) -> None:
    config.write_text(f"""{AGREEMENT}
scheduler: {scheduler}
web: {{port: {web_port}}}
agencies:
  - id: agency
    name: {{fa: "اداره", en: "Agency"}}
    services:
{services}""", encoding="utf-8")


@pytest.fixture
def target() -> Iterator[int]:
    yield from _target()


@pytest.fixture
def slow_target() -> Iterator[int]:
    yield from _target("--delay", "0.3")


def _target(*args: str) -> Iterator[int]:
    process = subprocess.Popen([sys.executable, "-m", "tests.always_up", "--lifetime", "240", *args],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    port = int(process.stdout.readline())
    yield port
    process.kill()
    process.wait(10)
    process.stdout.close()


def query(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as connection:
        return int(connection.execute(sql).fetchone()[0])


def live(db: Path, condition: str) -> int:
    return query(db, "SELECT count(*) FROM results r JOIN services s ON s.key = r.service "
                     f"WHERE s.id LIKE 'live-%' AND {condition}")


def run(config: Path, db: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "didban.cli", "run", "--config", str(config), "--db", str(db),
                             *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return err


@pytest.mark.slow
def test_pdf_exports_through_the_api_never_make_healthy_services_down(target: int, tmp_path: Path) -> None:
    month = JalaliMonth(1403, 7)
    db, config, port = tmp_path / "didban.sqlite", tmp_path / "config.yaml", free_port()
    archived = "".join(f"""      - id: arch-{i}
        name: {{fa: "سامانهٔ بایگانی {i}", en: "Archive {i}"}}
        agreement: sla
        interval_seconds: 300
        locations: [archive]
        probes: [{{type: tcp, target: "127.0.0.1:9"}}]
""" for i in range(50))
    config.write_text(f"""{AGREEMENT}
locations: [{{id: here}}, {{id: archive}}]
scheduler: {{jitter_seconds: 1}}
web: {{port: {port}}}
agencies:
  - id: agency
    name: {{fa: "اداره", en: "Agency"}}
    services:
{live_services(20, f"http://127.0.0.1:{target}")}{archived}""", encoding="utf-8")
    # A month with 50 services and 30 days of results, every 5 minutes, one outage each.
    store = SqliteStore(db)
    start = month.start_ms()
    for i in range(50):
        store.write(Batch(results=[
            ProbeResult(f"arch-{i}", "archive", start + k * 300_000,
                        Status.DOWN if 100 + i <= k < 110 + i else Status.UP, 12.0)
            for k in range(8_640 + 2)]))
    store.close()
    records = WebRecords(open_sqlite(db))
    token = records.create_token("exports", "viewer", 0)
    records.close()

    process = run(config, db, "--location", "here")
    wait_http(f"http://127.0.0.1:{port}/healthz", 20)
    exports: list[float] = []
    failures: list[str] = []
    deadline = time.monotonic() + 40

    def export_repeatedly() -> None:
        while time.monotonic() < deadline:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/api/months/{month}/export?format=pdf",
                                             headers={"Authorization": f"Bearer {token}"})
            began = time.monotonic()
            try:
                with urllib.request.urlopen(request, timeout=120) as answer:
                    assert answer.read(5) == b"%PDF-"
                exports.append(time.monotonic() - began)
            except Exception as exc:
                failures.append(repr(exc))
                return

    workers = [threading.Thread(target=export_repeatedly) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(180)
    stop(process)
    assert not failures, failures
    assert len(exports) >= 2, exports
    assert live(db, "1 = 1") >= 20 * 30  # the services were checked all along
    assert live(db, "r.status = 1") == 0  # not one down result for a target that always answered
    assert query(db, "SELECT count(*) FROM outages") == 0


@pytest.mark.slow
def test_a_frozen_monitor_records_unknown_not_down(slow_target: int, tmp_path: Path) -> None:
    db, config, port = tmp_path / "didban.sqlite", tmp_path / "config.yaml", free_port()
    write_live_config(config, port, "{jitter_seconds: 1}", live_services(10, f"http://127.0.0.1:{slow_target}"))
    process = run(config, db)
    wait_http(f"http://127.0.0.1:{port}/healthz", 20)
    time.sleep(3)
    for _ in range(2):  # the machine starves the monitor: every check in flight outlives its timeout
        os.kill(process.pid, signal.SIGSTOP)
        time.sleep(2.5)
        os.kill(process.pid, signal.SIGCONT)
        time.sleep(3)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        metrics = answer.read().decode()
    stop(process)
    overloaded = live(db, "r.status = 2 AND r.error = 'probe_overload'")
    assert overloaded >= 1
    assert f"didban_probe_overload_total {float(overloaded)}" in metrics
    # One series per service: state, last check, and the month so far (no downtime was charged).
    assert 'didban_service_up{service="live-0"}' in metrics
    assert 'didban_service_last_check_timestamp_seconds{service="live-0"}' in metrics
    assert 'didban_service_month_availability_percent{service="live-0"} 100.0' in metrics
    assert live(db, "r.status = 1") == 0
    assert query(db, "SELECT count(*) FROM outages") == 0


def test_a_resolver_that_does_not_answer_opens_no_outage(target: int, tmp_path: Path) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # receives every query, answers none
    silent.bind(("127.0.0.1", 0))
    try:
        db, config = tmp_path / "didban.sqlite", tmp_path / "config.yaml"
        config.write_text(f"""{AGREEMENT}
canaries:
  - {{id: resolver, type: dns, name: canary.didban.test}}
  - {{id: link, type: tcp, target: "127.0.0.1:{target}"}}
scheduler: {{jitter_seconds: 1, nameservers: ["127.0.0.1:{silent.getsockname()[1]}"]}}
web: {{enabled: false}}
agencies:
  - id: agency
    name: {{fa: "اداره", en: "Agency"}}
    services:
{live_services(3, f"http://portal.didban.test:{target}")}""", encoding="utf-8")
        done = subprocess.run([sys.executable, "-m", "didban.cli", "run", "--config", str(config), "--db", str(db),
                               "--duration", "8"], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
    finally:
        silent.close()
    assert live(db, "1 = 1") >= 3
    assert live(db, "r.status = 1") == 0
    assert live(db, "r.status = 2 AND r.error = 'probe_network'") >= 3
    assert query(db, "SELECT count(*) FROM outages") == 0
    with sqlite3.connect(db) as connection:
        (detail,) = connection.execute("SELECT detail FROM results WHERE status = 2 LIMIT 1").fetchone()
    assert "resolver canary" in detail


@pytest.mark.slow
def test_an_overloaded_monitor_starts_checks_late_says_so_and_charges_nothing(slow_target: int,
                                                                               tmp_path: Path) -> None:
    """40 services due every second, each answer 0.3 s, 2 checks at a time: four times what can run.

    The overload must show on /readyz and /metrics, every service must still be checked (late, not
    dropped), and no healthy service may be charged: a check's timeout runs from its start, not from
    when it was due, and a failure seen that late would be unknown (probe_overload).
    """
    db, config, port = tmp_path / "didban.sqlite", tmp_path / "config.yaml", free_port()
    write_live_config(config, port, "{jitter_seconds: 0, max_concurrency: 2}",
                      live_services(40, f"http://127.0.0.1:{slow_target}"))
    process = run(config, db)
    wait_http(f"http://127.0.0.1:{port}/healthz", 20)
    said, waiting = "", 0.0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not ("overloaded" in said and waiting > 0):
        time.sleep(0.5)
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2)
        except urllib.error.HTTPError as answer:
            said = answer.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as metrics:
            for line in metrics.read().decode().splitlines():
                if line.startswith("didban_checks_due_waiting "):
                    waiting = float(line.split()[1])
    time.sleep(8)  # long enough for every service to have had its turn at least once
    stop(process)
    assert "overloaded" in said and "checks due and not started" in said, said
    assert waiting > 0
    assert live(db, "status = 'down'") == 0
    assert query(db, "SELECT count(*) FROM outages") == 0
    checked = query(db, "SELECT count(DISTINCT r.service) FROM results r JOIN services s ON s.key = r.service "
                        "WHERE s.id LIKE 'live-%'")
    assert checked == 40  # late, never dropped
