"""Probe agents and the center: the durable buffer, the ingest API, and real processes across a partition.

``didban server`` and ``didban agent`` run as subprocesses on loopback against a target that counts every
request it answers, so "nothing lost" is checked against what the targets saw: every result the targets
answered is stored at the center exactly once.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from collector.buffer import Buffer, result_row
from core.model import ProbeResult, Status
from didban.web.app import WebContext, build_app
from store.backend import Backend
from store.sql_store import SqliteStore
from tests.conftest import free_port, make_config, wait_http

ROOT = Path(__file__).resolve().parent.parent


def result(service: str = "portal", ts_ms: int = 1_000, status: Status = Status.UP) -> ProbeResult:
    return ProbeResult(service, "shiraz", ts_ms, status, 12.5, None if status is Status.UP else "timeout")


# -- the buffer ------------------------------------------------------------------------------------


def test_the_buffer_numbers_results_durably_and_forgets_only_what_was_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "agent.buffer"
    buffer = Buffer(path)
    assert buffer.append([result(ts_ms=k) for k in (1, 2, 3)]) == 3
    buffer.close()
    buffer = Buffer(path)  # reopened, as after kill -9: everything appended is there
    assert [row[0] for row in buffer.oldest(10)] == [1, 2, 3]
    last, count, body = buffer.batch(10)  # the wire's gzip'd JSON, joined from the rows as stored
    assert (last, count) == (3, 3) and json.loads(gzip.decompress(body))["results"] == buffer.oldest(10)
    assert buffer.acknowledge(2) == 2 and buffer.depth() == 1
    assert buffer.append([result(ts_ms=4), result(ts_ms=5)]) == 5
    buffer.acknowledge(5)
    buffer.close()
    buffer = Buffer(path, max_age_days=1)
    assert buffer.depth() == 0 and buffer.append([result(ts_ms=6)]) == 6  # a number is never given twice
    day = 86_400_000
    buffer.append([result(ts_ms=10 * day)])
    assert buffer.trim(now_ms=10 * day + 1) == 1 and buffer.dropped == 1  # only what outlived the bound
    assert [row[2] for row in buffer.oldest(10)] == [10 * day]
    buffer.close()


# -- the ingest API ----------------------------------------------------------------------------------


@pytest.fixture
async def center(aiohttp_client: Any, db_path: Path) -> tuple[Any, dict[str, str], SqliteStore]:
    config = make_config([{"id": "portal", "probes": [{"type": "tcp", "target": "127.0.0.1:9"}]}],
                         locations=[{"id": "shiraz"}, {"id": "tabriz"}])
    backend = Backend(path=db_path)
    store = backend.store()

    async def ingest(location: str, read: Callable[[], list[Any]], now_ms: int) -> tuple[int, int, int]:
        batch = read()
        return (*store.ingest(location, batch, now_ms), len(batch))

    records = backend.web_records()
    tokens = {name: records.create_token(name, role, int(time.time() * 1000))
              for name, role in (("shiraz", "agent"), ("viewer", "viewer"))}
    records.close()
    client = await aiohttp_client(build_app(WebContext(config, backend, ingest=ingest)))
    return client, tokens, store


def rows(*results: ProbeResult, first: int = 1) -> list[list[Any]]:
    return [result_row(seq, r) for seq, r in enumerate(results, start=first)]


async def post(client: Any, token: str, body: Any, *, zipped: bool = True) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if not isinstance(body, bytes) else body
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if zipped:
        data, headers["Content-Encoding"] = gzip.compress(data), "gzip"
    answer = await client.post("/api/ingest", data=data, headers=headers)
    return answer.status, await answer.json()


async def test_a_batch_is_stored_for_the_tokens_location_and_once_however_often_it_is_sent(center: Any) -> None:
    client, tokens, store = center
    now = int(time.time() * 1000)
    batch = {"results": rows(result(ts_ms=now - 2000), result(ts_ms=now - 1000, status=Status.DOWN))}
    assert await post(client, tokens["shiraz"], batch) == (200, {"location": "shiraz", "acknowledged": 2,
                                                                  "stored": 2, "duplicates": 0})
    assert await post(client, tokens["shiraz"], batch, zipped=False) == (200, {
        "location": "shiraz", "acknowledged": 2, "stored": 0, "duplicates": 2})  # replayed by hand: stored once
    assert [(r.location, r.status) for r in store.results("portal", 0, 2**62)] == [
        ("shiraz", Status.UP), ("shiraz", Status.DOWN)]


@pytest.mark.parametrize(("body", "status", "reason"), [
    (b"not json", 400, "must be JSON"),
    ({"rows": []}, 422, '"results" list'),
    ({"results": [[1, "portal"]]}, 422, "results[0]: expected [seq, service"),
    ({"results": rows(result("nope"))}, 422, "unknown service 'nope'"),
    ({"results": rows(result(), first=3) + rows(result(), first=2)}, 422, "sequence numbers must increase"),
    ({"results": rows(result(ts_ms=int(time.time() * 1000) + 3_600_000))}, 422, "in the future"),
    ({"results": [[1, "portal", 1000, "sideways", 1.0, None, "", None, None]]}, 422, "results[0]"),
])
async def test_a_bad_batch_is_refused_whole_with_the_reason(center: Any, body: Any, status: int, reason: str) -> None:
    client, tokens, store = center
    code, answer = await post(client, tokens["shiraz"], body)
    assert code == status and reason in answer["error"]
    assert store.count_results() == 0


async def test_only_an_agent_token_may_ship_results(center: Any) -> None:
    client, tokens, _ = center
    assert (await post(client, tokens["viewer"], {"results": []}))[0] == 401
    assert (await post(client, "dbn_not-a-token", {"results": []}))[0] == 401
    answer = await client.post("/api/ingest", json={"results": []})
    assert answer.status == 401 and answer.headers["WWW-Authenticate"] == "Bearer"


async def test_a_process_that_is_no_center_says_so(aiohttp_client: Any, db_path: Path) -> None:
    config = make_config([{"id": "portal", "probes": [{"type": "tcp", "target": "127.0.0.1:9"}]}],
                         locations=[{"id": "shiraz"}])
    backend = Backend(path=db_path)
    records = backend.web_records()
    token = records.create_token("shiraz", "agent", int(time.time() * 1000))
    records.close()
    client = await aiohttp_client(build_app(WebContext(config, backend)))
    code, answer = await post(client, token, {"results": []})
    assert code == 503 and "didban server" in answer["error"]


# -- real processes ------------------------------------------------------------------------------------

CONFIG = """agreements:
  - {{id: sla, title: "توافقنامه", valid_from: "1400-01-01", valid_until: "1410-12-29", target_percent: 99.5}}
locations: [{{id: shiraz}}, {{id: tabriz}}]
scheduler: {{jitter_seconds: 1}}
store: {{unavailable_grace_seconds: 5}}
web: {{host: 127.0.0.1, port: {port}}}
agencies:
  - id: agency
    name: {{fa: "اداره", en: "Agency"}}
    services:
{services}"""
SERVICE = """      - id: s{k}
        name: {{fa: "خدمت {k}", en: "Service {k}"}}
        agreement: sla
        interval_seconds: 1
        timeout_seconds: 1
        probes: [{{type: http, url: "http://127.0.0.1:{target}/s{k}"}}]
"""


class Farm:
    """A target that counts the requests it answered, per service path."""

    def __init__(self) -> None:
        self.answered: Counter[str] = Counter()


@pytest.fixture
async def farm(aiohttp_server: Any) -> AsyncIterator[tuple[Farm, int]]:
    counts = Farm()

    async def answer(request: web.Request) -> web.Response:
        response = web.Response(text="ok")
        await response.prepare(request)
        await response.write_eof()
        counts.answered[request.match_info["name"]] += 1  # counted once the answer is sent
        return response

    app = web.Application()
    app.router.add_get("/{name}", answer)
    server = await aiohttp_server(app)
    yield counts, server.port


_logs: dict[int, Path] = {}  # each process's log file (a pipe nobody reads until the end could fill and stall it)


async def didban(*args: str, cwd: Path, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    log = cwd / f"{args[0]}-{len(_logs)}.log"
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "didban.cli", *args, cwd=cwd,
                                                       stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
                                                       env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    _logs[process.pid] = log
    return process


def log_of(process: asyncio.subprocess.Process) -> str:
    return _logs[process.pid].read_text(encoding="utf-8", errors="replace")


async def stopped(process: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> str:
    """Its log, once it has stopped; a process still running 40 s after the signal fails the test with its log
    (a stop that takes 30 s prints every thread's stack there first)."""
    if process.returncode is None:
        process.send_signal(sig)
    try:
        await asyncio.wait_for(process.wait(), 40)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"still running 40 s after signal {sig}; its log:\n{log_of(process)[-8000:]}") from None
    return log_of(process)


def stored(db: Path) -> Counter[str]:
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT s.id, r.ts_ms FROM results r JOIN services s ON s.key = r.service "
                                  "JOIN locations l ON l.key = r.location WHERE l.id = 'shiraz'").fetchall()
    assert len(rows) == len(set(rows)), "a result was stored twice"
    return Counter(service for service, _ in rows)


async def metric(url: str, name: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        text = await answer.text()
    return float(next(line.split()[1] for line in text.splitlines() if line.startswith(name + " ")))


async def eventually(check: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.3)


def setup_center(tmp_path: Path, target: int, services: int) -> tuple[Path, Path, int, Path]:
    port = free_port()
    config, db, token = tmp_path / "config.yaml", tmp_path / "center.sqlite", tmp_path / "agent.token"
    config.write_text(CONFIG.format(port=port, services="".join(SERVICE.format(k=k, target=target)
                                                                 for k in range(services))), encoding="utf-8")
    import subprocess

    made = subprocess.run([sys.executable, "-m", "didban.cli", "token", "create", "--role", "agent", "--name",
                           "shiraz", "--config", str(config), "--db", str(db)], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert made.returncode == 0, made.stderr
    token.write_text(made.stdout.strip(), encoding="utf-8")
    return config, db, port, token


@pytest.mark.slow
async def test_a_center_away_for_a_minute_loses_nothing(tmp_path: Path, farm: tuple[Farm, int]) -> None:
    counts, target = farm
    config, db, port, token = setup_center(tmp_path, target, services=2)
    center = await didban("server", "--config", str(config), "--db", str(db), cwd=tmp_path)
    await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/healthz", 20)
    listen = free_port()
    agent = await didban("agent", "--config", str(config), "--location", "shiraz", "--center",
                         f"http://127.0.0.1:{port}", "--token-file", str(token), "--listen", f"127.0.0.1:{listen}",
                         cwd=tmp_path)
    metrics = f"http://127.0.0.1:{listen}/metrics"
    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{listen}/healthz", 20)
        await eventually(lambda: _shipped(metrics), 20)
        await stopped(center)  # the center goes away for a minute
        await asyncio.sleep(30)
        assert await metric(metrics, "didban_agent_buffered_results") >= 40  # still probing, buffering
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{listen}/readyz") as ready:
            assert ready.status == 503 and "no center reachable" in (await ready.json())["problems"][-1]
        await asyncio.sleep(30)
        center = await didban("server", "--config", str(config), "--db", str(db), cwd=tmp_path)
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/healthz", 20)

        async def drained() -> bool:
            return await metric(metrics, "didban_agent_buffered_results") < 3

        await eventually(drained, 30)
        # A batch replayed by hand (the agent's first three results, long stored): stored once.
        replay = {"results": rows(*(result("s0", ts_ms=1_000 + k) for k in range(3)))}
        async with aiohttp.ClientSession() as session, session.post(
                f"http://127.0.0.1:{port}/api/ingest", json=replay,
                headers={"Authorization": f"Bearer {token.read_text(encoding='utf-8').strip()}"}) as answer:
            assert answer.status == 200 and (await answer.json())["stored"] == 0
    finally:
        agent_log = await stopped(agent)  # a stop ships what is left
        center_log = await stopped(center)
    assert agent.returncode == 0, agent_log
    assert center.returncode == 0, center_log
    assert "reachable again" in agent_log
    assert stored(db) == counts.answered  # every answer the targets gave, stored once


async def _shipped(metrics: str) -> bool:
    return await metric(metrics, "didban_agent_shipped_results") > 0


@pytest.mark.slow
async def test_an_agent_killed_mid_batch_loses_only_the_checks_in_flight(tmp_path: Path,
                                                                        farm: tuple[Farm, int]) -> None:
    counts, target = farm
    services = 40
    config, db, port, token = setup_center(tmp_path, target, services=services)
    center = await didban("server", "--config", str(config), "--db", str(db), cwd=tmp_path)
    await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/healthz", 20)
    agent_args = ("agent", "--config", str(config), "--location", "shiraz", "--center", f"http://127.0.0.1:{port}",
                  "--token-file", str(token), "--buffer", str(tmp_path / "shiraz.buffer"))
    try:
        agent = await didban(*agent_args, cwd=tmp_path)
        await asyncio.sleep(6)
        await stopped(agent, signal.SIGKILL)  # mid-batch: 40 checks a second are shipped as they come
        agent = await didban(*agent_args, cwd=tmp_path)
        await asyncio.sleep(4)
        agent_log = await stopped(agent)
        await asyncio.sleep(1.5)  # the center derives and commits the last batch
    finally:
        if agent.returncode is None:
            await stopped(agent, signal.SIGKILL)
        center_log = await stopped(center)
    assert agent.returncode == 0 and center.returncode == 0, agent_log + center_log
    lost = sum((counts.answered - stored(db)).values())
    assert sum(stored(db).values()) > 200
    assert lost <= services, f"{lost} answered checks were never stored"  # at most one in flight per service
    assert not stored(db) - counts.answered  # nothing stored that no target answered


# -- the center watches its locations ----------------------------------------------------------------


def test_a_location_is_silent_after_the_bound_and_its_silence_is_told_once() -> None:
    from didban.locations import LocationWatch, location_states
    from store.contract import AgentProgress

    config = make_config([{"id": "portal", "probes": [{"type": "tcp", "target": "127.0.0.1:9"}]}],
                         locations=[{"id": "shiraz"}, {"id": "tabriz"}], agent={"silent_after_seconds": 60})
    watch = LocationWatch()
    seen = [AgentProgress("shiraz", 10, 1_000, 2_000)]
    at = {s.location: s for s in location_states(config, seen, 2_000 + 60_000)}
    assert not at["shiraz"].silent and not at["tabriz"].reported  # no agent yet: not silent, just absent
    assert watch.changes(list(at.values())) == []
    later = location_states(config, seen, 2_000 + 60_001)
    assert [s.silent for s in later] == [True, False]
    assert watch.changes(later) == [("shiraz", True, 2_000)]
    assert watch.changes(later) == []  # told once
    back = location_states(config, [AgentProgress("shiraz", 11, 90_000, 95_000)], 96_000)
    assert watch.changes(back) == [("shiraz", False, 2_000)]


@pytest.mark.slow
async def test_a_silent_agent_is_shown_everywhere_and_staff_are_told_once(tmp_path: Path,
                                                                         farm: tuple[Farm, int]) -> None:
    _, target = farm
    config, db, port, token = setup_center(tmp_path, target, services=1)
    text = config.read_text(encoding="utf-8").replace("scheduler:", """agent: {silent_after_seconds: 2}
alerting:
  channels: [{type: email, id: mail, host: 127.0.0.1, port: 9, sender: "Didban <noreply@didban.ir>"}]
  staff: [{agency: agency, levels: [[{channel: mail, to: "it-director@eaz.ir", lang: fa}]]}]
scheduler:""")
    config.write_text(text, encoding="utf-8")
    center = await didban("server", "--config", str(config), "--db", str(db), cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    agent_args = ("agent", "--config", str(config), "--location", "shiraz", "--center", base, "--token-file",
                  str(token))
    import subprocess

    viewer = subprocess.run([sys.executable, "-m", "didban.cli", "token", "create", "--role", "viewer", "--config",
                             str(config), "--db", str(db)], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60).stdout.strip()

    async def locations() -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, session.get(
                f"{base}/api/agents", headers={"Authorization": f"Bearer {viewer}"}) as answer:
            return {row["location"]: row for row in await answer.json()}

    def notices() -> list[str]:
        with sqlite3.connect(db) as connection:
            return [row[0] for row in connection.execute("SELECT subject FROM outbox ORDER BY id")]

    try:
        await asyncio.to_thread(wait_http, f"{base}/healthz", 20)
        agent = await didban(*agent_args, cwd=tmp_path)
        await asyncio.sleep(4)
        assert (await locations())["shiraz"]["silent"] is False
        await stopped(agent)

        async def silent() -> bool:
            return bool((await locations())["shiraz"]["silent"]) and len(notices()) == 1

        await eventually(silent, 30)
        shown = await locations()
        assert shown["shiraz"]["last_result_tehran"].startswith("14") and shown["tabriz"]["reported"] is False
        async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as answer:
            assert 'didban_location_silent{location="shiraz"} 1.0' in await answer.text()
        status = subprocess.run([sys.executable, "-m", "didban.cli", "status", "--config", str(config), "--db",
                                 str(db)], capture_output=True, text=True, cwd=tmp_path, timeout=60,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert re.search(r"^shiraz\s+silent\s+14", status.stdout, re.MULTILINE), status.stdout
        assert notices() == ["محل پایش خاموش: shiraz"]
        await asyncio.sleep(11)  # two more rounds of the watch: still one notice
        assert len(notices()) == 1
        agent = await didban(*agent_args, cwd=tmp_path)

        async def back() -> bool:
            return len(notices()) == 2

        await eventually(back, 30)
        assert notices()[1] == "محل پایش دوباره فعال: shiraz"
        await stopped(agent)
    finally:
        await stopped(center)
