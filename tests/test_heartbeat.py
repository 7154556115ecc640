"""Heartbeat (push) services: a batch job reports in; silence past the interval and grace is downtime.

Driven on a real ``didban run``: the service posts heartbeats to
``POST /api/heartbeat/TOKEN``; while it does, it is up; when it stops, an
outage opens with a tracking code (the same derivation, settlement and
notice rules as probed services); when it reports again, the outage closes.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.config import ConfigError, load_config
from sla_calc.periods import JalaliMonth
from tests.conftest import free_port, wait_http
from tests.test_engine import wait_for

ROOT = Path(__file__).resolve().parent.parent
CONFIG = """agreements:
  - {{id: sla, title: "توافقنامه", valid_from: "1400-01-01", valid_until: "1410-12-29", target_percent: 99.5}}
web: {{host: 127.0.0.1, port: {port}}}
agencies:
  - id: agency
    name: {{fa: "اداره", en: "Agency"}}
    services:
      - id: nightly-batch
        name: {{fa: "پردازش شبانه", en: "Nightly batch"}}
        agreement: sla
        interval_seconds: 1
        timeout_seconds: 1
        probes: [{{type: heartbeat, grace_seconds: 1}}]
"""


def didban(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "didban.cli", *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)


def outages(db: Path) -> list[tuple[str, int | None]]:
    try:
        with sqlite3.connect(db) as connection:
            return connection.execute("SELECT tracking_code, end_ms FROM outages ORDER BY id").fetchall()
    except sqlite3.OperationalError:
        return []


def test_a_heartbeat_service_has_one_probe_and_no_conditions(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.format(port=1).replace("probes: [{type: heartbeat, grace_seconds: 1}]",
                                                 "probes: [{type: heartbeat}, {type: tcp, target: '127.0.0.1:9'}]"),
                   encoding="utf-8")
    with pytest.raises(ConfigError, match="exactly one probe, the heartbeat"):
        load_config(bad)


@pytest.mark.slow
async def test_silence_opens_an_outage_and_a_heartbeat_closes_it(tmp_path: Path) -> None:
    port = free_port()
    config, db = tmp_path / "config.yaml", tmp_path / "didban.sqlite"
    config.write_text(CONFIG.format(port=port), encoding="utf-8")
    made = didban("token", "create", "--role", "heartbeat", "--name", "nightly-batch", "--config", str(config),
                  "--db", str(db))
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    refused = didban("token", "create", "--role", "heartbeat", "--name", "portal", "--config", str(config),
                     "--db", str(db))
    assert refused.returncode == 2 and "heartbeat service" in refused.stderr
    admin_token = didban("token", "create", "--role", "admin", "--name", "ops", "--config", str(config),
                         "--db", str(db)).stdout.strip()
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "didban.cli", "run", "--config",
                                                   str(config), "--db", str(db), cwd=ROOT,
                                                   stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        await asyncio.to_thread(wait_http, f"{base}/healthz", 20)
        async with aiohttp.ClientSession() as session:

            async def beat() -> dict[str, Any]:
                async with session.post(f"{base}/api/heartbeat/{token}") as answer:
                    assert answer.status == 200, await answer.text()
                    return dict(await answer.json())

            async def beating(seconds: float) -> None:
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    await beat()
                    await asyncio.sleep(0.3)

            first = await beat()
            assert first["service"] == "nightly-batch" and first["recorded_tehran"].startswith("14")
            await beating(4)
            assert outages(db) == []  # reporting in: up
            async with session.post(f"{base}/api/heartbeat/dbn_not-a-token") as wrong:
                assert wrong.status == 401
            # The admin API issues heartbeat tokens by the same rule as the CLI.
            admin = {"Authorization": f"Bearer {admin_token}"}
            async with session.post(f"{base}/api/tokens", headers=admin,
                                    json={"name": "nightly-batch", "role": "heartbeat"}) as issued:
                assert issued.status == 201, await issued.text()
                second = (await issued.json())["token"]
            async with session.post(f"{base}/api/heartbeat/{second}") as answer:
                assert answer.status == 200 and (await answer.json())["service"] == "nightly-batch"
            async with session.post(f"{base}/api/tokens", headers=admin,
                                    json={"name": "portal", "role": "heartbeat"}) as not_heartbeat:
                assert not_heartbeat.status == 422 and "heartbeat service" in await not_heartbeat.text()
            async with session.get(f"{base}/api/status", headers={"Authorization": f"Bearer {token}"}) as api:
                assert api.status == 403  # a heartbeat token reads nothing
            # Silence: past interval + grace, each interval is a failed check; two make an outage.
            await wait_for(lambda: len(outages(db)) == 1, timeout=15)
            [(code, end)] = outages(db)
            assert code.startswith("OT-") and end is None
            status = didban("status", "--json", "--config", str(config), "--db", str(db))
            [row] = json.loads(status.stdout)
            assert row["state"] == "down" and row["last_error"] == "heartbeat_missed" and row["open_outage"] == code
            await beating(2)
            await wait_for(lambda: outages(db)[0][1] is not None, timeout=10)
    finally:
        process.terminate()
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    assert outages(db)[0][0] == code  # closed with its own code
    # The settlement counts it like any other outage.
    month = didban("sla", "month", str(JalaliMonth.containing(int(time.time() * 1000))), "--json",
                   "--config", str(config), "--db", str(db))
    [service] = json.loads(month.stdout)["agencies"][0]["services"]
    assert service["downtime_minutes"] > 0 and len(service["outages"]) == 1


def test_the_openapi_document_says_which_names_heartbeat_and_agent_tokens_may_have(tmp_path: Path) -> None:
    from didban.web.api import document_for

    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(port=1), encoding="utf-8")
    token = document_for(load_config(path))["components"]["schemas"]["TokenIn"]
    assert "heartbeat" in token["properties"]["role"]["enum"]
    assert {"if": {"properties": {"role": {"const": "heartbeat"}}, "required": ["role"]},
            "then": {"properties": {"name": {"enum": ["nightly-batch"]}}}} in token["allOf"]
    assert {"if": {"properties": {"role": {"const": "agent"}}, "required": ["role"]},
            "then": {"properties": {"name": {"enum": ["local"]}}}} in token["allOf"]
